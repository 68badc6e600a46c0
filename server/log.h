/* log.h — the error log (human lines, with levels) and the access log (one JSON line per
 * request, buffered, flushed by the worker's tick so a request costs no syscall). */
#ifndef PX_LOG_H
#define PX_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* `path` NULL or "stderr" logs to stderr. Returns 0 or -errno. */
int log_open(const char *path, int level);
int log_reopen(void);
void log_set_role(const char *role); /* "master", "worker 3", ... shown in every line */
int log_level_parse(const char *s);  /* -1 when unknown */
int log_enabled(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_msgv(int level, const char *prefix, const char *fmt, va_list ap);
/* Same, with ": strerror(errno)" appended. */
void log_errno(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
    do { \
        if (log_enabled(LOG_DEBUG)) \
            log_msg(LOG_DEBUG, __VA_ARGS__); \
    } while (0)

/* "off" disables it; NULL or "stderr" writes to stderr. */
int access_log_open(const char *path);
int access_log_reopen(void);
int access_log_enabled(void);
void access_log_append(const char *line, size_t len);
/* Room for a line of at most `max` bytes written in place at the end of the pending
 * buffer (no copy of a line built elsewhere), then access_log_commit(its length). NULL
 * when the access log is off. Nothing else may be appended in between. */
char *access_log_reserve(size_t max);
void access_log_commit(size_t len);
void access_log_flush(void);

#endif
