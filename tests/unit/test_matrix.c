#include "workflow/matrix.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <string.h>

/* Tokens built by hand in an arena, so the test depends on matrix.c alone. */
static struct arena arena;

static void setup(void)
{
    arena_init(&arena, 0);
}

static void teardown(void)
{
    arena_free(&arena);
}

static struct token *tok(enum token_type type, int line)
{
    struct token *t = arena_alloc(&arena, sizeof(*t));
    t->type = type;
    t->file = 1;
    t->line = line;
    t->col = 7;
    return t;
}

static struct token *S(const char *s)
{
    struct token *t = tok(TOKEN_STRING, 0);
    t->u.string = s;
    return t;
}

static struct token *N(double n)
{
    struct token *t = tok(TOKEN_NUMBER, 0);
    t->u.number = n;
    return t;
}

static struct token *E(const char *expr)
{
    struct token *t = tok(TOKEN_EXPRESSION, 0);
    t->u.expression = expr;
    return t;
}

static struct token *SEQ(int line, int n, ...)
{
    struct token *t = tok(TOKEN_SEQUENCE, line);
    t->u.sequence.items = arena_alloc(&arena, (size_t)(n + 1) * sizeof(struct token *));
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        t->u.sequence.items[i] = va_arg(ap, struct token *);
    va_end(ap);
    t->u.sequence.count = (size_t)n;
    return t;
}

/* MAP(line, n, "key", value, …) */
static struct token *MAP(int line, int n, ...)
{
    struct token *t = tok(TOKEN_MAPPING, line);
    t->u.mapping.pairs = arena_alloc(&arena, (size_t)(n + 1) * sizeof(struct token_pair));
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        struct token *key = S(va_arg(ap, const char *));
        key->line = line + 1 + i;
        t->u.mapping.pairs[i].key = key;
        t->u.mapping.pairs[i].value = va_arg(ap, struct token *);
    }
    va_end(ap);
    t->u.mapping.count = (size_t)n;
    return t;
}

struct reports {
    struct buf text;
};

static void collect(void *data, const struct token *at, const char *message)
{
    struct reports *r = data;
    buf_printf(&r->text, "%d: %s\n", at ? at->line : 0, message);
}

static char *names_of(const struct matrix *m)
{
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < m->count; i++)
        buf_printf(&b, "%s|%s;", m->items[i].id, m->items[i].name);
    return buf_steal(&b);
}

// cppcheck-suppress unknownMacro
TestSuite(matrix, .init = setup, .fini = teardown);

Test(matrix, cross_product_varies_the_last_vector_fastest)
{
    struct token *strategy = MAP(1, 1, "matrix",
                                 MAP(2, 2, "os", SEQ(3, 2, S("ubuntu-latest"), S("windows-latest")),
                                     "node", SEQ(4, 3, N(10), N(3.10), S("20.x"))));
    struct matrix m;
    struct matrix_options o = {.job_name = "build"};
    cr_assert_eq(matrix_expand(strategy, &o, &m, NULL, NULL), 0);
    cr_assert_eq(m.count, 6);
    cleanup_free char *names = names_of(&m);
    cr_assert_str_eq(names, "ubuntu-latest_10|build (ubuntu-latest, 10);"
                            "ubuntu-latest_3_1|build (ubuntu-latest, 3.1);"
                            "ubuntu-latest_20_x|build (ubuntu-latest, 20.x);"
                            "windows-latest_10|build (windows-latest, 10);"
                            "windows-latest_3_1|build (windows-latest, 3.1);"
                            "windows-latest_20_x|build (windows-latest, 20.x);");
    cleanup_free char *ctx = json_dumps(m.items[4].strategy, JSON_COMPACT);
    cr_assert_str_eq(ctx,
                     "{\"fail-fast\":true,\"job-index\":4,\"job-total\":6,\"max-parallel\":6}");
    cleanup_free char *mx = json_dumps(m.items[4].matrix, JSON_COMPACT | JSON_REAL_PRECISION(15));
    cr_assert_str_eq(mx, "{\"os\":\"windows-latest\",\"node\":3.1}");
    matrix_free(&m);
}

