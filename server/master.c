/*
 * master.c — binds the listeners, runs the workers and keeps them running.
 *
 * The master never serves a request and never loads a plugin: a plugin that crashes can
 * only take a worker with it. It waits in poll() on a signalfd and on one "ready" pipe
 * per starting worker (a worker writes a byte once its plugins are loaded and it
 * accepts).
 *
 * Respawn. A worker that dies is replaced at once, unless it died young (before ready or
 * within MIN_HEALTHY_MS), in which case the replacement waits 100 ms, 200 ms, ... up to
 * 30 s, so a plugin that crashes at start cannot make us spin. Only while no worker of
 * that index ever got ready in this generation does it wait that long: once one has
 * served, the plugins are known to start, and a replacement waits at most
 * BACKOFF_SERVED_MS, and one that died inside a request's plugin code (crash.c) none at
 * all — its plugins load fine, and the route that killed it is what gets switched off
 * (after [server] crash_limit crashes within crash_window), so clients hammering a bad
 * route can never back the whole service off.
 *
 * Reload (SIGHUP). The new config is parsed; on error the old one keeps running. Then a
 * new generation of workers starts on the same sockets. Only when every one of them is
 * ready are the old ones told to drain (SIGTERM: stop accepting, finish what they have,
 * exit). If a new worker fails first (a plugin refused to load, exit 78), the new
 * generation is stopped and the old one never noticed. Because the listening sockets
 * stay open throughout, no connection is refused in between. A SIGHUP that arrives during
 * a reload is remembered, and one more reload follows when this one ends, so the last
 * change an admin made before signalling is always the one that serves.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crash.h"
#include "log.h"
#include "metrics.h"
#include "metrics_plugin.h"
#include "shared_counter.h"
#include "migrate.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

#define MIN_HEALTHY_MS 2000
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 30000
#define BACKOFF_SERVED_MS 1000
#define RELOAD_READY_TIMEOUT_MS 30000
#define EXIT_CONFIG 78

uint64_t master_respawn_delay_ms(unsigned young_deaths)
{
    uint64_t delay = (uint64_t)BACKOFF_FIRST_MS << (young_deaths < 9 ? young_deaths : 9);
    return delay > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay;
}

typedef struct listener {
    char *address;
    int fd;
} listener_t;

typedef struct child {
    pid_t pid;
    int generation;
    int index;
    int slot;
    int ready_fd; /* read end; -1 once ready or gone */
    bool ready;
    bool retiring;
    uint64_t started;
} child_t;

typedef struct master {
    config_t *cfg;
    config_t *next_cfg; /* during a reload */
    int generation;
    int next_generation;
    uint64_t reload_deadline;
    bool reload_again; /* a SIGHUP came during a reload: the config may have changed since */
    listener_t *listeners;
    size_t nlisteners;
    child_t *children;
    size_t nchildren;
    /* per worker index of the current generation: when to start it, how often it died */
    uint64_t *respawn_at;
    unsigned *failures;
    bool *served; /* a worker of this index got ready in this generation */
    size_t nindexes;
    int sigfd;
    bool stopping;
    uint64_t stop_deadline;
    bool notified_ready;
} master_t;

int master_bind(const char *address)
{
    char host[256], port[16];
    const char *colon = strrchr(address, ':');
    if (!colon) {
        snprintf(host, sizeof(host), "*");
        snprintf(port, sizeof(port), "%s", address);
    } else {
        snprintf(host, sizeof(host), "%.*s", (int)(colon - address), address);
        snprintf(port, sizeof(port), "%s", colon + 1);
    }
    if (host[0] == '[') {
        size_t n = strlen(host);
        if (n < 2 || host[n - 1] != ']') {
            log_error("listen %s: malformed IPv6 address", address);
            return -1;
        }
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(!strcmp(host, "*") || !*host ? NULL : host, port, &hints, &res);
    if (rc) {
        log_error("listen %s: %s", address, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_errno(LOG_ERROR, "listen %s: socket", address);
        goto fail;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (res->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        log_errno(LOG_ERROR, "listen %s: bind", address);
        goto fail;
    }
    if (listen(fd, 4096) < 0) {
        log_errno(LOG_ERROR, "listen %s: listen", address);
        goto fail;
    }
    freeaddrinfo(res);
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return -1;
}

/* systemd's Type=notify, without linking libsystemd. */
static void notify_systemd(const char *message)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@'))
        return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, len);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    sendto(fd, message, strlen(message), 0, (struct sockaddr *)&sa,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    close(fd);
}

static listener_t *listener_find(master_t *m, const char *address)
{
    for (size_t i = 0; i < m->nlisteners; i++)
        if (!strcmp(m->listeners[i].address, address))
            return &m->listeners[i];
    return NULL;
}

/* Bind whatever `cfg` listens on that we do not have yet. */
static int listeners_open(master_t *m, const config_t *cfg)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (listener_find(m, cfg->listen[i]))
            continue;
        int fd = master_bind(cfg->listen[i]);
        if (fd < 0)
            return -1;
        m->listeners = xrealloc(m->listeners, (m->nlisteners + 1) * sizeof(listener_t));
        m->listeners[m->nlisteners++] = (listener_t){xstrdup(cfg->listen[i]), fd};
        log_info("listening on %s", cfg->listen[i]);
    }
    return 0;
}

