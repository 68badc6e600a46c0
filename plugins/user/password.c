/*
 * password.c — password hashes: Argon2id (libargon2) for new hashes, scrypt (OpenSSL 3's
 * EVP_KDF "SCRYPT") still verified for hashes made before.
 *
 * Stored forms, one text column:
 *
 *     $argon2id$v=19$m=M,t=T,p=P$SALT$KEY   the PHC string libargon2 writes (M in KiB)
 *     scrypt$N$r$p$SALT$KEY                 SALT 16 random bytes, KEY 32, both base64
 *
 * [plugin:user] password_scheme chooses what new hashes are made with (argon2id by
 * default: OWASP's first choice, m=19 MiB, t=2, p=1). The parameters travel with each
 * hash, so scheme and costs can change at any time: an old hash still verifies with its
 * own scheme and parameters, and the next successful login stores a new hash made with
 * the current ones (password_verify reports such a match as stale). Parameters read back
 * from the database are bounded like configured ones before anything is allocated, so a
 * damaged row cannot make a worker allocate gigabytes.
 *
 * Why Argon2id: a scrypt hash at OWASP's N=2^17, r=8 takes 128 MiB and ~300 ms of CPU, so
 * two cores verify about three logins a second; Argon2id at m=19 MiB, t=2 is OWASP's
 * equal-strength alternative and costs ~25 ms and a seventh of the memory.
 *
 * Why off the loop: requests hash on the host's job threads (px_work, px_work_on), and
 * the host bounds how many jobs run at once per queue; only the command line hashes in
 * line. The jobs touch nothing but their own memory, the settings (read-only after
 * init), the fetched EVP_KDF (reference counted by OpenSSL, safe to share), the dummy
 * hash (written once in init) and px_base64_*, the SDK's pure functions.
 *
 * The dummy hash: a login for an account that does not exist still runs one hash, with
 * the current scheme and parameters, against a hash of random bytes that nothing
 * matches, so the answer's timing does not tell which accounts exist.
 */
#include <argon2.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "user.h"

#define SALT_LEN 16
#define KEY_LEN 32
#define FIELD_MAX 64 /* the most bytes a stored salt or key may decode to */
#define MEMORY_MAX (1ull << 30)
#define HASH_QUEUE "user.hash" /* new hashes' job queue (see "jobs off the loop") */

static EVP_KDF *kdf;
static char dummy_hash[PASSWORD_HASH_MAX];

/* ---- scrypt ---- */

static bool scrypt_params_ok(uint64_t n, uint64_t r, uint64_t p)
{
    return n >= 2 && (n & (n - 1)) == 0 && r >= 1 && r <= 64 && p >= 1 && p <= 64 &&
           n * r * 128 <= MEMORY_MAX;
}

static int scrypt_derive(const char *pw, size_t pwlen, const unsigned char *salt, size_t saltlen,
                         uint64_t n, uint32_t r, uint32_t p, unsigned char *out, size_t outlen)
{
    /* What OpenSSL itself checks against maxmem: the V array, 128 * r * (N + 2) bytes, plus
     * the B array, 128 * r * p bytes. Never below 256 MiB, so the default N=2^17, r=8 fits
     * with room to spare. */
    uint64_t need = 128ull * r * (n + 2) + 128ull * r * p;
    uint64_t maxmem = need > 256ull << 20 ? need + (1 << 20) : 256ull << 20;
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    if (!ctx)
        return PX_EINTERNAL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pw, pwlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_KDF_derive(ctx, out, outlen, params) == 1;
    EVP_KDF_CTX_free(ctx);
    return ok ? 0 : PX_EINTERNAL;
}

static int scrypt_format(char *out, uint64_t n, uint32_t r, uint32_t p,
                         const unsigned char *salt, const unsigned char *key)
{
    char salt64[4 * ((SALT_LEN + 2) / 3) + 1], key64[4 * ((KEY_LEN + 2) / 3) + 1];
    px_base64_encode(salt, SALT_LEN, 0, salt64, sizeof(salt64));
    px_base64_encode(key, KEY_LEN, 0, key64, sizeof(key64));
    int len =
        snprintf(out, PASSWORD_HASH_MAX, "scrypt$%" PRIu64 "$%u$%u$%s$%s", n, r, p, salt64, key64);
    return len > 0 && len < PASSWORD_HASH_MAX ? 0 : PX_EINTERNAL;
}

typedef struct scrypt_hash {
    uint64_t n, r, p;
    unsigned char salt[FIELD_MAX], key[FIELD_MAX];
    size_t saltlen, keylen;
} scrypt_hash_t;

/* One decimal field up to the next `end` character. */
static const char *number(const char *s, char end, uint64_t *out)
{
    size_t len = strspn(s, "0123456789");
    if (len == 0 || len > 12 || s[len] != end)
        return NULL;
    *out = strtoull(s, NULL, 10);
    return s + len + 1;
}