/* GitHub's documented example: include extends matching combinations (original values are
 * never overwritten; added ones may be) and adds the rest as new combinations. */
Test(matrix, include_and_exclude_follow_githubs_rules)
{
    struct token *strategy =
        MAP(1, 3, "fail-fast", tok(TOKEN_BOOLEAN, 0), "max-parallel", N(2), "matrix",
            MAP(2, 4, "fruit", SEQ(3, 2, S("apple"), S("pear")), "animal",
                SEQ(4, 2, S("cat"), S("dog")), "include",
                SEQ(5, 5, MAP(6, 1, "color", S("green")),
                    MAP(7, 2, "color", S("pink"), "animal", S("Cat")),
                    MAP(9, 2, "fruit", S("apple"), "shape", S("circle")),
                    MAP(11, 1, "fruit", S("banana")),
                    MAP(12, 2, "fruit", S("banana"), "animal", S("cat"))),
                "exclude", SEQ(14, 1, MAP(15, 2, "fruit", S("pear"), "animal", S("dog")))));
    struct matrix m;
    struct matrix_options o = {.job_name = "j"};
    cr_assert_eq(matrix_expand(strategy, &o, &m, NULL, NULL), 0);
    cr_assert_eq(m.count, 5);
    const char *expected[] = {
        "{\"fruit\":\"apple\",\"animal\":\"cat\",\"color\":\"pink\",\"shape\":\"circle\"}",
        "{\"fruit\":\"apple\",\"animal\":\"dog\",\"color\":\"green\",\"shape\":\"circle\"}",
        "{\"fruit\":\"pear\",\"animal\":\"cat\",\"color\":\"pink\"}",
        "{\"fruit\":\"banana\"}",
        "{\"fruit\":\"banana\",\"animal\":\"cat\"}",
    };
    for (size_t i = 0; i < m.count; i++) {
        cleanup_free char *mx = json_dumps(m.items[i].matrix, JSON_COMPACT);
        cr_assert_str_eq(mx, expected[i], "configuration %zu: %s", i, mx);
    }
    cr_assert_str_eq(m.items[3].id, "banana");
    cr_assert_str_eq(m.items[4].id, "banana_cat");
    cleanup_free char *ctx = json_dumps(m.items[0].strategy, JSON_COMPACT);
    cr_assert_str_eq(ctx,
                     "{\"fail-fast\":false,\"job-index\":0,\"job-total\":5,\"max-parallel\":2}");
    matrix_free(&m);
}

Test(matrix, numbers_and_strings_compare_as_github_does)
{
    json_t *one = json_real(1), *s1 = json_string(" 1 "), *hex = json_string("0x1");
    json_t *t = json_true(), *abc = json_string("ABC"), *abc2 = json_string("abc");
    json_t *null = json_null(), *empty = json_string("");
    cr_assert(matrix_values_equal(one, s1));
    cr_assert(matrix_values_equal(one, hex));
    cr_assert(matrix_values_equal(t, one));
    cr_assert(matrix_values_equal(abc, abc2));
    cr_assert(matrix_values_equal(null, empty));
    cr_assert_not(matrix_values_equal(abc, one));
    json_decref(one), json_decref(s1), json_decref(hex), json_decref(t);
    json_decref(abc), json_decref(abc2), json_decref(null), json_decref(empty);
}

Test(matrix, errors_are_githubs)
{
    struct token *strategy = MAP(1, 1, "matrix",
                                 MAP(2, 3, "os", SEQ(3, 0), "include", SEQ(4, 1, MAP(5, 0)),
                                     "exclude", SEQ(6, 1, MAP(7, 1, "arch", S("x64")))));
    struct matrix m;
    struct reports r = {BUF_INIT};
    struct matrix_options o = {.job_name = "j"};
    cr_assert_eq(matrix_expand(strategy, &o, &m, collect, &r), -1);
    cr_assert_str_eq(buf_cstr(&r.text),
                     "3: Matrix vector 'os' does not contain any values\n"
                     "5: Matrix include mapping does not contain any values\n"
                     "8: Matrix exclude key 'arch' does not match any key within the matrix\n");
    matrix_free(&m);
    buf_free(&r.text);
}

