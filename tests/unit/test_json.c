#include "lib/json.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

Test(json, members_are_found_ignoring_case)
{
    struct error err = {0};
    const char *text = "{\"AgentId\": \"12\", \"messageType\": \"PipelineAgentJobRequest\","
                       " \"isHostedServer\": \"True\", \"n\": 3}";
    json_t *v = json_load_text(text, strlen(text), "msg", &err);
    cr_assert_not_null(v, "%s", err.message);
    cr_assert_str_eq(json_get_string(v, "MessageType"), "PipelineAgentJobRequest");
    int64_t id = 0;
    cr_assert(json_get_int(v, "agentid", &id));
    cr_assert_eq(id, 12);
    bool hosted = false;
    cr_assert(json_get_bool(v, "IsHostedServer", &hosted));
    cr_assert(hosted);
    cr_assert_null(json_get(v, "missing"));
    cr_assert_null(json_get_string(v, "n"));
    json_decref(v);
}

Test(json, bom_is_skipped)
{
    struct error err = {0};
    const char *text = "\xEF\xBB\xBF{\"a\":1}";
    json_t *v = json_load_text(text, strlen(text), ".runner", &err);
    cr_assert_not_null(v);
    json_decref(v);
}

Test(json, bad_json_says_where)
{
    struct error err = {0};
    const char *text = "{\n  \"a\": ,\n}";
    cr_assert_null(json_load_text(text, strlen(text), "job.json", &err));
    cr_assert_str_eq(err.where, "job.json");
    cr_assert_eq(err.line, 2);
    cr_assert(strstr(err.message, "invalid JSON") != NULL);
}

Test(json, equal_nocase_compares_members_ignoring_case)
{
    json_t *a = json_pack("{s:i, s:[s, {s:b}]}", "Type", 1, "Value", "x", "Deep", 1);
    json_t *b = json_pack("{s:f, s:[s, {s:b}]}", "type", 1.0, "value", "x", "deep", 1);
    json_t *c = json_pack("{s:i, s:[s, {s:b}]}", "type", 2, "value", "x", "deep", 1);
    cr_assert(json_equal_nocase(a, b));
    cr_assert_not(json_equal_nocase(a, c));
    char *s = json_dump_compact(a);
    cr_assert_str_eq(s, "{\"Type\":1,\"Value\":[\"x\",{\"Deep\":true}]}");
    free(s);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}
