/*
 * metrics_plugin.c — counters and histograms a plugin declares (px_metric_counter,
 * px_metric_histogram), shown in /metrics with a `plugin` label.
 *
 * The values live like the host's own counters (metrics.c): each worker writes only its
 * own slot of a MAP_SHARED table the master made before forking, and whichever worker
 * answers /metrics adds the slots up. What the numbers mean is not in shared memory:
 * every worker runs the same plugins' init in the same order, so each builds the same
 * list of metrics (name, kind, bounds) and lays their cells out identically. A slot
 * carries a signature of the layout that wrote it; a reader adds only the slots whose
 * signature is its own, so a reload that changes the list (another plugin, new bounds)
 * never mixes one metric's cells into another's. A replacement worker takes over a dead
 * one's slot (metrics.c) and, with the same layout, keeps adding to it: a counter never
 * goes backwards while the layout stands; when it changes, the new layout starts at zero,
 * which Prometheus reads as a counter reset.
 *
 * Names follow Prometheus ([a-zA-Z_:][a-zA-Z0-9_:]*), may not start with "panthera_"
 * (the host's), and one name has one kind across plugins, so a metric family is printed
 * once with one sample per plugin.
 */
#include "metrics_plugin.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "metrics.h"
#include "util.h"

#define CELLS_PER_SLOT 1024
#define MAX_METRICS 128

enum kind { KIND_COUNTER, KIND_HISTOGRAM };

typedef struct metric {
    char *plugin;
    char *name;
    char *help;
    int kind;
    int cell; /* counter: its value; histogram: buckets, then count, then sum (a double) */
    int nbounds;
    double bounds[METRICS_PLUGIN_MAX_BOUNDS];
} metric_t;

typedef struct slot {
    uint64_t signature;
    uint64_t cells[CELLS_PER_SLOT];
} slot_t;

static slot_t *shm; /* METRICS_MAX_SLOTS of them */
static slot_t *mine;
static metric_t metrics[MAX_METRICS];
static int nmetrics, ncells;
static uint64_t signature = 1469598103934665603ull;
static bool claimed; /* our slot is under our layout (checked at the first write) */

static void render(buf_t *b);

