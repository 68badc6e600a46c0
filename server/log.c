#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static struct {
    int fd;
    char *path;
    int level;
    char role[32];
} error_log = {.fd = STDERR_FILENO, .level = LOG_INFO, .role = "pantherad"};

static struct {
    int fd; /* -1: off */
    char *path;
    buf_t pending;
} access_log = {.fd = -1};

/* Appending files are opened O_APPEND so the lines of several workers never overwrite
 * each other: each flush is one write() of whole lines. */
static int open_append(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    return fd < 0 ? -errno : fd;
}

static int is_stderr(const char *path)
{
    return !path || !*path || !strcmp(path, "stderr");
}

int log_open(const char *path, int level)
{
    error_log.level = level;
    free(error_log.path);
    error_log.path = is_stderr(path) ? NULL : xstrdup(path);
    return log_reopen();
}

int log_reopen(void)
{
    if (!error_log.path) {
        error_log.fd = STDERR_FILENO;
        return 0;
    }
    int fd = open_append(error_log.path);
    if (fd < 0)
        return fd;
    if (error_log.fd != STDERR_FILENO)
        close(error_log.fd);
    error_log.fd = fd;
    return 0;
}

void log_set_role(const char *role)
{
    snprintf(error_log.role, sizeof(error_log.role), "%s", role);
}

int log_level_parse(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (!strcasecmp(s, names[i]))
            return (int)i;
    return -1;
}

int log_enabled(int level)
{
    return level <= error_log.level;
}

static void write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to complain */
        }
        p += n;
        len -= (size_t)n;
    }
}

void log_msgv(int level, const char *prefix, const char *fmt, va_list ap)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (!log_enabled(level))
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] %s[%d]: %s%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)tv.tv_usec / 1000, names[level < 0 ? 0 : level > 3 ? 3 : level],
                     error_log.role, (int)getpid(), prefix ? prefix : "", prefix ? ": " : "");
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    int m = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
    if (m > 0)
        len += (size_t)m < sizeof(line) - len ? (size_t)m : sizeof(line) - len - 1;
    if (len >= sizeof(line) - 1)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    write_all(error_log.fd, line, len);
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_msgv(level, NULL, fmt, ap);
    va_end(ap);
}

void log_errno(int level, const char *fmt, ...)
{
    int saved = errno;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_msg(level, "%s: %s", msg, strerror(saved));
}

int access_log_open(const char *path)
{
    access_log_flush();
    if (access_log.fd > STDERR_FILENO)
        close(access_log.fd);
    access_log.fd = -1;
    free(access_log.path);
    access_log.path = NULL;
    if (path && !strcmp(path, "off"))
        return 0;
    if (is_stderr(path)) {
        access_log.fd = STDERR_FILENO;
        return 0;
    }
    access_log.path = xstrdup(path);
    return access_log_reopen();
}

int access_log_reopen(void)
{
    if (!access_log.path)
        return 0;
    access_log_flush();
    int fd = open_append(access_log.path);
    if (fd < 0)
        return fd;
    if (access_log.fd > STDERR_FILENO)
        close(access_log.fd);
    access_log.fd = fd;
    return 0;
}

int access_log_enabled(void)
{
    return access_log.fd >= 0;
}

void access_log_append(const char *line, size_t len)
{
    if (access_log.fd < 0)
        return;
    buf_append(&access_log.pending, line, len);
    if (access_log.pending.len >= 32 * 1024)
        access_log_flush();
}

char *access_log_reserve(size_t max)
{
    if (access_log.fd < 0)
        return NULL;
    buf_reserve(&access_log.pending, max);
    return access_log.pending.data + access_log.pending.len;
}

void access_log_commit(size_t len)
{
    access_log.pending.len += len;
    if (access_log.pending.len >= 32 * 1024)
        access_log_flush();
}

void access_log_flush(void)
{
    if (access_log.fd < 0 || access_log.pending.len == 0)
        return;
    write_all(access_log.fd, access_log.pending.data, access_log.pending.len);
    access_log.pending.len = 0;
}
