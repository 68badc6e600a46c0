/* test_helpers.c — the SDK 1.2 HELPERS area that needs no server: statement names per
 * plugin (api_pg.c). */
#include <string.h>

#include "api.h"
#include "check.h"

static void test_stmt_names(void)
{
    char a[64], b[64], c[64];
    CHECK_EQ_INT(api_pg_stmt_name("user", "user_by_id", a), 0);
    CHECK_STR(a, "user:user_by_id");
    CHECK_EQ_INT(api_pg_stmt_name("other", "user_by_id", b), 0);
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ_INT(api_pg_stmt_name("p", "", a), PX_EINVAL);
    CHECK_EQ_INT(api_pg_stmt_name("p", NULL, a), PX_EINVAL);
    char long_name[80];
    memset(long_name, 'x', 64);
    long_name[64] = '\0';
    CHECK_EQ_INT(api_pg_stmt_name("p", long_name, a), PX_EINVAL); /* over 63: as in 1.1 */
    /* Too long together: cut to 63 bytes, told apart by a hash of the whole. */
    long_name[63] = '\0';
    CHECK_EQ_INT(api_pg_stmt_name("plugin", long_name, a), 0);
    CHECK(strlen(a) <= 63);
    long_name[62] = 'y';
    CHECK_EQ_INT(api_pg_stmt_name("plugin", long_name, b), 0);
    CHECK(strlen(b) <= 63 && strcmp(a, b) != 0);
    /* "ab" + "c" and "a" + "bc" differ even when both are hashed. */
    char p1[40], p2[40], n1[60], n2[60];
    memset(p1, 'p', 30), p1[30] = '\0';
    memset(p2, 'p', 31), p2[31] = '\0';
    memset(n1, 'n', 40), n1[40] = '\0';
    memset(n2, 'n', 39), n2[39] = '\0';
    CHECK_EQ_INT(api_pg_stmt_name(p1, n1, a), 0);
    CHECK_EQ_INT(api_pg_stmt_name(p2, n2, c), 0);
    CHECK(strcmp(a, c) != 0);
}

int main(void)
{
    RUN(test_stmt_names);
    return check_finish();
}