int metrics_plugin_init(void)
{
    if (shm)
        return 0;
    void *p = mmap(NULL, sizeof(slot_t) * METRICS_MAX_SLOTS, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    shm = p;
    metrics_renderer_add(render);
    return 0;
}

static void ensure(void)
{
    if (!shm && metrics_plugin_init() != 0)
        abort();
    if (!mine)
        mine = &shm[0];
}

void metrics_plugin_attach(int slot)
{
    ensure();
    mine = &shm[slot >= 0 && slot < METRICS_MAX_SLOTS ? slot : 0];
    claimed = false;
}

static void mix(const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        signature = (signature ^ p[i]) * 1099511628211ull;
}

/* At the first write, when init has declared everything: a slot a dead worker wrote
 * under the same layout is carried on; one under another layout starts from zero. */
static void claim_slot(void)
{
    claimed = true;
    if (__atomic_load_n(&mine->signature, __ATOMIC_ACQUIRE) == signature)
        return;
    __atomic_store_n(&mine->signature, 0, __ATOMIC_RELEASE);
    memset(mine->cells, 0, sizeof(mine->cells));
    __atomic_store_n(&mine->signature, signature, __ATOMIC_RELEASE);
}

static bool name_ok(const char *name)
{
    if (!name || !*name || strncmp(name, "panthera_", 9) == 0 || strlen(name) > 100)
        return false;
    for (const char *s = name; *s; s++) {
        bool alpha = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
                     *s == ':';
        if (!alpha && !(s > name && *s >= '0' && *s <= '9'))
            return false;
    }
    return true;
}

static int declare(const char *plugin, const char *name, const char *help, int kind,
                   const double *bounds, int nbounds)
{
    ensure();
    if (!plugin || !name_ok(name) || !help || strpbrk(help, "\n\\"))
        return PX_EINVAL;
    for (int i = 0; i < nmetrics; i++) {
        if (strcmp(metrics[i].name, name))
            continue;
        if (!strcmp(metrics[i].plugin, plugin) || metrics[i].kind != kind)
            return PX_EEXIST;
    }
    int need = kind == KIND_COUNTER ? 1 : nbounds + 3;
    if (nmetrics == MAX_METRICS || ncells + need > CELLS_PER_SLOT)
        return PX_EINVAL;
    metric_t *m = &metrics[nmetrics];
    *m = (metric_t){xstrdup(plugin), xstrdup(name), xstrdup(help), kind, ncells, nbounds, {0}};
    if (nbounds)
        memcpy(m->bounds, bounds, (size_t)nbounds * sizeof(double));
    mix(plugin, strlen(plugin) + 1);
    mix(name, strlen(name) + 1);
    mix(&kind, sizeof(kind));
    mix(bounds ? (const void *)bounds : "", (size_t)nbounds * sizeof(double));
    ncells += need;
    claimed = false;
    return nmetrics++;
}

int metrics_plugin_counter(const char *plugin, const char *name, const char *help)
{
    return declare(plugin, name, help, KIND_COUNTER, NULL, 0);
}

int metrics_plugin_histogram(const char *plugin, const char *name, const char *help,
                             const double *bounds, int nbounds)
{
    if (!bounds || nbounds < 1 || nbounds > METRICS_PLUGIN_MAX_BOUNDS)
        return PX_EINVAL;
    for (int i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return PX_EINVAL;
    return declare(plugin, name, help, KIND_HISTOGRAM, bounds, nbounds);
}

static const metric_t *find(const char *plugin, int id, int kind)
{
    if (!claimed)
        claim_slot();
    if (id < 0 || id >= nmetrics || metrics[id].kind != kind || !plugin ||
        strcmp(metrics[id].plugin, plugin))
        return NULL;
    return &metrics[id];
}

static void add(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

void metrics_plugin_add(const char *plugin, int id, uint64_t n)
{
    const metric_t *m = find(plugin, id, KIND_COUNTER);
    if (m)
        add(&mine->cells[m->cell], n);
}

void metrics_plugin_observe(const char *plugin, int id, double value)
{
    const metric_t *m = find(plugin, id, KIND_HISTOGRAM);
    if (!m || isnan(value))
        return;
    int b = 0;
    while (b < m->nbounds && value > m->bounds[b])
        b++;
    add(&mine->cells[m->cell + b], 1);
    add(&mine->cells[m->cell + m->nbounds + 1], 1);
    uint64_t *sum_cell = &mine->cells[m->cell + m->nbounds + 2];
    uint64_t bits = __atomic_load_n(sum_cell, __ATOMIC_RELAXED);
    double sum;
    memcpy(&sum, &bits, sizeof(sum));
    sum += value;
    memcpy(&bits, &sum, sizeof(bits));
    __atomic_store_n(sum_cell, bits, __ATOMIC_RELAXED);
}

/* Cell `cell` added over every slot written under our layout; `as_double` for sums. */
static double total(int cell, bool as_double)
{
    double t = 0;
    for (int i = 0; i < METRICS_MAX_SLOTS; i++) {
        if (__atomic_load_n(&shm[i].signature, __ATOMIC_ACQUIRE) != signature)
            continue;
        uint64_t v = __atomic_load_n(&shm[i].cells[cell], __ATOMIC_RELAXED);
        if (as_double) {
            double d;
            memcpy(&d, &v, sizeof(d));
            t += d;
        } else {
            t += (double)v;
        }
    }
    return t;
}

static void render_one(buf_t *b, const metric_t *m)
{
    if (m->kind == KIND_COUNTER) {
        buf_printf(b, "%s{plugin=\"%s\"} %.0f\n", m->name, m->plugin, total(m->cell, false));
        return;
    }
    double cumulative = 0;
    for (int k = 0; k <= m->nbounds; k++) {
        cumulative += total(m->cell + k, false);
        if (k < m->nbounds)
            buf_printf(b, "%s_bucket{plugin=\"%s\",le=\"%g\"} %.0f\n", m->name, m->plugin,
                       m->bounds[k], cumulative);
        else
            buf_printf(b, "%s_bucket{plugin=\"%s\",le=\"+Inf\"} %.0f\n", m->name, m->plugin,
                       cumulative);
    }
    buf_printf(b, "%s_sum{plugin=\"%s\"} %.17g\n", m->name, m->plugin,
               total(m->cell + m->nbounds + 2, true));
    buf_printf(b, "%s_count{plugin=\"%s\"} %.0f\n", m->name, m->plugin,
               total(m->cell + m->nbounds + 1, false));
}

/* One family per name (HELP and TYPE once), one sample set per plugin that declared it. */
static void render(buf_t *b)
{
    for (int i = 0; i < nmetrics; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = !strcmp(metrics[j].name, metrics[i].name);
        if (seen)
            continue;
        buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", metrics[i].name, metrics[i].help,
                   metrics[i].name, metrics[i].kind == KIND_COUNTER ? "counter" : "histogram");
        for (int j = i; j < nmetrics; j++)
            if (!strcmp(metrics[j].name, metrics[i].name))
                render_one(b, &metrics[j]);
    }
}

void metrics_plugin_reset(void)
{
    for (int i = 0; i < nmetrics; i++) {
        free(metrics[i].plugin);
        free(metrics[i].name);
        free(metrics[i].help);
    }
    nmetrics = ncells = 0;
    signature = 1469598103934665603ull;
    claimed = false;
}
