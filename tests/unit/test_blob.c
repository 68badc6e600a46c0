/* test_blob.c — server/spool.c and the blob store's directory backend (blob_dir.c), with
 * no server around them: a spool written in uneven pieces ends with the right bytes and
 * SHA-256; the store stores once per content (linking a spooled file, copying anything
 * else), sniffs types, refuses references to missing blobs, and its sweep takes exactly
 * the unreferenced blobs. The postgres backend is covered by tests/api/test_files.py. */
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob_internal.h"
#include "check.h"
#include "spool.h"

static char root[64];
static storage_settings_t settings;
static blob_store_t store;

static void setup(void)
{
    snprintf(root, sizeof(root), "/tmp/px-test-blob-XXXXXX");
    if (!mkdtemp(root))
        abort();
    settings.dir = xasprintf("%s/blobs", root);
    settings.spool_dir = xasprintf("%s/blobs/.spool", root);
    store.cfg = &settings;
    store.backend = &blob_dir_backend;
}

static void hex(const unsigned char *d, char *out)
{
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void digest_hex(const void *data, size_t len, char out[65])
{
    unsigned char d[32];
    unsigned int n;
    EVP_Digest(data, len, d, &n, EVP_sha256(), NULL);
    hex(d, out);
}

static bool flushed;
static void on_flushed(void *arg)
{
    (void)arg;
    flushed = true;
}

static void test_spool_streams_and_hashes(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    spool_t *s = spool_new(&loop, settings.spool_dir);
    size_t total = 3 * 1024 * 1024 + 17;
    char *data = xmalloc(total);
    for (size_t i = 0; i < total; i++)
        data[i] = (char)(i * 7 + i / 4096);
    for (size_t off = 0, piece = 1; off < total; piece = piece * 3 % 70001 + 1) {
        size_t n = piece < total - off ? piece : total - off;
        CHECK_EQ_INT(spool_write(s, data + off, n), 0);
        off += n;
    }
    flushed = false;
    if (spool_flush(s, on_flushed, NULL))
        uv_run(&loop, UV_RUN_DEFAULT);
    else
        flushed = true;
    CHECK(flushed);
    CHECK_EQ_INT(spool_status(s), 0);
    CHECK_EQ_U64(spool_size(s), total);
    CHECK_EQ_INT(spool_backlog(s), 0);
    unsigned char d[32];
    char got[65], want[65];
    spool_sha256(s, d);
    hex(d, got);
    digest_hex(data, total, want);
    CHECK_STR(got, want);
    char *back = xmalloc(total);
    CHECK_EQ_INT(pread(spool_fd(s), back, total, 0), (long long)total);
    CHECK(memcmp(back, data, total) == 0);
    /* The file has no name anywhere: nothing is left in the spool directory. */
    DIR *dir = opendir(settings.spool_dir);
    int names = 0;
    for (struct dirent *e; dir && (e = readdir(dir));)
        names += e->d_name[0] != '.';
    if (dir)
        closedir(dir);
    CHECK_EQ_INT(names, 0);
    spool_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(data);
    free(back);
}

/* A file with `data`: a spool-style temporary one (linkable), or an unlinked named one
 * (not linkable: the store must copy). */
static int content_fd(const void *data, size_t len, bool linkable)
{
    int fd;
    if (linkable) {
        fd = spool_tmpfile(settings.spool_dir);
    } else {
        char path[128];
        snprintf(path, sizeof(path), "%s/plain-XXXXXX", root);
        fd = mkstemp(path);
        unlink(path);
    }
    if (fd < 0 || pwrite(fd, data, len, 0) != (ssize_t)len)
        abort();
    return fd;
}

static char ids[3][65];

static void put(int which, const char *data, bool linkable)
{
    size_t len = strlen(data);
    digest_hex(data, len, ids[which]);
    int fd = content_fd(data, len, linkable);
    CHECK_EQ_INT(store.backend->put(&store, fd, len, ids[which], "x/ignored"), 0);
    close(fd);
}

static void test_put_stat_open(void)
{
    const char *html = "<!DOCTYPE html><html><body><p>hi</p></body></html>\n";
    put(0, html, true);
    put(1, "just some plain text, copied in\n", false);
    put(0, html, false); /* again: stored once, no error */
    uint64_t size = 0;
    char ctype[128];
    CHECK_EQ_INT(store.backend->stat(&store, ids[0], &size, ctype, sizeof(ctype)), 0);
    CHECK_EQ_U64(size, strlen(html));
    CHECK_STR(ctype, "text/html");
    CHECK_EQ_INT(store.backend->stat(&store, ids[1], &size, ctype, sizeof(ctype)), 0);
    CHECK_STR(ctype, "text/plain");
    int fd = -1;
    CHECK_EQ_INT(store.backend->open(&store, ids[1], &fd, &size), 0);
    char buf[64] = {0};
    CHECK_EQ_INT(pread(fd, buf, sizeof(buf) - 1, 0), (long long)size);
    CHECK_STR(buf, "just some plain text, copied in\n");
    close(fd);
    char missing[65];
    memset(missing, 'e', 64);
    missing[64] = '\0';
    CHECK_EQ_INT(store.backend->stat(&store, missing, &size, ctype, sizeof(ctype)), PX_ENOENT);
    CHECK_EQ_INT(store.backend->open(&store, missing, &fd, &size), PX_ENOENT);
    CHECK_EQ_INT(store.backend->ref(&store, missing, "p", "r"), PX_ENOENT);
}

static void test_refs_and_sweep(void)
{
    put(2, "a third blob, referenced twice\n", true);
    CHECK_EQ_INT(store.backend->ref(&store, ids[2], "plugin_a", "row:1"), 0);
    CHECK_EQ_INT(store.backend->ref(&store, ids[2], "plugin_a", "row:1"), 0); /* no-op */
    CHECK_EQ_INT(store.backend->ref(&store, ids[2], "plugin_b", "row:1"), 0);
    CHECK_EQ_INT(store.backend->ref(&store, ids[1], "plugin_a", "row:2"), 0);
    /* A long grace keeps everything. */
    uint64_t removed = 99;
    CHECK_EQ_INT(store.backend->sweep(&store, 3600 * 1000, &removed), 0);
    CHECK_EQ_U64(removed, 0);
    /* No grace: only the unreferenced one goes. */
    sleep(1); /* mtimes are compared in whole seconds */
    CHECK_EQ_INT(store.backend->sweep(&store, 0, &removed), 0);
    CHECK_EQ_U64(removed, 1);
    uint64_t size;
    char ctype[64];
    CHECK_EQ_INT(store.backend->stat(&store, ids[0], &size, ctype, sizeof(ctype)), PX_ENOENT);
    CHECK_EQ_INT(store.backend->stat(&store, ids[1], &size, ctype, sizeof(ctype)), 0);
    CHECK_EQ_INT(store.backend->stat(&store, ids[2], &size, ctype, sizeof(ctype)), 0);
    /* One owner's unref leaves the other's reference standing. */
    CHECK_EQ_INT(store.backend->unref(&store, ids[2], "plugin_a", "row:1"), 0);
    CHECK_EQ_INT(store.backend->unref(&store, ids[2], "plugin_a", "row:1"), 0);
    CHECK_EQ_INT(store.backend->sweep(&store, 0, &removed), 0);
    CHECK_EQ_U64(removed, 0);
    CHECK_EQ_INT(store.backend->unref(&store, ids[2], "plugin_b", "row:1"), 0);
    CHECK_EQ_INT(store.backend->unref(&store, ids[1], "plugin_a", "row:2"), 0);
    CHECK_EQ_INT(store.backend->sweep(&store, 0, &removed), 0);
    CHECK_EQ_U64(removed, 2);
    CHECK_EQ_INT(store.backend->ref(&store, ids[2], "plugin_a", "late"), PX_ENOENT);
}

static void test_sniff_and_ids(void)
{
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0,   0, 0, 13,
                                        'I',  'H', 'D', 'R', 0,    0,    0,    1,    0,   0, 0, 1,
                                        8,    6,   0,   0,   0,    0x1f, 0x15, 0xc4, 0x89};
    char t[128];
    blob_sniff(png, sizeof(png), t, sizeof(t));
    CHECK_STR(t, "image/png");
    blob_sniff("", 0, t, sizeof(t));
    CHECK_STR(t, "application/x-empty");
    blob_sniff("%PDF-1.4\n", 9, t, sizeof(t));
    CHECK_STR(t, "application/pdf");
    CHECK(blob_id_valid("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    CHECK(!blob_id_valid("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
    CHECK(!blob_id_valid("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"));
    CHECK(!blob_id_valid("../0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"));
    CHECK(!blob_id_valid(NULL));
    char k1[65], k2[65];
    /* Hashed: a safe file name whatever the plugin's key holds, and per owner. */
    blob_ref_key("plugin_a", "../x\n/y", k1);
    blob_ref_key("plugin_b", "../x\n/y", k2);
    CHECK(blob_id_valid(k1) && blob_id_valid(k2));
    CHECK(strcmp(k1, k2) != 0);
}

int main(void)
{
    setup();
    RUN(test_spool_streams_and_hashes);
    RUN(test_put_stat_open);
    RUN(test_refs_and_sweep);
    RUN(test_sniff_and_ids);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_finish();
}
