/* api.h — what the host needs from the SDK implementation beyond the table itself. */
#ifndef PX_API_H
#define PX_API_H

#include "hooks.h"
#include "request.h"

/* The implementation of every SDK function: api_<name>, from the lists in panthera.h. */
#define API_DECLARE(ret, name, params, args) ret api_##name params;
PX_API_ALL(API_DECLARE)
#undef API_DECLARE

/* Pool work recorded on a request (api_async.c): a job of work.c is API_OP_WORK. The op
 * leaves the request's list with api_op_finish, when its callback starts. */
enum { API_OP_WORK = 4 };
req_op_t *api_op_new(px_req_t *req, int kind);
void api_op_finish(req_op_t *op);
/* The request or task a transaction belongs to. */
px_req_t *api_txn_req(px_pg_txn_t *txn);
/* px_pg_txn_query (name and cb may be NULL) for a statement whose failure matters only to
 * the transaction: sent with the transaction's next statement, one sync point for both
 * (pg_txn_query_joined). */
int api_pg_txn_query_joined(px_pg_txn_t *txn, const char *name, const char *sql, int nparams,
                            const char *const *values, px_pg_fn cb, void *ud);
/* The transaction holds events: once its COMMIT succeeds, events_wake() is called. */
void api_txn_mark_emitted(px_pg_txn_t *txn);

/* The request is ending: cancel its pool work, roll back its open transactions. */
void api_req_cancel_work(px_req_t *req);
/* The request's client went away while its handler works: ask its PostgreSQL work to end
 * soon (pg_interrupt). Every callback still runs, so the handler finishes and answers, into
 * the void, and the request ends the ordinary way. */
void api_req_interrupt_work(px_req_t *req);
/* The name a plugin's prepared statement `name` has on the shared connections (api_pg.c):
 * "<plugin>:<name>", hashed to fit 63 bytes. PX_EINVAL for an empty or too long name. */
int api_pg_stmt_name(const char *plugin, const char *name, char out[64]);
/* The pure parts of api_helpers.c, for px_req_accept, px_req_if_match / px_res_etag and
 * px_req_uuid: the offer an Accept header value prefers (index, or PX_ENOTACCEPTABLE);
 * whether an If-Match / If-None-Match value lists "etag" (`weak`: W/ tags count too);
 * the canonical lowercase form of a hyphenated UUID. */
int api_accept_choose(const char *accept, const char *const *offers);
bool api_etag_listed(const char *header, const char *etag, bool weak);
bool api_uuid_canonical(const char *s, char out[37]);
/* The message the request's plugin declared with px_pg_conflict for the constraint `err`
 * names (api_pg.c), or NULL. */
const char *api_pg_conflict_message(px_req_t *req, const px_pg_error_t *err);
/* What a px_pg_ok_fn-style callback returned (api_run.c): a negative PX_E* code is
 * answered like a handler's (logged for a task) and PX_DONE returned; else `rc`. */
int api_run_answer(px_req_t *req, int rc);
/* Answer a hook's deny or failure; returns PX_DONE. */
int api_hook_answer(px_req_t *req, const char *name, hooks_result_t *out);
/* Free px_generation_new's generations of `p` (api_generation.c), with the plugin. */
void api_generation_free_all(px_plugin_t *p);

#endif
