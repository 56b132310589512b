#include "runner/local_context.h"

#include "lib/buf.h"
#include "lib/json.h"
#include "lib/mem.h"

#include <string.h>

char *local_context_api_url(const char *server_url)
{
    if (strcmp(server_url, "https://github.com") == 0)
        return xstrdup("https://api.github.com");
    return xasprintf("%s/api/v3", server_url);
}

static char *graphql_url(const char *server_url)
{
    if (strcmp(server_url, "https://github.com") == 0)
        return xstrdup("https://api.github.com/graphql");
    return xasprintf("%s/api/graphql", server_url);
}

static json_t *repository_payload(const struct gitinfo *git)
{
    const char *name = strchr(git->repository, '/') + 1;
    return json_pack(
        "{s:s, s:s, s:{s:s, s:s}, s:s, s:s}", "name", name, "full_name", git->repository, "owner",
        "login", git->repository_owner, "name", git->repository_owner, "default_branch",
        strcmp(git->ref_type, "branch") == 0 && *git->ref_name ? git->ref_name : "main", "html_url",
        "");
}

/* The payload GitHub would send for the event, filled from the checkout. */
static json_t *default_event(const struct gitinfo *git, const struct local_context_options *o,
                             const char *event_name)
{
    json_t *repo = repository_payload(git);
    cleanup_free char *html = xasprintf("%s/%s", git->server_url, git->repository);
    json_object_set_new(repo, "html_url", json_string(html));
    json_t *sender = json_pack("{s:s}", "login", git->actor);
    if (strcmp(event_name, "push") == 0)
        return json_pack("{s:s, s:s, s:s, s:o, s:{s:s, s:s}, s:{s:s}, s:o, s:b, s:b}", "ref",
                         git->ref, "before", "0000000000000000000000000000000000000000", "after",
                         git->sha, "repository", repo, "head_commit", "id", git->sha, "message", "",
                         "pusher", "name", git->actor, "sender", sender, "created", 0, "deleted",
                         0);
    if (strcmp(event_name, "workflow_dispatch") == 0)
        return json_pack("{s:s, s:O, s:o, s:o}", "ref", git->ref, "inputs",
                         o->inputs ? o->inputs : json_object(), "repository", repo, "sender",
                         sender);
    if (str_starts_with(event_name, "pull_request"))
        return json_pack("{s:s, s:i, s:{s:i, s:{s:s, s:s}, s:{s:s, s:s}}, s:o, s:o}", "action",
                         "opened", "number", 1, "pull_request", "number", 1, "head", "ref",
                         git->ref_name, "sha", git->sha, "base", "ref", "main", "sha", git->sha,
                         "repository", repo, "sender", sender);
    return json_pack("{s:o, s:o}", "repository", repo, "sender", sender);
}

json_t *local_context_github(const struct gitinfo *git, const struct local_context_options *o)
{
    const char *event_name = o->event_name ? o->event_name : "push";
    json_t *event = o->event ? json_incref(o->event) : default_event(git, o, event_name);
    /* As GitHub: pull requests run on refs/pull/N/merge, with head_ref and base_ref set. */
    const char *head_ref = "", *base_ref = "";
    json_t *pr = json_get(event, "pull_request");
    if (pr) {
        head_ref = json_get_string(json_get(pr, "head"), "ref");
        base_ref = json_get_string(json_get(pr, "base"), "ref");
    }
    cleanup_free char *api = local_context_api_url(git->server_url);
    cleanup_free char *graphql = graphql_url(git->server_url);
    cleanup_free char *repo_url = xasprintf(
        "git://%s/%s.git", git->server_url + strcspn(git->server_url, ":") + 3, git->repository);
    cleanup_free char *workflow_ref =
        xasprintf("%s/%s@%s", git->repository, o->workflow_path ? o->workflow_path : "", git->ref);
    json_t *github = json_object();
    struct {
        const char *key, *value;
    } strings[] = {
        {"server_url", git->server_url},
        {"api_url", api},
        {"graphql_url", graphql},
        {"repository", git->repository},
        {"repository_id", "0"},
        {"repository_owner", git->repository_owner},
        {"repository_owner_id", "0"},
        {"repositoryUrl", repo_url},
        {"run_id", o->run_id ? o->run_id : "1"},
        {"run_number", "1"},
        {"run_attempt", "1"},
        {"retention_days", "90"},
        {"sha", git->sha},
        {"ref", git->ref},
        {"ref_name", git->ref_name},
        {"ref_type", git->ref_type},
        {"head_ref", head_ref ? head_ref : ""},
        {"base_ref", base_ref ? base_ref : ""},
        {"event_name", event_name},
        {"actor", git->actor},
        {"actor_id", "0"},
        {"triggering_actor", git->actor},
        {"workflow", o->workflow_name ? o->workflow_name : ""},
        {"workflow_ref", workflow_ref},
        {"workflow_sha", git->sha},
        {"secret_source", "Actions"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        json_object_set_new(github, strings[i].key, json_string(strings[i].value));
    json_object_set_new(github, "ref_protected", json_false());
    json_object_set_new(github, "event", event);
    return github;
}
