/*
 * replay_main.c — runs the fuzz target over saved inputs, so every build (not only the
 * clang one with libFuzzer) replays the corpus and every crash ever found:
 *
 *     fuzz_http_replay DIR...
 *
 * Every regular file of every DIR is one input, in name order; dot-files and README*
 * are skipped. Fails when a DIR cannot be read or no input was found at all; a crash
 * aborts on its own.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return -1;
    }
    uint8_t *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            data = realloc(data, cap);
            if (!data)
                abort();
        }
        size_t n = fread(data + len, 1, cap - len, fp);
        if (n == 0)
            break;
        len += n;
    }
    int failed = ferror(fp);
    fclose(fp);
    if (failed) {
        perror(path);
        free(data);
        return -1;
    }
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 0;
}

static int skip(const char *name)
{
    return name[0] == '.' || strncmp(name, "README", 6) == 0;
}

/* Returns the number of inputs replayed, or -1. */
static int replay_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        perror(dir);
        return -1;
    }
    int count = 0;
    bool failed = false;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (!skip(names[i]->d_name) && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            if (replay_file(path) == 0)
                count++;
            else
                failed = true;
        }
        free(names[i]);
    }
    free(names);
    return failed ? -1 : count;
}

int main(int argc, char **argv)
{
    int total = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        int n = replay_dir(argv[i]);
        if (n < 0) {
            rc = 1;
            continue;
        }
        printf("%s: %d inputs\n", argv[i], n);
        total += n;
    }
    if (total == 0) {
        fprintf(stderr, "no inputs replayed\n");
        rc = 1;
    }
    printf("replayed %d inputs\n", total);
    return rc;
}
