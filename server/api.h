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
/* The transaction holds events: once its COMMIT succeeds, events_wake() is called. */
void api_txn_mark_emitted(px_pg_txn_t *txn);

/* The request is ending: cancel its pool work, roll back its open transactions. */
void api_req_cancel_work(px_req_t *req);
/* The request's client went away while its handler works: ask its PostgreSQL work to end
 * soon (pg_interrupt). Every callback still runs, so the handler finishes and answers, into
 * the void, and the request ends the ordinary way. */
void api_req_interrupt_work(px_req_t *req);
/* Answer a hook's deny or failure; returns PX_DONE. */
int api_hook_answer(px_req_t *req, const char *name, hooks_result_t *out);

#endif