/* Close what `cfg` no longer listens on (after the workers that used it are told). */
static void listeners_prune(master_t *m, const config_t *cfg)
{
    size_t kept = 0;
    for (size_t i = 0; i < m->nlisteners; i++) {
        bool wanted = false;
        for (size_t j = 0; j < cfg->nlisten && !wanted; j++)
            wanted = !strcmp(cfg->listen[j], m->listeners[i].address);
        if (wanted) {
            m->listeners[kept++] = m->listeners[i];
        } else {
            log_info("no longer listening on %s", m->listeners[i].address);
            close(m->listeners[i].fd);
            free(m->listeners[i].address);
        }
    }
    m->nlisteners = kept;
}

static void child_exec(master_t *m, const config_t *cfg, int slot, int ready_fd)
{
    /* In the child: drop what belongs to the master, restore default signals. */
    close(m->sigfd);
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].ready_fd >= 0)
            close(m->children[i].ready_fd);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    int *fds = xcalloc(cfg->nlisten ? cfg->nlisten : 1, sizeof(int));
    size_t n = 0;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        /* One entry per address, so the worker pairs each with its listen mode. */
        listener_t *l = listener_find(m, cfg->listen[i]);
        fds[n++] = l ? l->fd : -1;
    }
    int code = worker_main(cfg, fds, n, slot, ready_fd);
    free(fds);
    exit(code);
}

static int spawn(master_t *m, const config_t *cfg, int generation, int index)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        log_errno(LOG_ERROR, "pipe");
        return -1;
    }
    int slot = metrics_slot_acquire(-1);
    crash_slot_reset(slot);
    pid_t pid = fork();
    if (pid < 0) {
        log_errno(LOG_ERROR, "fork");
        close(pipefd[0]);
        close(pipefd[1]);
        metrics_slot_release(slot);
        return -1;
    }
    if (pid == 0) {
        close(pipefd[0]);
        child_exec(m, cfg, slot, pipefd[1]);
    }
    close(pipefd[1]);
    m->children = xrealloc(m->children, (m->nchildren + 1) * sizeof(child_t));
    m->children[m->nchildren++] = (child_t){.pid = pid, .generation = generation, .index = index,
                                            .slot = slot, .ready_fd = pipefd[0],
                                            .started = now_ms_monotonic()};
    log_debug("started worker %d (pid %d, generation %d)", index, (int)pid, generation);
    return 0;
}

static void signal_generation(master_t *m, int generation, int signum)
{
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].generation == generation)
            kill(m->children[i].pid, signum);
}

static void set_indexes(master_t *m, size_t n)
{
    free(m->respawn_at);
    free(m->failures);
    free(m->served);
    m->respawn_at = xcalloc(n, sizeof(uint64_t));
    m->failures = xcalloc(n, sizeof(unsigned));
    m->served = xcalloc(n, sizeof(bool));
    m->nindexes = n;
}

static void reload_abort(master_t *m, const char *why)
{
    log_error("reload failed: %s; the running configuration stays in service", why);
    signal_generation(m, m->next_generation, SIGKILL);
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].generation == m->next_generation)
            m->children[i].retiring = true;
    listeners_prune(m, m->cfg);
    config_free(m->next_cfg);
    m->next_cfg = NULL;
    m->next_generation = 0;
}

