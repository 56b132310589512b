#include "workflow/yaml_reader.h"

#include "lib/buf.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static struct arena arena;
static struct error err;

static void setup(void)
{
    arena_init(&arena, 0);
    error_clear(&err);
}

static void teardown(void)
{
    arena_free(&arena);
}

static struct token *load_opts(const char *text, const struct yaml_reader_options *o)
{
    struct token *t = NULL;
    int rc = yaml_reader_load(&arena, text, strlen(text), o, &t, &err);
    return rc == 0 ? t : NULL;
}

static struct token *load(const char *text)
{
    struct yaml_reader_options o = {.file_name = "w.yml", .file = 1};
    struct token *t = load_opts(text, &o);
    cr_assert_not_null(t, "%s", err.message);
    return t;
}

static const char *load_error(const char *text)
{
    struct yaml_reader_options o = {.file_name = "w.yml", .file = 1};
    cr_assert_null(load_opts(text, &o), "accepted: %s", text);
    cr_assert_str_eq(err.where, "w.yml");
    return err.message;
}

Test(yaml_reader, plain_scalars_follow_the_core_schema)
{
    setup();
    struct token *t = load("- ''\n- null\n- ~\n- Null\n- true\n- FALSE\n- yes\n- 0755\n- 0x1F\n"
                           "- 0o17\n- -12\n- +3\n- 1.5\n- .5\n- 1e3\n- .inf\n- -.Inf\n- .nan\n"
                           "- 1.2.3\n- '12'\n- \"true\"\n- |\n  null\n- \n- on\n- 0xFFFFFFFF\n");
    cr_assert_eq(t->type, TOKEN_SEQUENCE);
    struct token **it = t->u.sequence.items;
    cr_assert_eq(it[0]->type, TOKEN_STRING);
    cr_assert_eq(it[1]->type, TOKEN_NULL);
    cr_assert_eq(it[2]->type, TOKEN_NULL);
    cr_assert_eq(it[3]->type, TOKEN_NULL);
    cr_assert(it[4]->type == TOKEN_BOOLEAN && it[4]->u.boolean);
    cr_assert(it[5]->type == TOKEN_BOOLEAN && !it[5]->u.boolean);
    cr_assert_eq(it[6]->type, TOKEN_STRING); /* YAML 1.1 booleans are strings */
    cr_assert_eq(it[7]->u.number, 755);      /* no octal without 0o */
    cr_assert_eq(it[8]->u.number, 31);
    cr_assert_eq(it[9]->u.number, 15);
    cr_assert_eq(it[10]->u.number, -12);
    cr_assert_eq(it[11]->u.number, 3);
    cr_assert_eq(it[12]->u.number, 1.5);
    cr_assert_eq(it[13]->u.number, 0.5);
    cr_assert_eq(it[14]->u.number, 1000);
    cr_assert(isinf(it[15]->u.number) && it[15]->u.number > 0);
    cr_assert(isinf(it[16]->u.number) && it[16]->u.number < 0);
    cr_assert(isnan(it[17]->u.number));
    cr_assert_eq(it[18]->type, TOKEN_STRING);
    cr_assert_eq(it[19]->type, TOKEN_STRING);
    cr_assert_eq(it[20]->type, TOKEN_STRING);
    cr_assert_str_eq(it[21]->u.string, "null\n");
    cr_assert_eq(it[22]->type, TOKEN_NULL);
    cr_assert_eq(it[23]->type, TOKEN_STRING);
    cr_assert_eq(it[24]->u.number, -1); /* a 32-bit integer, as .NET parses it */
    teardown();
}

Test(yaml_reader, huge_integers_become_infinity)
{
    setup();
    char text[512] = "a: +";
    memset(text + 4, '9', 400);
    struct token *v = token_mapping_get(load(text), "a", false);
    cr_assert(isinf(v->u.number) && v->u.number > 0);
    teardown();
}

Test(yaml_reader, positions_are_one_based)
{
    setup();
    struct token *t = load("on: push\njobs:\n  build:\n    runs-on: [a, b]\n");
    cr_assert_eq(t->line, 1);
    cr_assert_eq(t->col, 1);
    cr_assert_eq(t->file, 1);
    struct token *build = token_mapping_get(token_mapping_get(t, "jobs", false), "build", false);
    cr_assert_eq(build->line, 4);
    cr_assert_eq(build->col, 5);
    struct token *runs_on = token_mapping_get(build, "runs-on", false);
    cr_assert_eq(runs_on->line, 4);
    cr_assert_eq(runs_on->col, 14);
    cr_assert_eq(runs_on->u.sequence.items[1]->col, 18);
    cr_assert_eq(build->u.mapping.pairs[0].key->col, 5);
    teardown();
}

/* GitHub counts columns in UTF-16 code units: an emoji is two, an accented letter one; a
 * byte-order mark is not counted; a line break starts the count again. */
