/* test_master.c — server/master.c: the respawn backoff the README promises ("100 ms
 * doubling to 30 s"), which an API test cannot reach without a minute of worker deaths. */
#include <stdint.h>

#include "check.h"
#include "master.h"

static void test_respawn_delay(void)
{
    static const uint64_t expect[] = {100,  200,  400,   800,   1600,  3200,
                                      6400, 12800, 25600, 30000, 30000, 30000};
    for (unsigned i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        CHECK_EQ_U64(master_respawn_delay_ms(i), expect[i]);
    /* However many deaths: never more than the cap, never a wrapped shift. */
    CHECK_EQ_U64(master_respawn_delay_ms(63), 30000);
    CHECK_EQ_U64(master_respawn_delay_ms(1000000), 30000);
}

int main(void)
{
    RUN(test_respawn_delay);
    return check_finish();
}