Test(matrix, more_than_256_configurations_is_an_error)
{
    struct token *a = SEQ(3, 0), *b = SEQ(4, 0);
    a->u.sequence.items = arena_alloc(&arena, 20 * sizeof(struct token *));
    b->u.sequence.items = arena_alloc(&arena, 20 * sizeof(struct token *));
    for (int i = 0; i < 20; i++) {
        a->u.sequence.items[a->u.sequence.count++] = N(i);
        b->u.sequence.items[b->u.sequence.count++] = N(i);
    }
    struct token *strategy = MAP(10, 1, "matrix", MAP(11, 2, "a", a, "b", b));
    struct matrix m;
    struct reports r = {BUF_INIT};
    struct matrix_options o = {.job_name = "Board", .job_id = "board"};
    cr_assert_eq(matrix_expand(strategy, &o, &m, collect, &r), -1);
    cr_assert_eq(m.count, 0);
    cr_assert_str_eq(buf_cstr(&r.text), "10: Strategy for job 'board' produced 400 configurations "
                                        "which exceeds the maximum of 256 configurations\n");
    buf_free(&r.text);
}

Test(matrix, validation_leaves_expressions_alone_and_checks_the_rest)
{
    struct token *strategy =
        MAP(1, 1, "matrix", MAP(2, 2, "os", E("fromJSON(inputs.os)"), "v", SEQ(4, 0)));
    struct matrix m;
    struct reports r = {BUF_INIT};
    struct matrix_options o = {.job_name = "j", .validate_only = true};
    cr_assert_eq(matrix_expand(strategy, &o, &m, collect, &r), -1);
    cr_assert_str_eq(buf_cstr(&r.text), "4: Matrix vector 'v' does not contain any values\n");
    cr_assert_eq(m.count, 0);
    buf_free(&r.text);

    struct token *bad = MAP(1, 1, "matrix", SEQ(2, 0));
    struct reports r2 = {BUF_INIT};
    cr_assert_eq(matrix_expand(bad, &o, &m, collect, &r2), -2);
    cr_assert_str_eq(buf_cstr(&r2.text),
                     "0: Unexpected type 'SequenceToken' encountered while reading 'matrix'. The "
                     "type 'MappingToken' was expected.\n");
    buf_free(&r2.text);
}

Test(matrix, no_strategy_is_one_configuration)
{
    struct matrix m;
    struct matrix_options o = {.job_name = "solo"};
    cr_assert_eq(matrix_expand(NULL, &o, &m, NULL, NULL), 0);
    cr_assert_eq(m.count, 1);
    cr_assert_not(m.has_matrix);
    cr_assert_str_eq(m.items[0].name, "solo");
    cr_assert_null(m.items[0].matrix);
    matrix_free(&m);
}

Test(matrix, long_names_are_cut_and_ids_stay_unique)
{
    static char longname[200];
    memset(longname, 'x', 150);
    struct token *strategy =
        MAP(1, 1, "matrix", MAP(2, 1, "v", SEQ(3, 3, S(longname), S("a.b"), S("a_b"))));
    struct matrix m;
    struct matrix_options o = {.job_name = "j"};
    cr_assert_eq(matrix_expand(strategy, &o, &m, NULL, NULL), 0);
    cr_assert_eq(strlen(m.items[0].id), 25);
    cr_assert_eq(strlen(m.items[0].name), 100);
    cr_assert(str_ends_with(m.items[0].name, "..."));
    cr_assert_str_eq(m.items[1].id, "a_b");
    cr_assert_str_eq(m.items[2].id, "a_b_2");
    matrix_free(&m);
}