static void reload_start(master_t *m)
{
    if (m->next_cfg) {
        /* The admin changed something after the running reload read its config (apt's
         * postinst reloads, then `panthera-plugin enable` reloads again): dropping this
         * signal would leave that change unapplied with nothing in the log to say so. */
        if (!m->reload_again)
            log_info("reload already in progress; another follows once it ends");
        m->reload_again = true;
        return;
    }
    log_info("reloading %s", m->cfg->path);
    config_errors_t errs = {0};
    config_t *next = config_load(m->cfg->path, &errs);
    if (!next) {
        config_errors_print(&errs);
        config_errors_free(&errs);
        log_error("reload failed: configuration errors above; the running configuration stays "
                  "in service");
        return;
    }
    if (listeners_open(m, next)) {
        listeners_prune(m, m->cfg);
        config_free(next);
        log_error("reload failed: cannot listen; the running configuration stays in service");
        return;
    }
    int migrated = migrate_run(next);
    if (migrated) {
        listeners_prune(m, m->cfg);
        config_free(next);
        log_error("reload failed: %s; the running configuration stays in service",
                  migrated == MIGRATE_EPLUGINS ? "the plugins do not load (errors above)"
                                               : "migrations (see above)");
        return;
    }
    for (size_t i = 0; i < next->nplugins; i++)
        metrics_plugin_id(next->plugins[i].name);
    m->next_cfg = next;
    m->next_generation = m->generation + 1;
    m->reload_deadline = now_ms_monotonic() + RELOAD_READY_TIMEOUT_MS;
    long n = config_workers_effective(next);
    for (long i = 0; i < n; i++) {
        if (spawn(m, next, m->next_generation, (int)i)) {
            reload_abort(m, "cannot start new workers");
            return;
        }
    }
}

static void reload_commit(master_t *m)
{
    int old = m->generation;
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].generation == old)
            m->children[i].retiring = true;
    signal_generation(m, old, SIGTERM);
    config_free(m->cfg);
    m->cfg = m->next_cfg;
    m->next_cfg = NULL;
    m->generation = m->next_generation;
    m->next_generation = 0;
    set_indexes(m, (size_t)config_workers_effective(m->cfg));
    for (size_t i = 0; i < m->nchildren; i++) {
        const child_t *c = &m->children[i];
        if (c->generation == m->generation && c->ready && (size_t)c->index < m->nindexes)
            m->served[c->index] = true;
    }
    listeners_prune(m, m->cfg);
    log_open(m->cfg->error_log, m->cfg->log_level);
    access_log_open(m->cfg->access_log ? m->cfg->access_log : "off");
    int enabled = crash_routes_enable();
    if (enabled)
        log_info("reload: %d route(s) switched off after crashes serve again", enabled);
    log_info("reload complete: generation %d serving", m->generation);
}

static bool generation_ready(master_t *m, int generation)
{
    size_t ready = 0;
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].generation == generation && !m->children[i].retiring)
            ready += m->children[i].ready;
    const config_t *cfg = generation == m->generation ? m->cfg : m->next_cfg;
    return cfg && ready >= (size_t)config_workers_effective(cfg);
}

static void on_ready(master_t *m, child_t *c)
{
    char byte;
    ssize_t n = read(c->ready_fd, &byte, 1);
    close(c->ready_fd);
    c->ready_fd = -1;
    if (n != 1)
        return; /* it died before it was ready: SIGCHLD tells the rest */
    c->ready = true;
    if (c->generation == m->generation && c->index >= 0 && (size_t)c->index < m->nindexes)
        m->served[c->index] = true;
    if (m->next_cfg && c->generation == m->next_generation) {
        if (generation_ready(m, m->next_generation))
            reload_commit(m);
    } else if (!m->notified_ready && generation_ready(m, m->generation)) {
        m->notified_ready = true;
        notify_systemd("READY=1");
        log_info("%ld workers ready", config_workers_effective(m->cfg));
    }
}

