/*
 * date.c — UTC calendar days as day numbers (days since 1970-01-01), so a range is
 * arithmetic. The conversions are H. Hinnant's days_from_civil / civil_from_days.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "reporting.h"

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void date_format(int64_t z, char out[11])
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    y += m <= 2;
    /* Years 1..9999 only (date_parse's range): four digits. */
    unsigned yy = (unsigned)(y < 1 ? 1 : y > 9999 ? 9999 : y);
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%04u-%02d-%02d", yy, m % 100, d % 100);
    memcpy(out, tmp, 10);
    out[10] = '\0';
}

int date_parse(const char *s, int64_t *days)
{
    int y, m, d;
    char tail;
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-' ||
        sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || y < 1 || m < 1 || m > 12 ||
        d < 1 || d > 31)
        return -1;
    int64_t z = days_from_civil(y, m, d);
    char back[11];
    date_format(z, back);
    if (strcmp(back, s)) /* 2026-02-30 and friends */
        return -1;
    *days = z;
    return 0;
}

int64_t date_today(void)
{
    time_t now = time(NULL);
    return (int64_t)(now / 86400);
}
