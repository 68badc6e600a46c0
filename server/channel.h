/* channel.h — live channels across hosts: PUBLISH on the shared Redis client, and one
 * dedicated subscriber connection per worker that every local subscriber shares. See the
 * essay atop channel.c. */
#ifndef PX_CHANNEL_H
#define PX_CHANNEL_H

#include <stddef.h>

#include "panthera.h"

struct worker;
struct config;
typedef struct channel_hub channel_hub_t;
/* A message kept on a transaction until it commits (px_channel_publish_on_commit). */
typedef struct channel_msg channel_msg_t;

/* The worker's subscriber, from [redis]; it connects on the first subscription. NULL (and
 * nothing to free) without an address. */
channel_hub_t *channel_hub_new(struct worker *w);
/* Closes the connection and frees the hub; subscriptions still held by requests become
 * inert (their owners free them when they end). NULL is accepted. */
void channel_hub_close(channel_hub_t *hub);

/* The request ends: its subscriptions end (api_req_cancel_work). */
void channel_req_end(px_req_t *req);

/* A message for `txn`'s commit, in the request's memory, pushed onto *list. 0 or
 * PX_EINVAL. */
int channel_msg_add(px_req_t *req, channel_msg_t **list, const char *channel, const void *data,
                    size_t len);
/* Wrap a commit's callback so `list` is published once the commit succeeded; a failed
 * commit, or a request that ends first, drops it. */
void channel_commit_wrap(px_req_t *req, channel_msg_t *list, px_pg_done_fn *cb, void **userdata);

#endif