static void describe_status(int status, char *out, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(out, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
}

/* A worker died by a signal inside a request's plugin code: one line naming what ran, the
 * lost request's access log line, and the route's crash count (which may switch it off). */
static void crash_report(master_t *m, int pid, const char *how, const crash_record_t *rec)
{
    log_error("worker pid %d %s in plugin \"%s\", route %s %s, request %s (path %s); "
              "replacing it",
              pid, how, rec->plugin, rec->method, rec->pattern, rec->request_id, rec->path);
    crash_access_log(rec);
    if (crash_count(rec, now_ms_monotonic(), m->cfg->crash_limit, m->cfg->crash_window_ms))
        log_error("route %s %s of plugin \"%s\" crashed %llu workers within %llu ms: every "
                  "worker answers it 503 until the next reload",
                  rec->method, rec->pattern, rec->plugin,
                  (unsigned long long)m->cfg->crash_limit,
                  (unsigned long long)m->cfg->crash_window_ms);
}

static int reap(master_t *m)
{
    int fatal = 0;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        size_t i;
        for (i = 0; i < m->nchildren; i++)
            if (m->children[i].pid == pid)
                break;
        if (i == m->nchildren)
            continue;
        child_t c = m->children[i];
        m->children[i] = m->children[--m->nchildren];
        if (c.ready_fd >= 0)
            close(c.ready_fd);
        crash_record_t rec;
        bool in_request = WIFSIGNALED(status) && crash_slot_read(c.slot, &rec);
        metrics_slot_release(c.slot);
        char how[96];
        describe_status(status, how, sizeof(how));
        if (in_request)
            crash_report(m, (int)pid, how, &rec);
        if (c.retiring || m->stopping) {
            log_debug("worker pid %d %s", (int)pid, how);
            continue;
        }
        bool config_error = WIFEXITED(status) && WEXITSTATUS(status) == EXIT_CONFIG;
        if (m->next_cfg && c.generation == m->next_generation) {
            char why[160];
            /* Without a database no migrator ran: the new workers are the first to load
             * the plugins, and their refusal is a configuration error, not a crash. */
            if (config_error)
                snprintf(why, sizeof(why),
                         "a new worker refused the configuration or its plugins (errors above)");
            else
                snprintf(why, sizeof(why), "a new worker %s before it was ready", how);
            reload_abort(m, why);
            continue;
        }
        if (config_error && !m->notified_ready) {
            log_error("workers cannot start (see the errors above)");
            fatal = 1;
            continue;
        }
        uint64_t now = now_ms_monotonic();
        if (!in_request)
            log_error("worker pid %d %s; replacing it", (int)pid, how);
        metrics_worker_restarted();
        if (c.index >= 0 && (size_t)c.index < m->nindexes) {
            unsigned *f = &m->failures[c.index];
            if (in_request && c.ready) {
                m->respawn_at[c.index] = now;
            } else if (!c.ready || now - c.started < MIN_HEALTHY_MS) {
                uint64_t delay = master_respawn_delay_ms(*f);
                if (m->served[c.index] && delay > BACKOFF_SERVED_MS)
                    delay = BACKOFF_SERVED_MS;
                (*f)++;
                m->respawn_at[c.index] = now + delay;
                if (*f > 1)
                    log_warn("worker %d keeps dying young; next start in %llu ms", c.index,
                             (unsigned long long)delay);
            } else {
                *f = 0;
                m->respawn_at[c.index] = now;
            }
        }
    }
    return fatal;
}

static void respawn_due(master_t *m)
{
    uint64_t now = now_ms_monotonic();
    for (size_t i = 0; i < m->nindexes; i++) {
        if (!m->respawn_at[i] || m->respawn_at[i] > now)
            continue;
        m->respawn_at[i] = 0;
        spawn(m, m->cfg, m->generation, (int)i);
    }
}

static int next_timeout(master_t *m)
{
    uint64_t now = now_ms_monotonic();
    uint64_t wait = 1000;
    for (size_t i = 0; i < m->nindexes; i++) {
        if (!m->respawn_at[i])
            continue;
        uint64_t left = m->respawn_at[i] > now ? m->respawn_at[i] - now : 0;
        if (left < wait)
            wait = left;
    }
    return (int)wait;
}

static void write_pid_file(const char *path)
{
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "w");
    if (!f) {
        log_errno(LOG_WARN, "pid file %s", path);
        return;
    }
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
}