Test(yaml_reader, columns_count_utf16_code_units)
{
    setup();
    struct token *t =
        load("\xef\xbb\xbf"
             "a: [\xf0\x9f\x98\x80, \xc3\xa9, x, \xf0\x9f\x9a\x80\xf0\x9f\x9a\x80, y]\n"
             "b: [\xc3\xa9, z]\n"
             "\xf0\x9f\x98\x80: {k: v}\n");
    struct token *a = token_mapping_get(t, "a", false);
    cr_assert_eq(a->col, 4);
    cr_assert_eq(a->u.sequence.items[0]->col, 5);  /* after "[" */
    cr_assert_eq(a->u.sequence.items[1]->col, 9);  /* after the emoji: 2 units */
    cr_assert_eq(a->u.sequence.items[2]->col, 12); /* é is one */
    cr_assert_eq(a->u.sequence.items[3]->col, 15);
    cr_assert_eq(a->u.sequence.items[4]->col, 21); /* two rockets: four units */
    struct token *b = token_mapping_get(t, "b", false);
    cr_assert_eq(b->line, 2);
    cr_assert_eq(b->u.sequence.items[1]->col, 8);
    cr_assert_eq(t->u.mapping.pairs[2].value->col, 5);
    cr_assert_eq(t->u.mapping.pairs[2].value->u.mapping.pairs[0].value->col, 9);
    teardown();

    setup();
    load_error("k: \xf0\x9f\x98\x80 x: y\n");
    cr_assert_eq(err.line, 1);
    cr_assert_eq(err.col, 8, "col %d", err.col); /* libyaml says 7 characters */
    teardown();
}

Test(yaml_reader, mapping_order_and_duplicate_keys_are_kept)
{
    setup();
    /* Duplicates are the schema reader's to report ("'x' is already defined"). */
    struct token *t = load("b: 1\na: 2\nb: 3\n");
    cr_assert_eq(t->u.mapping.count, 3);
    cr_assert_str_eq(t->u.mapping.pairs[0].key->u.string, "b");
    cr_assert_str_eq(t->u.mapping.pairs[1].key->u.string, "a");
    teardown();
}

Test(yaml_reader, explicit_tags)
{
    setup();
    struct token *t = load("a: !!str 12\nb: !!int 0x10\nc: !!float 2\nd: !!bool true\n"
                           "e: !!null null\n");
    cr_assert_eq(token_mapping_get(t, "a", false)->type, TOKEN_STRING);
    cr_assert_eq(token_mapping_get(t, "b", false)->u.number, 16);
    cr_assert_eq(token_mapping_get(t, "c", false)->u.number, 2);
    cr_assert_eq(token_mapping_get(t, "d", false)->type, TOKEN_BOOLEAN);
    cr_assert_eq(token_mapping_get(t, "e", false)->type, TOKEN_NULL);
    teardown();
}

Test(yaml_reader, tag_errors_use_githubs_words)
{
    setup();
    cr_assert_str_eq(load_error("x:\n  y: !!int \"300\"\n"),
                     "The scalar style 'DoubleQuoted' on line 2 and column 6 is not valid with "
                     "the tag 'tag:yaml.org,2002:int'");
    cr_assert_str_eq(load_error("a:\n  b: !!float test\n"),
                     "The value 'test' on line 2 and column 6 is invalid for the type "
                     "'tag:yaml.org,2002:float'");
    cr_assert_str_eq(load_error("a: !!timestamp 2022-10-26T00:00:00Z\n"),
                     "Unexpected tag 'tag:yaml.org,2002:timestamp'");
    cr_assert_str_eq(load_error("a: 0x1FFFFFFFF\n"),
                     "The value '0x1FFFFFFFF' on line 1 and column 4 is invalid for the type "
                     "'tag:yaml.org,2002:int'");
    teardown();
}

Test(yaml_reader, anchors_and_aliases_are_shared)
{
    setup();
    struct token *t = load("env: &env\n  A: 1\n  B: &b two\njobs:\n  x:\n    env: *env\n"
                           "    name: *b\n");
    struct token *env = token_mapping_get(t, "env", false);
    struct token *x = token_mapping_get(token_mapping_get(t, "jobs", false), "x", false);
    cr_assert_eq(token_mapping_get(x, "env", false), env);
    cr_assert_str_eq(token_mapping_get(x, "name", false)->u.string, "two");
    /* Positions are those of the anchored node, as GitHub replays it. */
    cr_assert_eq(token_mapping_get(x, "name", false)->line, 3);
    teardown();
}

Test(yaml_reader, merge_keys_are_ordinary_keys)
{
    setup();
    struct token *t = load("base: &base\n  a: 1\nderived:\n  <<: *base\n  b: 2\n");
    struct token *d = token_mapping_get(t, "derived", false);
    cr_assert_eq(d->u.mapping.count, 2);
    cr_assert_str_eq(d->u.mapping.pairs[0].key->u.string, "<<");
    cr_assert_eq(d->u.mapping.pairs[0].value->type, TOKEN_MAPPING);
    teardown();
}

