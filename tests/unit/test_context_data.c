#include "workflow/context_data.h"

#include "lib/json.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static json_t *parse(const char *text)
{
    struct error err = {0};
    json_t *v = json_load_text(text, strlen(text), "test", &err);
    cr_assert_not_null(v, "%s", err.message);
    return v;
}

static void assert_json(const json_t *got, const char *expected)
{
    char *g = json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    cr_assert_str_eq(g, expected);
    free(g);
}

Test(context_data, the_protocol_example_decodes)
{
    json_t *enc = parse("{\"github\": {\"t\": 2, \"d\": ["
                        "{\"k\": \"repository\", \"v\": \"octo-org/octo-repo\"},"
                        "{\"k\": \"run_id\", \"v\": \"28998362256\"},"
                        "{\"k\": \"event\", \"v\": {\"t\": 2, \"d\": [{\"k\": \"forced\", \"v\": "
                        "false}, {\"k\": \"size\", \"v\": 1}]}}]},"
                        "\"needs\": {\"t\": 2}, \"matrix\": null}");
    struct error err = {0};
    json_t *github = context_data_decode(json_object_get(enc, "github"), NULL, &err);
    cr_assert_not_null(github, "%s", err.message);
    assert_json(github, "{\"repository\":\"octo-org/octo-repo\",\"run_id\":\"28998362256\","
                        "\"event\":{\"forced\":false,\"size\":1}}");
    json_t *needs = context_data_decode(json_object_get(enc, "needs"), NULL, &err);
    assert_json(needs, "{}");
    json_t *matrix = context_data_decode(json_object_get(enc, "matrix"), NULL, &err);
    cr_assert(json_is_null(matrix));
    json_decref(github);
    json_decref(needs);
    json_decref(matrix);
    json_decref(enc);
}

Test(context_data, every_form_and_any_case)
{
    json_t *enc = parse("{\"T\":1,\"A\":[\"s\",{\"s\":\"no type\"},{\"t\":0,\"S\":\"typed\"},"
                        "{\"t\":3,\"b\":true},{\"t\":4,\"n\":1.5},{\"t\":4,\"n\":\"NaN\"},true,"
                        "2,null,{\"t\":1},{\"t\":2,\"D\":[{\"K\":\"a\",\"V\":1},{\"k\":\"b\","
                        "\"v\":2},{\"k\":\"a\",\"v\":3}]}]}");
    struct error err = {0};
    json_t *v = context_data_decode(enc, NULL, &err);
    cr_assert_not_null(v, "%s", err.message);
    assert_json(v, "[\"s\",\"no type\",\"typed\",true,1.5,null,true,2,null,[],{\"a\":3,\"b\":2}]");
    json_decref(v);
    json_decref(enc);
}

Test(context_data, case_sensitive_dictionaries_are_kept)
{
    json_t *enc =
        parse("{\"t\":2,\"d\":[{\"k\":\"env\",\"v\":{\"t\":5,\"d\":[{\"k\":\"Path\","
              "\"v\":\"a\"},{\"k\":\"PATH\",\"v\":\"b\"}]}},{\"k\":\"x\",\"v\":{\"t\":2}}]}");
    struct error err = {0};
    struct context_data_marks marks = {0};
    json_t *v = context_data_decode(enc, &marks, &err);
    cr_assert_not_null(v, "%s", err.message);
    cr_assert_eq(marks.count, 1);
    json_t *env = json_object_get(v, "env");
    cr_assert(context_data_marks_has(&marks, env));
    cr_assert_eq(json_object_size(env), 2);
    cr_assert_not(context_data_marks_has(&marks, json_object_get(v, "x")));
    json_t *back = context_data_encode(v, &marks);
    cr_assert(json_equal(back, enc));
    json_decref(back);
    /* Without marks every object is an ordinary dictionary. */
    back = context_data_encode(v, NULL);
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(json_array_get(json_object_get(back, "d"), 0), "v"), "t")),
                 2);
    json_decref(back);
    context_data_marks_free(&marks);
    json_decref(v);
    json_decref(enc);
}

Test(context_data, encode_writes_bare_scalars_and_leaves_out_empty_members)
{
    json_t *plain = parse("{\"s\":\"x\",\"n\":1.5,\"b\":false,\"z\":null,\"a\":[1,[]],\"o\":{}}");
    json_t *enc = context_data_encode(plain, NULL);
    assert_json(enc, "{\"t\":2,\"d\":[{\"k\":\"s\",\"v\":\"x\"},{\"k\":\"n\",\"v\":1.5},"
                     "{\"k\":\"b\",\"v\":false},{\"k\":\"z\",\"v\":null},{\"k\":\"a\",\"v\":"
                     "{\"t\":1,\"a\":[1,{\"t\":1}]}},{\"k\":\"o\",\"v\":{\"t\":2}}]}");
    struct error err = {0};
    json_t *back = context_data_decode(enc, NULL, &err);
    cr_assert(json_equal(back, plain));
    json_decref(back);
    json_decref(enc);
    json_decref(plain);
}

Test(context_data, bad_input_names_the_path)
{
    struct error err = {0};
    const char *bad[] = {"[1]",
                         "{\"t\":9}",
                         "{\"t\":\"x\"}",
                         "{\"t\":1,\"a\":{}}",
                         "{\"t\":2,\"d\":[{\"v\":1}]}",
                         "{\"t\":4,\"n\":\"many\"}",
                         "{\"t\":2,\"d\":[{\"k\":\"a\",\"v\":{\"t\":1,\"a\":[[1]]}}]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = parse(bad[i]);
        error_clear(&err);
        cr_assert_null(context_data_decode(j, NULL, &err), "accepted %s", bad[i]);
        cr_assert(err.message[0]);
        json_decref(j);
    }
    cr_assert_str_eq(err.where, "$.d[0].a[0]");
}
