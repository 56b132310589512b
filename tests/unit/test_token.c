#include "workflow/token.h"

#include "lib/json.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *parse(const char *text)
{
    struct error err = {0};
    json_t *v = json_load_text(text, strlen(text), "test", &err);
    cr_assert_not_null(v, "%s", err.message);
    return v;
}

static void assert_json(json_t *got, const char *expected)
{
    json_t *want = parse(expected);
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_str_eq(g, w);
    free(g);
    free(w);
    json_decref(want);
}

Test(token, job_message_style_writes_key_value_and_directive)
{
    struct arena a;
    arena_init(&a, 0);
    struct token *map = token_new_mapping(&a);
    token_mapping_add(&a, map, token_new_string(&a, "node-version"),
                      token_new_expression(&a, "matrix.node"));
    struct token *k = token_new_string(&a, "check-latest");
    token_set_position(k, 1, 20, 11);
    token_mapping_add(&a, map, k, token_new_boolean(&a, true));
    token_mapping_add(&a, map, token_new_insert(&a), token_new_expression(&a, "fromJSON(x)"));
    json_t *j = token_to_json(map, TOKEN_JSON_JOB_MESSAGE);
    assert_json(j, "{\"type\":2,\"map\":["
                   "{\"key\":\"node-version\",\"value\":{\"type\":3,\"expr\":\"matrix.node\"}},"
                   "{\"key\":{\"type\":0,\"file\":1,\"line\":20,\"col\":11,\"lit\":"
                   "\"check-latest\"},\"value\":true},"
                   "{\"key\":{\"type\":4,\"directive\":\"insert\"},"
                   "\"value\":{\"type\":3,\"expr\":\"fromJSON(x)\"}}]}");
    json_decref(j);
    j = token_to_json(map, TOKEN_JSON_CORPUS);
    cr_assert_not_null(json_object_get(json_array_get(json_object_get(j, "map"), 0), "Key"));
    json_t *insert = json_object_get(json_array_get(json_object_get(j, "map"), 2), "Key");
    cr_assert_str_eq(json_string_value(json_object_get(insert, "directive")), "insert");
    json_decref(j);
    arena_free(&a);
}

Test(token, scalars_with_position_use_the_object_form)
{
    struct arena a;
    arena_init(&a, 0);
    struct token *seq = token_new_sequence(&a);
    struct token *n = token_new_number(&a, 360);
    token_set_position(n, 1, 3, 5);
    token_sequence_add(&a, seq, n);
    struct token *b = token_new_boolean(&a, false);
    token_set_position(b, 2, 1, 1);
    token_sequence_add(&a, seq, b);
    struct token *nul = token_new_null(&a);
    token_set_position(nul, 1, 9, 2);
    token_sequence_add(&a, seq, nul);
    token_sequence_add(&a, seq, token_new_number(&a, 1.5));
    token_sequence_add(&a, seq, token_new_null(&a));
    json_t *j = token_to_json(seq, TOKEN_JSON_CORPUS);
    assert_json(j, "{\"type\":1,\"seq\":[{\"type\":6,\"file\":1,\"line\":3,\"col\":5,\"num\":360},"
                   "{\"type\":5,\"file\":2,\"line\":1,\"col\":1,\"bool\":false},"
                   "{\"type\":7,\"file\":1,\"line\":9,\"col\":2},1.5,null]}");
    json_decref(j);
    /* Empty collections leave out seq/map. */
    j = token_to_json(token_new_mapping(&a), TOKEN_JSON_JOB_MESSAGE);
    assert_json(j, "{\"type\":2}");
    json_decref(j);
    arena_free(&a);
}

Test(token, reading_accepts_every_form_and_any_case)
{
    struct arena a;
    arena_init(&a, 0);
    struct error err = {0};
    json_t *j = parse("{\"Type\":2,\"MAP\":["
                      "{\"Key\":\"a\",\"Value\":{\"type\":3,\"expr\":\"github.sha\"}},"
                      "{\"key\":{\"lit\":\"b\",\"line\":4},\"value\":{\"type\":1,\"seq\":[1,true,"
                      "null,\"x\",{\"type\":6,\"num\":2.5},{\"type\":5,\"bool\":true},"
                      "{\"type\":7}]}},"
                      "{\"KEY\":{\"type\":4,\"expr\":\"insert\"},\"VALUE\":{\"type\":2}},"
                      "{\"key\":{\"type\":4,\"directive\":\"insert\"},\"value\":\"\"}]}");
    struct token *t = token_from_json(&a, j, &err);
    cr_assert_not_null(t, "%s", err.message);
    cr_assert_eq(t->type, TOKEN_MAPPING);
    cr_assert_eq(t->u.mapping.count, 4);
    cr_assert_str_eq(token_mapping_get(t, "A", true)->u.expression, "github.sha");
    cr_assert_null(token_mapping_get(t, "A", false));
    struct token *b = t->u.mapping.pairs[1].key;
    cr_assert_eq(b->type, TOKEN_STRING);
    cr_assert_str_eq(b->u.string, "b");
    cr_assert_eq(b->line, 4);
    struct token *seq = t->u.mapping.pairs[1].value;
    cr_assert_eq(seq->u.sequence.count, 7);
    cr_assert_eq(seq->u.sequence.items[0]->type, TOKEN_NUMBER);
    cr_assert_eq(seq->u.sequence.items[1]->type, TOKEN_BOOLEAN);
    cr_assert_eq(seq->u.sequence.items[2]->type, TOKEN_NULL);
    cr_assert_eq(seq->u.sequence.items[4]->u.number, 2.5);
    cr_assert(seq->u.sequence.items[5]->u.boolean);
    cr_assert_eq(seq->u.sequence.items[6]->type, TOKEN_NULL);
    cr_assert_eq(t->u.mapping.pairs[2].key->type, TOKEN_INSERT);
    cr_assert_eq(t->u.mapping.pairs[3].key->type, TOKEN_INSERT);
    json_decref(j);
    arena_free(&a);
}

