/* revocation.h — access tokens revoked before they expire (px_token_revoke). */
#ifndef PX_REVOCATION_H
#define PX_REVOCATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "panthera.h"

struct worker;

/* The host's table, a migration of its own (migrate.c). */
extern const char revocation_schema_sql[];

/* The worker's pools are up: read the revocations still in force and keep up with new
 * ones (the channel, and a poll every [auth] revocation_poll). Draining: stop. */
void revocation_worker_start(struct worker *w);
void revocation_worker_stop(void);

/* True when an access token for `sub` issued at `issued_ms` (auth_caller_t's, ms since
 * the epoch) was revoked and the revocation has not ended (at `now_ms`, the wall clock
 * for revocation_refused, which costs one comparison while nothing is revoked). */
bool revocation_refused(const char *sub, int64_t issued_ms);
bool revocation_refused_at(const char *sub, int64_t issued_ms, int64_t now_ms);

/* The worker's list itself, for tests: note a revocation (the later of two wins: true when
 * it moved the revocation's time, or is new) and drop those that ended before `now_ms`. */
bool revocation_note(const char *sub, int64_t revoked_at_ms, int64_t ends_at_ms);
void revocation_prune(int64_t now_ms);
size_t revocation_count(void);
void revocation_reset(void);
/* Parse a channel message "<revoked_at_ms> <ends_at_ms> <sub>" and note it: 0, or -1
 * (ignored). */
int revocation_note_message(const char *data, size_t len);

#endif
