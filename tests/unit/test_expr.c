#include "lib/buf.h"
#include "lib/json.h"
#include "lib/mem.h"
#include "workflow/expr.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *CONTEXTS_JSON =
    "{\"github\": {\"ref\": \"refs/heads/main\", \"event_name\": \"push\", \"run_number\": \"7\","
    " \"event\": {\"commits\": [{\"id\": \"a1\", \"author\": {\"name\": \"Mona\"}},"
    " {\"id\": \"b2\", \"author\": {\"name\": \"Hubot\"}}]}},"
    " \"env\": {\"Greeting\": \"Hello\", \"COUNT\": \"3\"},"
    " \"matrix\": {\"os\": \"ubuntu-latest\", \"node\": 20}}";

/* Evaluates text over the contexts above; the string form of the result (caller frees), or
 * NULL with err and stage set. */
static char *eval_text(const char *text, struct error *err, enum expr_stage *stage)
{
    struct error ignored;
    enum expr_stage ignored_stage;
    if (!err)
        err = &ignored;
    if (!stage)
        stage = &ignored_stage;
    json_t *contexts = json_loads(CONTEXTS_JSON, 0, NULL);
    static const char *const names[] = {"github", "env", "matrix", NULL};
    struct expr_parse_options options = {names, NULL};
    struct expr_context ctx = {contexts, NULL, NULL, 0};
    struct expr_value v = {0};
    char *s = NULL;
    if (expr_evaluate_text(text, &options, &ctx, &v, stage, err) == 0)
        s = expr_value_to_string(&v);
    expr_value_clear(&v);
    json_decref(contexts);
    return s;
}

#define assert_eval(text, want)                                                                    \
    do {                                                                                           \
        struct error e_ = {0};                                                                     \
        char *got_ = eval_text(text, &e_, NULL);                                                   \
        cr_assert_not_null(got_, "%s: %s", text, e_.message);                                      \
        cr_assert_str_eq(got_, want, "%s", text);                                                  \
        free(got_);                                                                                \
    } while (0)

#define assert_fails(text, want_stage, want_message)                                               \
    do {                                                                                           \
        struct error e_ = {0};                                                                     \
        enum expr_stage s_ = EXPR_STAGE_NONE;                                                      \
        char *got_ = eval_text(text, &e_, &s_);                                                    \
        cr_assert_null(got_, "%s gave '%s'", text, got_);                                          \
        cr_assert_eq(s_, want_stage, "%s: stage %d", text, s_);                                    \
        cr_assert_str_eq(e_.message, want_message);                                                \
    } while (0)

Test(expr, loose_equality_coerces_like_github)
{
    assert_eval("'' == 0", "true");
    assert_eval("' 0x10 ' == 16", "true");
    assert_eval("'1e2' == 100", "true");
    assert_eval("null == 0", "true");
    assert_eval("null == ''", "true");
    assert_eval("true == 1", "true");
    assert_eval("true == '1'", "true");
    assert_eval("'abc' == 'ABC'", "true");
    assert_eval("'abc' == 0", "false");
    assert_eval("NaN == NaN", "false");
    assert_eval("NaN != NaN", "true");
    assert_eval("fromJSON('[]') == fromJSON('[]')", "false");
    assert_eval("github == github", "true");
    assert_eval("github.event == github['EVENT']", "true");
}

Test(expr, ordering_compares_strings_ignoring_case_after_upper_casing)
{
    assert_eval("'a' < 'B'", "true");
    assert_eval("'_' > 'a'", "true"); /* 'A' is 0x41, '_' 0x5F */
    assert_eval("'10' > 9", "true");
    assert_eval("Infinity > 1e308", "true");
    assert_eval("-Infinity < -1e308", "true");
    assert_eval("1 < NaN", "false");
    assert_eval("1 >= NaN", "false");
    assert_eval("true > false", "true");
}

Test(expr, numbers_print_as_github_prints_them)
{
    assert_eval("1.0", "1");
    assert_eval("-0", "0");
    assert_eval("0.1", "0.1");
    assert_eval("1e21", "1E+21");
    assert_eval("123456789012345678", "1.23456789012346E+17");
    assert_eval("0.000001", "1E-06");
    assert_eval("0.84551240822557006", "0.84551240822557");
    assert_eval("0xff", "255");
    assert_eval("0o17", "15");
    assert_eval("0xffffffff", "-1"); /* read as a 32-bit two's complement integer */
    assert_eval("format('{0}', NaN)", "NaN");
    assert_eval("format('{0}', -Infinity)", "-Infinity");
    assert_eval("toJSON(-0)", "0");
}

