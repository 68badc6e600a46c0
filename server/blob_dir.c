/*
 * blob_dir.c — the blob store in a directory ([storage] backend = dir), which may be a
 * mount several hosts share.
 *
 *   <dir>/ab/abcdef...            the blob, named by its SHA-256 (fan-out by two digits)
 *   <dir>/refs/ab/abcdef.../KEY   one empty-ish file per reference (KEY: blob_ref_key)
 *   <dir>/.spool/                 temporary files (spool.c), on the same file system
 *
 * Storing. A spooled body already is a file on this file system (the spool directory is
 * inside the store by default), so it is linked in under its name — no byte is copied.
 * Anything else is copied to a temporary name and renamed, so a blob is never seen half
 * written. A blob that exists is left alone: same name, same bytes. Its mtime is touched
 * instead, which restarts its sweep grace.
 *
 * Sweeping against references, with no lock shared between hosts: the sweep renames an
 * unreferenced, old blob aside, looks at its references once more, and deletes it only if
 * there are still none (else it renames it back). A reference is written first and the
 * blob looked for after; if the blob is gone (or aside), the reference is taken back and
 * the caller hears PX_ENOENT. Whatever the interleaving, a reference that was granted
 * never points at a deleted blob.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blob_internal.h"
#include "spool.h"

#define PATH_MAX_LEN 4096

static void blob_path(const blob_store_t *s, const char *id, char *out)
{
    snprintf(out, PATH_MAX_LEN, "%s/%.2s/%s", s->cfg->dir, id, id);
}

static void refs_path(const blob_store_t *s, const char *id, char *out)
{
    snprintf(out, PATH_MAX_LEN, "%s/refs/%.2s/%s", s->cfg->dir, id, id);
}

static int fail_errno(void)
{
    return errno == ENOENT ? PX_ENOENT : PX_EUNAVAIL;
}

/* Copy `fd` whole into `out`; copy_file_range lets the kernel do it without our buffer. */
static int copy_fd(int fd, uint64_t size, int out)
{
    loff_t in_off = 0, out_off = 0;
    while ((uint64_t)in_off < size) {
        ssize_t n = copy_file_range(fd, &in_off, out, &out_off, size - (uint64_t)in_off, 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL)) {
            char buf[64 * 1024];
            ssize_t r = pread(fd, buf, sizeof(buf), in_off);
            if (r <= 0)
                return -1;
            if (pwrite(out, buf, (size_t)r, out_off) != r)
                return -1;
            in_off += r;
            out_off += r;
            continue;
        }
        return -1;
    }
    return 0;
}

static int dir_put(blob_store_t *s, int fd, uint64_t size, const char *id, const char *ctype)
{
    (void)ctype; /* sniffed again from the bytes when asked: they cannot change */
    char path[PATH_MAX_LEN], tmp[PATH_MAX_LEN + 16];
    blob_path(s, id, path);
    if (utimensat(AT_FDCWD, path, NULL, 0) == 0)
        return 0;
    snprintf(tmp, sizeof(tmp), "%s/%.2s", s->cfg->dir, id);
    spool_make_dirs(tmp, 0700);
    if (fdatasync(fd) != 0)
        return PX_EUNAVAIL;
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0)
        return 0;
    if (errno == EEXIST)
        return utimensat(AT_FDCWD, path, NULL, 0) == 0 ? 0 : PX_EUNAVAIL;
    snprintf(tmp, sizeof(tmp), "%s/%.2s/.%s.XXXXXX", s->cfg->dir, id, id);
    int out = mkostemp(tmp, O_CLOEXEC);
    if (out < 0)
        return PX_EUNAVAIL;
    int rc = copy_fd(fd, size, out) == 0 && fdatasync(out) == 0 ? 0 : PX_EUNAVAIL;
    close(out);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = PX_EUNAVAIL;
    if (rc)
        unlink(tmp);
    return rc;
}