Test(yaml_reader, anchor_errors)
{
    setup();
    cr_assert_str_eq(load_error("a: *nope\n"), "Unknown anchor 'nope'");
    cr_assert_str_eq(load_error("a: &x\n  b: *x\n"), "Maximum object depth exceeded");
    struct yaml_reader_options o = {.file_name = "w.yml", .no_anchors = true};
    cr_assert_null(load_opts("a: &x 1\n", &o));
    cr_assert_str_eq(err.message, "Anchors are not currently supported. Remove the anchor 'x'");
    teardown();
}

Test(yaml_reader, billion_laughs_hits_the_node_limit)
{
    setup();
    const char *text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    cr_assert_str_eq(load_error(text), "Maximum YAML nodes exceeded");
    teardown();
}

Test(yaml_reader, depth_limit)
{
    setup();
    struct yaml_reader_options o = {.file_name = "w.yml", .max_depth = 5};
    cr_assert_not_null(load_opts("a:\n b:\n  c:\n   d:\n    e: 1\n", &o), "%s", err.message);
    cr_assert_null(load_opts("a:\n b:\n  c:\n   d:\n    e: [1]\n", &o));
    cr_assert_str_eq(err.message, "Maximum object depth exceeded");
    /* An alias counts the depth of what it names. */
    cr_assert_null(load_opts("x: &x {a: {b: [1]}}\na:\n b:\n  c: *x\n", &o));
    cr_assert_str_eq(err.message, "Maximum object depth exceeded");
    teardown();
}

Test(yaml_reader, file_size_limit_counts_characters)
{
    setup();
    struct yaml_reader_options o = {.file_name = "w.yml", .max_file_size = 10};
    cr_assert_not_null(load_opts("a: \xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", &o));
    cr_assert_null(load_opts("a: bcdefghij", &o));
    cr_assert_str_eq(err.message, "The maximum file size of 10 characters has been exceeded");
    cr_assert_eq(yaml_reader_text_length("\xf0\x9f\x98\x80", 4), 2);
    teardown();
}

Test(yaml_reader, syntax_errors_have_a_position)
{
    setup();
    load_error("a: b\n c: d\n- e\n");
    cr_assert(err.line > 0, "line %d", err.line);
    cr_assert(err.col > 0);
    cr_assert(err.message[0] >= 'A' && err.message[0] <= 'Z', "%s", err.message);
    teardown();
}

Test(yaml_reader, documents)
{
    setup();
    cr_assert_str_eq(load_error(""), "Expected document start parse event");
    cr_assert_str_eq(load_error("# only a comment\n"), "Expected document start parse event");
    cr_assert_str_eq(load_error("a: 1\n---\nb: 2\n"), "Expected stream end parse event");
    struct token *t = load("---\na: 1\n...\n");
    cr_assert_eq(t->type, TOKEN_MAPPING);
    cr_assert_eq(load("---\n")->type, TOKEN_NULL);
    teardown();
}

Test(yaml_reader, complex_keys_are_refused)
{
    setup();
    cr_assert_str_eq(load_error("? [a, b]\n: c\n"), "Expected mapping end");
    teardown();
}

Test(yaml_reader, partial_reads_mark_the_failure)
{
    setup();
    struct yaml_reader_options o = {.file_name = "w.yml", .partial = true};
    struct token *t = NULL;
    const char *text = "a: 1\nb:\n  - x\n  - c: !!int \"2\"\n";
    cr_assert_lt(yaml_reader_load(&arena, text, strlen(text), &o, &t, &err), 0);
    cr_assert_not_null(t);
    cr_assert_eq(t->u.mapping.count, 2);
    struct token *b = t->u.mapping.pairs[1].value;
    cr_assert_eq(b->type, TOKEN_SEQUENCE);
    cr_assert_eq(b->u.sequence.count, 2);
    struct token *c = b->u.sequence.items[1];
    cr_assert_eq(c->u.mapping.count, 1);
    cr_assert_str_eq(c->u.mapping.pairs[0].key->u.string, "c");
    cr_assert_null(c->u.mapping.pairs[0].value);
    /* Without the option nothing is returned. */
    o.partial = false;
    cr_assert_lt(yaml_reader_load(&arena, text, strlen(text), &o, &t, &err), 0);
    cr_assert_null(t);
    teardown();
}

Test(yaml_reader, many_anchors_and_redefinitions)
{
    setup();
    struct buf text = BUF_INIT;
    for (int i = 0; i < 500; i++)
        buf_printf(&text, "a%d: &x%d v%d\n", i, i, i);
    buf_puts(&text, "r: &x7 redefined\n");
    for (int i = 0; i < 500; i++)
        buf_printf(&text, "b%d: *x%d\n", i, i);
    struct token *t = load(text.data);
    buf_free(&text);
    cr_assert_str_eq(token_mapping_get(t, "b499", false)->u.string, "v499");
    cr_assert_str_eq(token_mapping_get(t, "b7", false)->u.string, "redefined");
    cr_assert_str_eq(token_mapping_get(t, "a7", false)->u.string, "v7");
    teardown();
}
