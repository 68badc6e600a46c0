/*
 * command.c — pantherad -c FILE user:create-admin USERNAME EMAIL
 *
 * The first admin comes from the operator, never from the first registrant. The password
 * is read from standard input (one line), so it appears neither in the process list nor
 * in the shell history; on a terminal it is asked for twice without echo:
 *
 *     pantherad -c /etc/panthera/pantherad.conf user:create-admin alice alice@example.com
 *     printf '%s\n' "$PASSWORD" | pantherad -c ... user:create-admin alice alice@example.com
 *
 * The account is checked by the same schema as a registration (the Lua hooks aside: they
 * belong to requests) and hashed in line: blocking is fine here. Exit status 0 when
 * created, 1 when refused (taken, invalid, database error), 2 for a usage error.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "user.h"

#define LINE_MAX_BYTES 1024

/* One line of stdin without its line ending; -1 on EOF before anything or a line too long. */
static int read_line(const char *prompt, char *buf, size_t size)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios saved, quiet;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        fflush(stderr);
        tcgetattr(STDIN_FILENO, &saved);
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *got = fgets(buf, (int)size, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fprintf(stderr, "\n");
    }
    if (!got)
        return -1;
    size_t len = strlen(buf);
    if (len == size - 1 && buf[len - 1] != '\n')
        return -1;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    return 0;
}

/* The account by the rules of a registration (RegisterRequest): prints every reason. */
static bool invalid(const char *username, const char *email, const char *password)
{
    json_t *fields = NULL;
    json_t *account = json_pack("{s:s, s:s, s:s}", "username", username, "email", email,
                                "password", password);
    int rc = account ? px_schema_check(user_plugin, "RegisterRequest", account, &fields)
                     : PX_EINVAL; /* an argument that is not UTF-8 */
    const char *key;
    json_t *why;
    json_object_foreach(fields, key, why)
    {
        fprintf(stderr, "user:create-admin: %s %s\n", key, json_string_value(why));
    }
    if (!account)
        fprintf(stderr, "user:create-admin: the username, email and password must be UTF-8\n");
    json_decref(fields);
    json_decref(account);
    return rc != 0;
}

int command_create_admin(px_plugin_t *self, int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: pantherad -c FILE user:create-admin USERNAME EMAIL "
                        "(the password is read from stdin)\n");
        return 2;
    }
    const char *username = argv[1], *email = argv[2];
    char password[LINE_MAX_BYTES], again[LINE_MAX_BYTES];
    char hash[PASSWORD_HASH_MAX], id[37], err[512];
    int status = 1;
    if (read_line("Password: ", password, sizeof(password))) {
        fprintf(stderr, "user:create-admin: no password on stdin (one line, at most %d bytes)\n",
                LINE_MAX_BYTES - 2);
        goto done;
    }
    if (isatty(STDIN_FILENO) &&
        (read_line("Again: ", again, sizeof(again)) || strcmp(password, again))) {
        fprintf(stderr, "user:create-admin: the passwords differ\n");
        goto done;
    }
    if (invalid(username, email, password))
        goto done;
    /* The id is made here (px_command_sql returns counts, not rows) to be able to print it. */
    if (password_hash(password, strlen(password), hash) || px_uuid_new(id)) {
        fprintf(stderr, "user:create-admin: cannot hash the password (OpenSSL)\n");
        goto done;
    }
    int rc = store_admin_insert(self, id, username, email, hash, err, sizeof(err));
    if (rc == PX_ECONFLICT) {
        fprintf(stderr, "user:create-admin: a user with this username or email exists\n");
        goto done;
    }
    if (rc < 0) {
        fprintf(stderr, "user:create-admin: %s\n", err);
        goto done;
    }
    printf("created admin %s (%s)\n", username, id);
    status = 0;
done:
    OPENSSL_cleanse(password, sizeof(password));
    OPENSSL_cleanse(again, sizeof(again));
    return status;
}