Test(expr, and_or_return_an_operand_and_not_a_boolean)
{
    assert_eval("env.greeting && matrix.node", "20");
    assert_eval("'' || 'fallback'", "fallback");
    assert_eval("0 && 'x'", "0");
    assert_eval("!''", "true");
    assert_eval("!matrix", "false");
}

Test(expr, keys_contexts_and_functions_ignore_case)
{
    assert_eval("GitHub.REF", "refs/heads/main");
    assert_eval("env['greeting']", "Hello");
    assert_eval("CONTAINS(github.ref, 'HEADS')", "true");
    assert_eval("StartsWith(env.Greeting, 'he')", "true");
    assert_eval("endswith(matrix.os, 'LATEST')", "true");
}

Test(expr, property_and_index_access)
{
    assert_eval("github.event.commits[1].id", "b2");
    assert_eval("github.event.commits['1'].id", "b2");
    assert_eval("github.event.commits[1.9].id", "b2");
    assert_eval("github.event.commits[2].id", "");
    assert_eval("github.event.commits[-1]", "");
    assert_eval("github.missing.deeper", "");
    assert_eval("matrix[null]", "");
}

Test(expr, object_filters_collect_values)
{
    assert_eval("join(github.event.commits.*.id, ', ')", "a1, b2");
    assert_eval("join(github.event.commits[*].author.name)", "Mona,Hubot");
    assert_eval("contains(github.event.commits.*.author.name, 'hubot')", "true");
    assert_eval("toJSON(matrix.*)", "[\n  \"ubuntu-latest\",\n  20\n]");
    assert_eval("toJSON(github.ref.*)", "[]");
    /* indexing a filtered array applies to each element */
    assert_eval("toJSON((github.event.commits.*.id)[0])", "[]");
}

Test(expr, format_escapes_and_errors)
{
    assert_eval("format('{0} {1}', 'a', 'b')", "a b");
    assert_eval("format('{{0}} {0}', 'x')", "{0} x");
    assert_eval("format('{1}{0}{1}', 'a', 'b')", "bab");
    assert_fails("format('{0')", EXPR_STAGE_EVALUATION,
                 "The following format string is invalid: {0");
    assert_fails("format('}')", EXPR_STAGE_EVALUATION, "The following format string is invalid: }");
    assert_fails("format('{1}', 'a')", EXPR_STAGE_EVALUATION,
                 "The following format string references more arguments than were supplied: {1}");
    assert_fails("format('{0:x}', 'a')", EXPR_STAGE_EVALUATION,
                 "The format specifiers 'x' are not valid for objects of type 'String'");
}

Test(expr, to_json_is_pretty_printed_with_two_spaces)
{
    assert_eval("toJSON(fromJSON('{\"a\":[1,{\"b\":null}],\"c\":{}}'))",
                "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {}\n}");
    assert_eval("toJSON('say \"hi\"\n')", "\"say \\\"hi\\\"\\n\"");
    assert_eval("toJSON(true)", "true");
    assert_eval("toJSON(null)", "null");
}

Test(expr, from_json_and_join_and_case)
{
    assert_eval("fromJSON('{\"a\": 2}').A", "2");
    assert_eval("fromJSON(' [1, 2] ')[1]", "2");
    assert_eval("fromJSON('{\"\u00c9t\u00e9\": 1}')['\u00e9T\u00c9']",
                "1"); /* keys ignore case beyond ASCII */
    assert_eval("fromJSON('12345678901234567890')", "1.23456789012346E+19");
    assert_eval("fromJSON('1 trailing')", "1"); /* one value is read, as Newtonsoft's ReadFrom */
    assert_fails("fromJSON('{')", EXPR_STAGE_EVALUATION, "Error parsing fromJson");
    assert_fails("fromJSON('')", EXPR_STAGE_EVALUATION, "Error parsing fromJson");
    assert_eval("join(fromJSON('[1, true, null, \"x\"]'), '-')", "1-true--x");
    assert_eval("join('abc')", "abc");
    assert_eval("join(matrix)", "");
    assert_eval("case(matrix.node == 20, 'new', 'old')", "new");
    assert_eval("case(false, 'a', false, 'b', 'c')", "c");
    assert_fails("case('yes', 'a', 'b')", EXPR_STAGE_EVALUATION,
                 "case predicate must evaluate to a boolean value");
}