static int dir_open(blob_store_t *s, const char *id, int *fd, uint64_t *size)
{
    char path[PATH_MAX_LEN];
    blob_path(s, id, path);
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return fail_errno();
    struct stat st;
    if (fstat(*fd, &st) != 0) {
        close(*fd);
        *fd = -1;
        return PX_EUNAVAIL;
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

static int dir_stat(blob_store_t *s, const char *id, uint64_t *size, char *ctype, size_t ctlen)
{
    int fd;
    int rc = dir_open(s, id, &fd, size);
    if (rc)
        return rc;
    blob_sniff_fd(fd, ctype, ctlen);
    close(fd);
    return 0;
}

static bool has_refs(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno != ENOENT; /* unreadable: keep the blob */
    bool any = false;
    for (struct dirent *e; !any && (e = readdir(d));)
        any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return any;
}

static int dir_ref(blob_store_t *s, const char *id, const char *owner, const char *ref)
{
    char dir[PATH_MAX_LEN], file[PATH_MAX_LEN + 80], path[PATH_MAX_LEN], key[65];
    refs_path(s, id, dir);
    blob_ref_key(owner, ref, key);
    snprintf(file, sizeof(file), "%s/%s", dir, key);
    spool_make_dirs(dir, 0700);
    int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return PX_EUNAVAIL;
    /* Who holds it, for an operator looking at the store; the name is what counts. */
    dprintf(fd, "%s\n%s\n", owner, ref);
    close(fd);
    blob_path(s, id, path);
    if (access(path, F_OK) == 0)
        return 0;
    unlink(file);
    rmdir(dir);
    return PX_ENOENT;
}

static int dir_unref(blob_store_t *s, const char *id, const char *owner, const char *ref)
{
    char dir[PATH_MAX_LEN], file[PATH_MAX_LEN + 80], key[65];
    refs_path(s, id, dir);
    blob_ref_key(owner, ref, key);
    snprintf(file, sizeof(file), "%s/%s", dir, key);
    if (unlink(file) != 0 && errno != ENOENT)
        return PX_EUNAVAIL;
    rmdir(dir); /* fails while other references remain, as it should */
    return 0;
}

/* One blob (or a leftover of an interrupted store or sweep) in a fan-out folder. */
static bool sweep_one(blob_store_t *s, const char *fan, const char *name, time_t cutoff)
{
    char path[PATH_MAX_LEN + 260], aside[PATH_MAX_LEN + 270], refs[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/%s", fan, name);
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_mtime >= cutoff)
        return false;
    if (name[0] == '.' || strlen(name) != 64) {
        unlink(path); /* a copy that never got renamed, or a sweep that never finished */
        return false;
    }
    if (!blob_id_valid(name))
        return false;
    refs_path(s, name, refs);
    if (has_refs(refs))
        return false;
    snprintf(aside, sizeof(aside), "%s.sweep", path);
    if (rename(path, aside) != 0)
        return false;
    if (has_refs(refs)) {
        rename(aside, path);
        return false;
    }
    unlink(aside);
    return true;
}

static int dir_sweep(blob_store_t *s, uint64_t grace_ms, uint64_t *removed)
{
    char lock[PATH_MAX_LEN], fan[PATH_MAX_LEN];
    *removed = 0;
    snprintf(lock, sizeof(lock), "%s/.sweep.lock", s->cfg->dir);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0)
        return errno == ENOENT ? 0 : PX_EUNAVAIL; /* no store yet: nothing to sweep */
    if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        close(lfd); /* another worker of this host is at it */
        return 0;
    }
    time_t cutoff = time(NULL) - (time_t)(grace_ms / 1000);
    DIR *top = opendir(s->cfg->dir);
    int rc = top ? 0 : PX_EUNAVAIL;
    for (struct dirent *e; top && (e = readdir(top));) {
        const char *n = e->d_name;
        if (strlen(n) != 2 || !((n[0] >= '0' && n[0] <= '9') || (n[0] >= 'a' && n[0] <= 'f')))
            continue;
        snprintf(fan, sizeof(fan), "%s/%s", s->cfg->dir, n);
        DIR *d = opendir(fan);
        for (struct dirent *b; d && (b = readdir(d));)
            if (strcmp(b->d_name, ".") && strcmp(b->d_name, "..") &&
                sweep_one(s, fan, b->d_name, cutoff))
                (*removed)++;
        if (d)
            closedir(d);
    }
    if (top)
        closedir(top);
    close(lfd);
    return rc;
}

static void dir_close(blob_store_t *s)
{
    (void)s;
}

const blob_backend_t blob_dir_backend = {
    .name = "dir",
    .put = dir_put,
    .stat = dir_stat,
    .open = dir_open,
    .ref = dir_ref,
    .unref = dir_unref,
    .sweep = dir_sweep,
    .close = dir_close,
};
