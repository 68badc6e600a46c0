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

/* The worker's subscriber, from [redis]; it connects on the first subscription. NULL (and
 * nothing to free) without an address. */
channel_hub_t *channel_hub_new(struct worker *w);
/* Closes the connection and frees the hub; subscriptions still held by requests become
 * inert (their owners free them when they end). NULL is accepted. */
void channel_hub_close(channel_hub_t *hub);

/* The request ends: its subscriptions end (api_req_cancel_work). */
void channel_req_end(px_req_t *req);

/* px_channel_publish_on_commit's checks of a message: 0 or PX_EINVAL. */
int channel_check(const char *channel, const void *data, size_t len);
/* Publish a message of a transaction that has committed (px_channel_publish_on_commit,
 * run among the commit's hooks in api_async.c): held while Redis is away. */
void channel_publish_committed(px_req_t *req, const char *channel, const void *data,
                               size_t len);
/* The same under the host's own prefix, whatever plugin `req` belongs to: what the host
 * tells its workers on every host (revocation.c) during a plugin's request. */
void channel_publish_host(px_req_t *req, const char *channel, const void *data, size_t len);

#endif