Test(expr, syntax_errors_say_where)
{
    assert_fails(
        "foo.bar", EXPR_STAGE_PARSING,
        "Unrecognized named-value: 'foo'. Located at position 1 within expression: foo.bar");
    assert_fails("github.ref ==", EXPR_STAGE_PARSING,
                 "Unexpected end of expression: '=='. Located at position 12 within expression: "
                 "github.ref ==");
    assert_fails("1 = 2", EXPR_STAGE_LEXING,
                 "Unexpected symbol: '='. Located at position 3 within expression: 1 = 2");
    assert_fails("'open", EXPR_STAGE_LEXING,
                 "Unexpected symbol: ''open'. Located at position 1 within expression: 'open");
    assert_fails("nope()", EXPR_STAGE_PARSING,
                 "Unrecognized function: 'nope'. Located at position 1 within expression: nope()");
    assert_fails("contains('a')", EXPR_STAGE_PARSING,
                 "Too few parameters supplied: 'contains'. Located at position 1 within "
                 "expression: contains('a')");
    assert_fails("format('a',)", EXPR_STAGE_PARSING,
                 "Unexpected symbol: ')'. Located at position 12 within expression: format('a',)");
    /* tokens are read as the parser needs them (as GitHub's C# parser): the first error wins */
    assert_fails(
        "foo == 'open", EXPR_STAGE_PARSING,
        "Unrecognized named-value: 'foo'. Located at position 1 within expression: foo == 'open");
    assert_fails("1 2 'open", EXPR_STAGE_PARSING,
                 "Unexpected symbol: '2'. Located at position 3 within expression: 1 2 'open");
    /* positions count characters (UTF-16 units), not bytes, across lines */
    assert_fails(
        "'é' ==\n x", EXPR_STAGE_PARSING,
        "Unrecognized named-value: 'x'. Located at position 9 within expression: 'é' ==\n x");
}

Test(expr, empty_expression_is_null)
{
    struct expr_value v = {0};
    cr_assert_eq(expr_evaluate_text("  ", NULL, NULL, &v, NULL, NULL), 0);
    cr_assert_eq(v.kind, EXPR_NULL);
}

static char *nested(const char *open, const char *middle, const char *close, int n)
{
    struct buf b = BUF_INIT;
    for (int i = 0; i < n; i++)
        buf_puts(&b, open);
    buf_puts(&b, middle);
    for (int i = 0; i < n; i++)
        buf_puts(&b, close);
    return buf_steal(&b);
}

Test(expr, depth_limit_is_fifty)
{
    cleanup_free char *ok = nested("!", "false", "", 49);
    cleanup_free char *deep = nested("!", "false", "", 50);
    assert_eval(ok, "true");
    assert_fails(deep, EXPR_STAGE_PARSING, "Exceeded max expression depth 50");
    cleanup_free char *calls = nested("toJSON(", "1", ")", 50);
    assert_fails(calls, EXPR_STAGE_PARSING, "Exceeded max expression depth 50");
    /* a long chain of || is one node, not a deep one */
    cleanup_free char *chain = nested("0 || ", "1", "", 200);
    assert_eval(chain, "1");
    /* parentheses make no node in GitHub's tree, so they do not count */
    cleanup_free char *grouped = nested("(", "1", ")", 60);
    assert_eval(grouped, "1");
    /* nesting that would exhaust the stack is refused, not crashed on */
    cleanup_free char *parens = nested("(", "1", ")", 100000 / 2);
    struct error e = {0};
    cr_assert_null(eval_text(parens, &e, NULL));
}

Test(expr, length_limit)
{
    char *text = xmalloc(21002);
    memset(text, ' ', 21001);
    text[21001] = 0;
    text[0] = '1';
    assert_fails(text, EXPR_STAGE_LEXING, "Exceeded max expression length 21000");
    text[21000] = 0;
    assert_eval(text, "1");
    free(text);
}

Test(expr, memory_limit_stops_runaway_strings)
{
    /* 40 copies of a 20,000-character string: 1.6 MB in UTF-16, over GitHub's 1 MB. */
    struct buf b = BUF_INIT;
    buf_puts(&b, "format('");
    for (int i = 0; i < 40; i++)
        buf_puts(&b, "{0}");
    buf_puts(&b, "'");
    for (int level = 0; level < 4; level++) /* 'ab' ten times, four times over: 20,000 */
        buf_puts(&b, ", format('{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}'");
    buf_puts(&b, ", 'ab'))))");
    buf_puts(&b, ")");
    struct error e = {0};
    enum expr_stage stage;
    char *got = eval_text(buf_cstr(&b), &e, &stage);
    cr_assert_null(got);
    cr_assert_eq(stage, EXPR_STAGE_EVALUATION, "%s", e.message);
    cr_assert(str_starts_with(
                  e.message,
                  "The maximum allowed memory size was exceeded while evaluating the following "
                  "expression: format('{0}{0}"),
              "%s", e.message);
    buf_free(&b);
}

