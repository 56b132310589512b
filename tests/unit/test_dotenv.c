#include "runner/dotenv.h"

#include <criterion/criterion.h>
#include <string.h>

Test(dotenv, reads_plain_quoted_and_multiline_values)
{
    const char *text = "# secrets for local runs\n"
                       "TOKEN=abc123\n"
                       "export SPACED = some value # a comment\n"
                       "HASH=a#b\n"
                       "SINGLE='literal $x \\n'\n"
                       "DOUBLE=\"line1\\nline2 \\\"q\\\"\"\n"
                       "MULTI=\"first\n"
                       "second\"\n"
                       "\n"
                       "EMPTY=\n"
                       "TOKEN=override\n";
    json_t *o = json_object();
    struct error err = {0};
    cr_assert_eq(dotenv_parse(text, ".secrets", o, &err), 0, "%s", err.message);
    cr_assert_str_eq(json_string_value(json_object_get(o, "TOKEN")), "override");
    cr_assert_str_eq(json_string_value(json_object_get(o, "SPACED")), "some value");
    cr_assert_str_eq(json_string_value(json_object_get(o, "HASH")), "a#b");
    cr_assert_str_eq(json_string_value(json_object_get(o, "SINGLE")), "literal $x \\n");
    cr_assert_str_eq(json_string_value(json_object_get(o, "DOUBLE")), "line1\nline2 \"q\"");
    cr_assert_str_eq(json_string_value(json_object_get(o, "MULTI")), "first\nsecond");
    cr_assert_str_eq(json_string_value(json_object_get(o, "EMPTY")), "");
    json_decref(o);
}

Test(dotenv, errors_name_the_line)
{
    json_t *o = json_object();
    struct error err = {0};
    cr_assert_lt(dotenv_parse("A=1\nB=2\nnot a pair\n", ".secrets", o, &err), 0);
    cr_assert_eq(err.line, 3);
    cr_assert_str_eq(err.where, ".secrets");
    cr_assert_lt(dotenv_parse("A=\"open\n", ".secrets", o, &err), 0);
    cr_assert(strstr(err.message, "no closing") != NULL);
    json_decref(o);
}

Test(dotenv, flag_pairs_keep_the_value_verbatim)
{
    json_t *o = json_object();
    struct error err = {0};
    cr_assert_eq(dotenv_parse_pair("K=a=b \"c\"", "--secret", o, &err), 0);
    cr_assert_str_eq(json_string_value(json_object_get(o, "K")), "a=b \"c\"");
    cr_assert_lt(dotenv_parse_pair("novalue", "--secret", o, &err), 0);
    cr_assert_str_eq(err.message, "--secret 'novalue' must look like NAME=VALUE");
    json_decref(o);
}