Test(token, round_trip_keeps_the_tree)
{
    struct arena a;
    arena_init(&a, 0);
    struct error err = {0};
    const char *text = "{\"type\":2,\"file\":1,\"line\":1,\"col\":1,\"map\":[{\"key\":{\"type\":0,"
                       "\"file\":1,\"line\":2,\"col\":3,\"lit\":\"run\"},\"value\":{\"type\":3,"
                       "\"expr\":\"format('echo {0}', matrix.os)\"}},{\"key\":\"n\",\"value\":"
                       "{\"type\":1,\"seq\":[-2,1e300,\"Infinity\"]}}]}";
    json_t *j = parse(text);
    struct token *t = token_from_json(&a, j, &err);
    cr_assert_not_null(t, "%s", err.message);
    struct token *c = token_clone(&a, t);
    json_t *back = token_to_json(c, TOKEN_JSON_JOB_MESSAGE);
    cr_assert(json_equal(back, j));
    json_decref(back);
    json_decref(j);
    arena_free(&a);
}

Test(token, infinity_and_nan_numbers_are_written_as_strings)
{
    struct arena a;
    arena_init(&a, 0);
    struct error err = {0};
    json_t *j = token_to_json(token_new_number(&a, INFINITY), TOKEN_JSON_CORPUS);
    cr_assert_str_eq(json_string_value(j), "Infinity");
    json_decref(j);
    struct token *n = token_new_number(&a, -INFINITY);
    token_set_position(n, 1, 1, 1);
    j = token_to_json(n, TOKEN_JSON_CORPUS);
    cr_assert_str_eq(json_string_value(json_object_get(j, "num")), "-Infinity");
    struct token *back = token_from_json(&a, j, &err);
    cr_assert_not_null(back, "%s", err.message);
    cr_assert(isinf(back->u.number) && back->u.number < 0);
    json_decref(j);
    arena_free(&a);
}

Test(token, invalid_json_is_refused_with_its_path)
{
    struct arena a;
    arena_init(&a, 0);
    struct error err = {0};
    const char *bad[] = {
        "[1,2]",
        "{\"type\":\"x\"}",
        "{\"type\":9}",
        "{\"type\":3}",
        "{\"type\":1,\"seq\":[{\"type\":2,\"map\":[{\"value\":1}]}]}",
        "{\"type\":2,\"map\":[{\"key\":{\"type\":1},\"value\":1}]}",
        "{\"type\":4,\"directive\":\"each\"}",
        "{\"type\":6,\"num\":\"many\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = parse(bad[i]);
        error_clear(&err);
        cr_assert_null(token_from_json(&a, j, &err), "accepted %s", bad[i]);
        cr_assert(err.message[0], "no message for %s", bad[i]);
        json_decref(j);
    }
    json_t *j = parse("{\"type\":1,\"seq\":[{\"type\":2,\"map\":[{\"value\":1}]}]}");
    token_from_json(&a, j, &err);
    cr_assert_str_eq(err.where, "$.seq[0].map[0]");
    json_decref(j);
    arena_free(&a);
}

Test(token, display_strings_follow_github)
{
    struct arena a;
    arena_init(&a, 0);
    cr_assert_str_eq(token_to_display_string(&a, token_new_number(&a, 10)), "10");
    cr_assert_str_eq(token_to_display_string(&a, token_new_number(&a, 1.5)), "1.5");
    cr_assert_str_eq(token_to_display_string(&a, token_new_number(&a, 0.1)), "0.1");
    cr_assert_str_eq(token_to_display_string(&a, token_new_number(&a, 1e21)), "1E+21");
    cr_assert_str_eq(token_to_display_string(&a, token_new_number(&a, 0.00001)), "1E-05");
    cr_assert_str_eq(token_to_display_string(&a, token_new_number(&a, 0.0001)), "0.0001");
    cr_assert_str_eq(token_to_display_string(&a, token_new_number(&a, 12345678901234567.0)),
                     "1.23456789012346E+16");
    cr_assert_str_eq(token_to_display_string(&a, token_new_number(&a, 123456789012345.0)),
                     "123456789012345");
    cr_assert_str_eq(token_to_display_string(&a, token_new_boolean(&a, true)), "true");
    cr_assert_str_eq(token_to_display_string(&a, token_new_null(&a)), "");
    cr_assert_str_eq(token_to_display_string(&a, token_new_expression(&a, "a.b")), "${{ a.b }}");
    arena_free(&a);
}