Test(expr, memory_limit_is_configurable)
{
    struct expr *e;
    struct error err = {0};
    cr_assert_eq(expr_parse("format('{0}{0}{0}', 'abcdefghij')", NULL, &e, NULL, &err), 0);
    struct expr_value v = {0};
    struct expr_context small = {NULL, NULL, NULL, 100};
    cr_assert_lt(expr_evaluate(e, &small, &v, &err), 0);
    cr_assert(strstr(err.message, "maximum allowed memory"));
    struct expr_context roomy = {NULL, NULL, NULL, 10000};
    cr_assert_eq(expr_evaluate(e, &roomy, &v, &err), 0);
    cr_assert_str_eq(v.string, "abcdefghijabcdefghijabcdefghij");
    expr_value_clear(&v);
    expr_free(e);
}

static int host_add(void *host, const struct expr_value *args, size_t nargs, struct expr_value *out,
                    struct error *err)
{
    int *calls = host;
    (*calls)++;
    double sum = 0;
    for (size_t i = 0; i < nargs; i++) {
        if (args[i].kind != EXPR_NUMBER)
            return error_set(err, -1, "add() takes numbers");
        sum += args[i].number;
    }
    out->kind = EXPR_NUMBER;
    out->number = sum;
    return 0;
}

static const struct expr_function HOST[] = {{"add", 1, 3, host_add}, {0}};

Test(expr, host_functions_are_checked_and_called)
{
    int calls = 0;
    struct expr_parse_options options = {NULL, HOST};
    struct expr_context ctx = {NULL, HOST, &calls, 0};
    struct expr_value v = {0};
    struct error err = {0};
    enum expr_stage stage;
    cr_assert_eq(expr_evaluate_text("ADD(1, 2, 0x10)", &options, &ctx, &v, &stage, &err), 0, "%s",
                 err.message);
    cr_assert_eq(v.number, 19);
    cr_assert_eq(calls, 1);
    cr_assert_lt(expr_evaluate_text("add(1, 2, 3, 4)", &options, &ctx, &v, &stage, &err), 0);
    cr_assert_eq(stage, EXPR_STAGE_PARSING);
    cr_assert(str_starts_with(err.message, "Too many parameters supplied: 'add'"));
    cr_assert_lt(expr_evaluate_text("add('x')", &options, &ctx, &v, &stage, &err), 0);
    cr_assert_eq(stage, EXPR_STAGE_EVALUATION);
    cr_assert_str_eq(err.message, "add() takes numbers");
    /* short-circuit: the right side of a false && is never called */
    calls = 0;
    cr_assert_eq(expr_evaluate_text("false && add(1)", &options, &ctx, &v, &stage, &err), 0);
    cr_assert_eq(calls, 0);
}

static void count_name(void *data, const char *name)
{
    buf_printf(data, "%s;", name);
}

Test(expr, references_are_walked)
{
    struct expr *e;
    cr_assert_eq(expr_parse("contains(github.ref, 'x') && Matrix.os && format('{0}', env.A)", NULL,
                            &e, NULL, NULL),
                 0);
    struct buf named = BUF_INIT, functions = BUF_INIT;
    expr_walk_references(e, count_name, NULL, &named);
    expr_walk_references(e, NULL, count_name, &functions);
    cr_assert_str_eq(buf_cstr(&named), "github;Matrix;env;");
    cr_assert_str_eq(buf_cstr(&functions), "contains;format;");
    buf_free(&named);
    buf_free(&functions);
    expr_free(e);
}

Test(expr, values_convert)
{
    struct expr_value v = {EXPR_NUMBER, false, NAN, NULL, NULL};
    json_t *j = expr_value_to_json(&v);
    cr_assert(json_is_null(j));
    json_decref(j);
    cr_assert_not(expr_value_truthy(&v));
    v.number = -0.0;
    cr_assert_not(expr_value_truthy(&v));
    char *s = expr_value_to_string(&v);
    cr_assert_str_eq(s, "0");
    free(s);
    json_t *arr = json_pack("[i, s]", 1, "x");
    expr_value_from_json(&v, arr);
    cr_assert_eq(v.kind, EXPR_ARRAY);
    cr_assert(expr_value_truthy(&v));
    s = expr_value_to_string(&v);
    cr_assert_str_eq(s, "Array");
    free(s);
    j = expr_value_to_json(&v);
    cr_assert(json_equal(j, arr));
    json_decref(j);
    expr_value_clear(&v);
    json_decref(arr);
}