static int scrypt_parse(const char *stored, scrypt_hash_t *h)
{
    if (!stored || strncmp(stored, "scrypt$", 7))
        return -1;
    const char *s = stored + 7;
    if (!(s = number(s, '$', &h->n)) || !(s = number(s, '$', &h->r)) ||
        !(s = number(s, '$', &h->p)))
        return -1;
    if (!scrypt_params_ok(h->n, h->r, h->p))
        return -1;
    const char *dollar = strchr(s, '$');
    int saltlen = dollar ? px_base64_decode(s, (size_t)(dollar - s), 0, h->salt, FIELD_MAX) : -1;
    int keylen = dollar ? px_base64_decode(dollar + 1, strlen(dollar + 1), 0, h->key, FIELD_MAX)
                        : -1;
    if (saltlen < 8 || keylen < 16)
        return -1;
    h->saltlen = (size_t)saltlen;
    h->keylen = (size_t)keylen;
    return 0;
}

static int scrypt_hash(const char *pw, size_t len, char *out)
{
    unsigned char salt[SALT_LEN], key[KEY_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return PX_EINTERNAL;
    const user_settings_t *s = &user_settings;
    int rc = scrypt_derive(pw, len, salt, sizeof(salt), s->scrypt_n, s->scrypt_r, s->scrypt_p,
                           key, sizeof(key));
    if (!rc)
        rc = scrypt_format(out, s->scrypt_n, s->scrypt_r, s->scrypt_p, salt, key);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* A usable scrypt hash: does `pw` match? *current: made with today's scrypt settings. */
static bool scrypt_check(const scrypt_hash_t *h, const char *pw, size_t len, bool usable,
                         bool *current)
{
    unsigned char key[FIELD_MAX];
    bool match = scrypt_derive(pw, len, h->salt, h->saltlen, h->n, (uint32_t)h->r,
                               (uint32_t)h->p, key, h->keylen) == 0 &&
                 CRYPTO_memcmp(key, h->key, h->keylen) == 0 && usable;
    OPENSSL_cleanse(key, sizeof(key));
    const user_settings_t *s = &user_settings;
    *current = s->scheme == PASSWORD_SCRYPT && h->n == s->scrypt_n && h->r == s->scrypt_r &&
               h->p == s->scrypt_p && h->saltlen == SALT_LEN && h->keylen == KEY_LEN;
    return match;
}

/* ---- Argon2id ---- */

typedef struct argon_params {
    uint64_t m, t, p; /* KiB, passes, lanes */
} argon_params_t;

static bool argon_params_ok(const argon_params_t *a)
{
    return a->m >= 8 * a->p && a->m <= MEMORY_MAX / 1024 && a->t >= 1 && a->t <= 64 &&
           a->p >= 1 && a->p <= 64;
}

/* The parameters of a stored "$argon2id$v=19$m=M,t=T,p=P$..." string, checked before
 * libargon2 sees it: argon2id_verify would allocate whatever `m` says. */
static int argon_parse(const char *stored, argon_params_t *a)
{
    static const char prefix[] = "$argon2id$v=19$m=";
    if (!stored || strncmp(stored, prefix, sizeof(prefix) - 1))
        return -1;
    const char *s = stored + sizeof(prefix) - 1;
    if (!(s = number(s, ',', &a->m)) || strncmp(s, "t=", 2) || !(s = number(s + 2, ',', &a->t)) ||
        strncmp(s, "p=", 2) || !(s = number(s + 2, '$', &a->p)))
        return -1;
    return argon_params_ok(a) && strlen(stored) < PASSWORD_HASH_MAX ? 0 : -1;
}

static int argon_hash_with(const char *pw, size_t len, const argon_params_t *a,
                            const unsigned char *salt, char *out)
{
    int rc = argon2id_hash_encoded((uint32_t)a->t, (uint32_t)a->m, (uint32_t)a->p, pw, len, salt,
                                   SALT_LEN, KEY_LEN, out, PASSWORD_HASH_MAX);
    return rc == ARGON2_OK ? 0 : PX_EINTERNAL;
}

static argon_params_t argon_current(void)
{
    const user_settings_t *s = &user_settings;
    return (argon_params_t){s->argon2_m, s->argon2_t, s->argon2_p};
}

static int argon_hash(const char *pw, size_t len, char *out)
{
    unsigned char salt[SALT_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return PX_EINTERNAL;
    argon_params_t a = argon_current();
    return argon_hash_with(pw, len, &a, salt, out);
}

/* ---- either ---- */

int password_hash(const char *pw, size_t len, char *out)
{
    return user_settings.scheme == PASSWORD_ARGON2ID ? argon_hash(pw, len, out)
                                                     : scrypt_hash(pw, len, out);
}

/* Checks `pw` against `stored`; *stale is set when it matched but was made with other
 * parameters than the current ones. A malformed `stored` never matches. Blocking. */
static bool password_verify(const char *stored, const char *pw, size_t len, bool *stale)
{
    bool match = false, current = false;
    argon_params_t a;
    scrypt_hash_t h;
    if (argon_parse(stored, &a) == 0) {
        match = argon2id_verify(stored, pw, len) == ARGON2_OK;
        argon_params_t now = argon_current();
        current = user_settings.scheme == PASSWORD_ARGON2ID && a.m == now.m && a.t == now.t &&
                  a.p == now.p;
    } else if (scrypt_parse(stored, &h) == 0) {
        match = scrypt_check(&h, pw, len, true, &current);
    } else if (argon_parse(dummy_hash, &a) == 0) {
        /* A damaged hash still costs one hash: the dummy's, with the current settings. */
        (void)argon2id_verify(dummy_hash, pw, len);
    } else if (scrypt_parse(dummy_hash, &h) == 0) {
        (void)scrypt_check(&h, pw, len, false, &current);
    }
    if (stale)
        *stale = match && !current;
    return match;
}

int password_init(px_plugin_t *self)
{
    password_fini(); /* init may run again in the same process (a reload) */
    kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    if (!kdf) {
        px_log(user_plugin, PX_LOG_ERROR, "OpenSSL has no SCRYPT KDF (EVP_KDF_fetch failed)");
        return PX_EINTERNAL;
    }
    /* The dummy: the current scheme and costs over a random password and salt. */
    unsigned char salt[SALT_LEN], key[KEY_LEN];
    int rc = RAND_bytes(salt, sizeof(salt)) == 1 && RAND_bytes(key, sizeof(key)) == 1 ? 0 : -1;
    if (!rc && user_settings.scheme == PASSWORD_ARGON2ID) {
        argon_params_t a = argon_current();
        rc = argon_hash_with((const char *)key, sizeof(key), &a, salt, dummy_hash);
    } else if (!rc) {
        rc = scrypt_format(dummy_hash, user_settings.scrypt_n, user_settings.scrypt_r,
                           user_settings.scrypt_p, salt, key);
    }
    OPENSSL_cleanse(key, sizeof(key));
    if (rc) {
        px_log(user_plugin, PX_LOG_ERROR, "cannot make the dummy password hash");
        password_fini();
        return PX_EINTERNAL;
    }
    /* New hashes' own job queue: see "jobs off the loop" below. */
    rc = px_work_queue(self, HASH_QUEUE, (int)user_settings.hash_jobs,
                       (int)user_settings.hash_queue);
    if (rc)
        password_fini();
    return rc;
}

void password_fini(void)
{
    EVP_KDF_free(kdf);
    kdf = NULL;
}

/* ---- jobs off the loop ----
 *
 * Logins' share. Logins verify; registrations, admin creates and password changes make
 * new hashes. In one FIFO, clients registering in a loop queued ahead of every login (a
 * campaign's 64 loops pushed an admin's login from 0.7 s to a minute). So logins verify
 * on the host's default job queue (px_work, [server] blocking_jobs) and new hashes go to
 * the plugin's own named queue (px_work_on, HASH_QUEUE: hash_jobs threads of its own per
 * worker, at most hash_queue waiting, then 503 with Retry-After): a login never waits
 * behind a new hash, however many clients register.
 */

typedef struct job {
    char *password; /* malloc'd: the job may outlive the request */
    size_t len;
    char *stored; /* verify: the stored hash, NULL for the dummy */
    bool verify;
    password_result_t res;
    char new_hash[PASSWORD_HASH_MAX];
    password_done_fn done;
    void *ctx;
} job_t;

static void job_free(job_t *job)
{
    OPENSSL_clear_free(job->password, job->len);
    free(job->stored);
    OPENSSL_cleanse(job->new_hash, sizeof(job->new_hash));
    free(job);
}

static void job_work(void *ud)
{
    job_t *job = ud;
    if (!job->verify) {
        job->res.status = password_hash(job->password, job->len, job->new_hash);
        job->res.new_hash = job->res.status ? NULL : job->new_hash;
        return;
    }
    bool stale = false;
    job->res.match = password_verify(job->stored, job->password, job->len, &stale);
    if (job->res.match && stale && password_hash(job->password, job->len, job->new_hash) == 0)
        job->res.new_hash = job->new_hash;
}

static void job_done(px_req_t *req, int status, void *ud)
{
    job_t *job = ud;
    if (req) {
        if (status)
            job->res.status = status;
        user_fail(req, job->done(req, &job->res, job->ctx));
    }
    job_free(job);
}

static int job_start(px_req_t *req, bool verify, const char *stored, const char *pw,
                     password_done_fn done, void *ctx)
{
    job_t *job = calloc(1, sizeof(*job));
    if (!job)
        return PX_EINTERNAL;
    job->len = strlen(pw);
    job->password = malloc(job->len + 1);
    job->stored = stored ? strdup(stored) : NULL;
    if (!job->password || (stored && !job->stored)) {
        job_free(job);
        return PX_EINTERNAL;
    }
    memcpy(job->password, pw, job->len + 1);
    job->verify = verify;
    job->done = done;
    job->ctx = ctx;
    int rc = px_work_on(req, verify ? NULL : HASH_QUEUE, job_work, job_done, job);
    if (rc)
        job_free(job);
    return rc;
}

int password_hash_async(px_req_t *req, const char *pw, password_done_fn done, void *ctx)
{
    return job_start(req, false, NULL, pw, done, ctx);
}

int password_verify_async(px_req_t *req, const char *stored, const char *pw, password_done_fn done,
                          void *ctx)
{
    return job_start(req, true, stored, pw, done, ctx);
}
