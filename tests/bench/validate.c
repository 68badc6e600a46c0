/*
 * validate.c — what the host's schema validation (server/validate.c) costs per request:
 * CPU time to validate a register body by the user plugin's real RegisterRequest (from
 * plugins/user/schemas.json, $refs and all), a valid one and one with three mistakes,
 * and to compile all of that plugin's schemas (once per worker start).
 *
 *   ninja -C build tests/bench/bench_validate && build/tests/bench/bench_validate
 *
 * CPU time of this process (CLOCK_PROCESS_CPUTIME_ID), the best of 7 runs of N
 * validations each: other load on the machine slows a run but cannot make one faster, so
 * the minimum is the figure least disturbed by it. Prints the commit it was built from.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_commit.h"
#include "validate.h"

#ifndef BENCH_SCHEMAS
#error "BENCH_SCHEMAS: the path of plugins/user/schemas.json"
#endif

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static validate_registry_t *compile_all(const json_t *all)
{
    validate_registry_t *reg = validate_registry_new();
    char err[300];
    const char *name;
    json_t *schema;
    json_object_foreach((json_t *)all, name, schema)
    {
        if (validate_registry_add(reg, name, schema, err, sizeof(err))) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
    }
    if (validate_registry_link(reg, NULL, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return reg;
}

/* Best of 7 runs: CPU nanoseconds per validation of `text`. */
static double per_validation(const validate_node_t *node, const char *text, int n, int *errors)
{
    json_t *body = json_loads(text, 0, NULL);
    double best = 1e30;
    for (int run = 0; run < 7; run++) {
        double t0 = cpu_seconds();
        for (int i = 0; i < n; i++) {
            json_t *fields = json_object();
            *errors = validate_value(node, body, "", fields);
            json_decref(fields);
        }
        double ns = (cpu_seconds() - t0) * 1e9 / n;
        if (ns < best)
            best = ns;
    }
    json_decref(body);
    return best;
}

int main(void)
{
    json_error_t jerr;
    json_t *all = json_load_file(BENCH_SCHEMAS, 0, &jerr);
    if (!all) {
        fprintf(stderr, "%s: %s\n", BENCH_SCHEMAS, jerr.text);
        return 1;
    }
    printf("commit %s; user plugin schemas: %zu\n", BENCH_COMMIT, json_object_size(all));

    double best = 1e30;
    for (int run = 0; run < 7; run++) {
        double t0 = cpu_seconds();
        validate_registry_t *reg = compile_all(all);
        double us = (cpu_seconds() - t0) * 1e6;
        validate_registry_free(reg);
        if (us < best)
            best = us;
    }
    printf("compile all of them:                 %8.1f us CPU (best of 7)\n", best);

    validate_registry_t *reg = compile_all(all);
    const validate_node_t *node = validate_registry_get(reg, "RegisterRequest");
    int errors;
    double ok = per_validation(node,
                               "{\"username\": \"ada.lovelace\", \"email\": "
                               "\"ada@example.org\", \"password\": \"correct horse battery\", "
                               "\"firstName\": \"Ada\", \"lastName\": \"Lovelace\"}",
                               200000, &errors);
    printf("RegisterRequest, valid (%d errors):   %8.0f ns CPU per body (best of 7)\n", errors,
           ok);
    double bad = per_validation(node,
                                "{\"username\": \"x\", \"email\": \"nope\", \"password\": "
                                "\"short\", \"role\": \"admin\"}",
                                200000, &errors);
    printf("RegisterRequest, invalid (%d errors): %8.0f ns CPU per body (best of 7)\n", errors,
           bad);
    validate_registry_free(reg);
    json_decref(all);
    return 0;
}