int master_run(config_t *cfg)
{
    master_t m = {.cfg = cfg, .generation = 1, .sigfd = -1};
    log_set_role("master");
    int rc = metrics_init();
    if (rc) {
        log_error("cannot map shared metrics: %s", strerror(-rc));
        return 1;
    }
    rc = crash_init();
    if (!rc)
        rc = metrics_plugin_init();
    if (!rc)
        rc = shared_counter_init();
    if (rc) {
        log_error("cannot map the shared crash, plugin metrics and counter tables: %s",
                  strerror(-rc));
        return 1;
    }
    for (size_t i = 0; i < cfg->nplugins; i++)
        metrics_plugin_id(cfg->plugins[i].name);
    rc = access_log_open(cfg->access_log ? cfg->access_log : "off");
    if (rc)
        log_warn("cannot open access_log %s: %s", cfg->access_log, strerror(-rc));

    sigset_t set;
    sigemptyset(&set);
    int handled[] = {SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGQUIT};
    for (size_t i = 0; i < ARRAY_SIZE(handled); i++)
        sigaddset(&set, handled[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    m.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m.sigfd < 0) {
        log_errno(LOG_ERROR, "signalfd");
        return 1;
    }
    if (listeners_open(&m, cfg))
        return 1;
    tls_ticket_seed();
    int migrated = migrate_run(cfg);
    if (migrated) {
        log_error("cannot start: %s", migrated == MIGRATE_EPLUGINS
                                          ? "the plugins do not load (errors above)"
                                          : "the plugins' migrations are not in place (see above)");
        return 1;
    }
    write_pid_file(cfg->pid_file);
    set_indexes(&m, (size_t)config_workers_effective(cfg));
    for (size_t i = 0; i < m.nindexes; i++)
        if (spawn(&m, cfg, m.generation, (int)i))
            return 1;

    int exit_code = 0;
    for (;;) {
        if (m.stopping && m.nchildren == 0)
            break;
        size_t nfds = 1;
        struct pollfd *fds = xcalloc(m.nchildren + 1, sizeof(struct pollfd));
        child_t **owners = xcalloc(m.nchildren + 1, sizeof(child_t *));
        fds[0] = (struct pollfd){.fd = m.sigfd, .events = POLLIN};
        for (size_t i = 0; i < m.nchildren; i++) {
            if (m.children[i].ready_fd < 0)
                continue;
            owners[nfds] = &m.children[i];
            fds[nfds++] = (struct pollfd){.fd = m.children[i].ready_fd, .events = POLLIN};
        }
        int n = poll(fds, nfds, next_timeout(&m));
        if (n < 0 && errno != EINTR) {
            log_errno(LOG_ERROR, "poll");
            free(fds);
            free(owners);
            break;
        }
        for (size_t i = 1; n > 0 && i < nfds; i++)
            if (fds[i].revents)
                on_ready(&m, owners[i]);
        free(fds);
        free(owners);

        struct signalfd_siginfo si;
        while (read(m.sigfd, &si, sizeof(si)) == sizeof(si)) {
            switch (si.ssi_signo) {
            case SIGCHLD:
                if (reap(&m) && !m.stopping) {
                    m.stopping = true;
                    exit_code = 1;
                    signal_generation(&m, m.generation, SIGTERM);
                }
                break;
            case SIGHUP:
                if (!m.stopping)
                    reload_start(&m);
                break;
            case SIGTERM:
            case SIGINT:
            case SIGQUIT:
                if (!m.stopping) {
                    log_info("shutting down (signal %u): draining workers", si.ssi_signo);
                    notify_systemd("STOPPING=1");
                    m.stopping = true;
                    m.stop_deadline = now_ms_monotonic() + m.cfg->shutdown_timeout_ms + 5000;
                    for (size_t i = 0; i < m.nchildren; i++)
                        kill(m.children[i].pid, SIGTERM);
                }
                break;
            case SIGUSR1:
                log_reopen();
                access_log_reopen();
                log_info("log files reopened");
                for (size_t i = 0; i < m.nchildren; i++)
                    kill(m.children[i].pid, SIGUSR1);
                break;
            default:
                break;
            }
        }
        uint64_t now = now_ms_monotonic();
        if (m.next_cfg && now > m.reload_deadline)
            reload_abort(&m, "new workers were not ready in time");
        if (m.reload_again && !m.next_cfg && !m.stopping) {
            m.reload_again = false;
            reload_start(&m);
        }
        if (m.stopping && m.stop_deadline && now > m.stop_deadline) {
            log_warn("workers did not stop in time; killing them");
            for (size_t i = 0; i < m.nchildren; i++)
                kill(m.children[i].pid, SIGKILL);
            m.stop_deadline = 0;
        }
        if (!m.stopping)
            respawn_due(&m);
    }
    if (m.cfg->pid_file)
        unlink(m.cfg->pid_file);
    for (size_t i = 0; i < m.nlisteners; i++) {
        close(m.listeners[i].fd);
        free(m.listeners[i].address);
    }
    free(m.listeners);
    free(m.children);
    free(m.respawn_at);
    free(m.failures);
    free(m.served);
    config_free(m.next_cfg);
    config_free(m.cfg);
    close(m.sigfd);
    log_info("stopped");
    return exit_code;
}
