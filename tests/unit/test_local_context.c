#include "runner/local_context.h"

#include <criterion/criterion.h>
#include <string.h>

static struct gitinfo sample(void)
{
    static char *files[] = {"a.c", NULL};
    struct gitinfo g = {
        .workdir = "/w/octo-repo",
        .sha = "0123456789abcdef0123456789abcdef01234567",
        .ref = "refs/heads/feature",
        .ref_name = "feature",
        .ref_type = "branch",
        .repository = "octo-org/octo-repo",
        .repository_owner = "octo-org",
        .server_url = "https://github.com",
        .actor = "mona",
        .changed_files = files,
        .changed_count = 1,
    };
    return g;
}

static const char *member(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

Test(local_context, push_context_matches_what_github_sends)
{
    struct gitinfo g = sample();
    struct local_context_options o = {
        .workflow_name = "CI", .workflow_path = ".github/workflows/ci.yml", .run_id = "42"};
    json_t *gh = local_context_github(&g, &o);
    cr_assert_str_eq(member(gh, "event_name"), "push");
    cr_assert_str_eq(member(gh, "ref"), "refs/heads/feature");
    cr_assert_str_eq(member(gh, "api_url"), "https://api.github.com");
    cr_assert_str_eq(member(gh, "repository_owner"), "octo-org");
    cr_assert_str_eq(member(gh, "run_id"), "42");
    cr_assert_str_eq(member(gh, "workflow_ref"),
                     "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/feature");
    cr_assert_str_eq(member(gh, "repositoryUrl"), "git://github.com/octo-org/octo-repo.git");
    json_t *event = json_object_get(gh, "event");
    cr_assert_str_eq(member(event, "after"), g.sha);
    cr_assert_str_eq(member(json_object_get(event, "repository"), "full_name"),
                     "octo-org/octo-repo");
    cr_assert(json_is_false(json_object_get(gh, "ref_protected")));
    json_decref(gh);
}

Test(local_context, pull_request_sets_head_and_base_ref)
{
    struct gitinfo g = sample();
    struct local_context_options o = {.event_name = "pull_request"};
    json_t *gh = local_context_github(&g, &o);
    cr_assert_str_eq(member(gh, "head_ref"), "feature");
    cr_assert_str_eq(member(gh, "base_ref"), "main");
    json_decref(gh);
}

Test(local_context, given_payload_is_used_and_ghes_urls)
{
    struct gitinfo g = sample();
    g.server_url = "https://ghes.example.com";
    json_t *payload = json_pack("{s:{s:{s:s}, s:{s:s}}}", "pull_request", "head", "ref", "topic",
                                "base", "ref", "release");
    struct local_context_options o = {.event_name = "pull_request_target", .event = payload};
    json_t *gh = local_context_github(&g, &o);
    cr_assert_str_eq(member(gh, "head_ref"), "topic");
    cr_assert_str_eq(member(gh, "base_ref"), "release");
    cr_assert_str_eq(member(gh, "api_url"), "https://ghes.example.com/api/v3");
    cr_assert_str_eq(member(gh, "graphql_url"), "https://ghes.example.com/api/graphql");
    cr_assert_eq(json_object_get(gh, "event"), payload);
    json_decref(gh);
    json_decref(payload);
}

Test(local_context, workflow_dispatch_carries_inputs)
{
    struct gitinfo g = sample();
    json_t *inputs = json_pack("{s:s}", "level", "debug");
    struct local_context_options o = {.event_name = "workflow_dispatch", .inputs = inputs};
    json_t *gh = local_context_github(&g, &o);
    json_t *event = json_object_get(gh, "event");
    cr_assert_str_eq(member(json_object_get(event, "inputs"), "level"), "debug");
    json_decref(gh);
    json_decref(inputs);
}
