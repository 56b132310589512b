#include "lib/log.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(log, levels_filter_and_lines_are_prefixed)
{
    char *text = NULL;
    size_t size = 0;
    FILE *sink = open_memstream(&text, &size);
    log_set_sink(sink);
    log_set_level(LOG_WARN);
    log_info("hidden %d", 1);
    log_warn("shown %d", 2);
    log_error("also");
    log_set_sink(NULL);
    fclose(sink);
    cr_assert_str_eq(text, "harrier: warning: shown 2\nharrier: error: also\n");
    free(text);
    cr_assert_eq(log_level_parse("DEBUG"), LOG_DEBUG);
    cr_assert_eq(log_level_parse("nope"), -1);
}
