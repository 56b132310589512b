/* The runner-mode commands: config, remove, run (PROTOCOL.md §2–4). */
#include "runner/commands.h"

#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "protocol/runner_key.h"
#include "protocol/runner_service.h"
#include "runner/config_store.h"
#include "runner/listener.h"
#include "runner/prompt.h"
#include "lib/path.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

const struct cli_option command_config_options[] = {
    {"url", 0, true, false, true, "URL", "repository, organization or enterprise URL"},
    {"token", 0, true, false, true, "TOKEN", "registration token"},
    {"pat", 0, true, false, true, "PAT", "personal access token (instead of --token)"},
    {"name", 0, true, false, true, "NAME", "runner name (default: host name)"},
    {"labels", 0, true, false, true, "LIST", "extra labels, comma-separated"},
    {"no-default-labels", 0, false, false, true, NULL, "do not add self-hosted, Linux, X64"},
    {"runnergroup", 0, true, false, true, "GROUP", "runner group (default: Default)"},
    {"work", 0, true, false, true, "DIR", "work folder (default: _work)"},
    {"ephemeral", 0, false, false, true, NULL, "take one job, then unregister"},
    {"replace", 0, false, false, true, NULL, "replace a runner of the same name"},
    {"unattended", 0, false, false, true, NULL, "never prompt"},
    {"disableupdate", 0, false, false, true, NULL, "never self-update"},
    {"slots", 0, true, false, true, "N", "register N runners that one 'harrier run' serves"},
    {0},
};

const struct cli_option command_remove_options[] = {
    {"token", 0, true, false, true, "TOKEN", "removal token"},
    {"pat", 0, true, false, true, "PAT", "personal access token (instead of --token)"},
    {"unattended", 0, false, false, true, NULL, "never prompt"},
    {0},
};

const struct cli_option command_run_options[] = {
    {"jitconfig", 0, true, false, true, "BLOB", "just-in-time configuration; runs one job"},
    {"once", 0, false, false, true, NULL, "run one job, then exit"},
    {"slots", 0, true, false, false, "N", "serve N of the registrations config --slots made"},
    {"finish-jobs", 0, false, false, false, NULL, "on SIGTERM/SIGINT let running jobs finish"},
    {"sandbox", 0, true, false, false, "LEVEL", "none, process (default) or strict"},
    {0},
};

/* The runner's files live in the folder it is configured from, as the official runner's
 * live beside config.sh. */
static const char *config_dir(void)
{
    return ".";
}

static int fail(const struct cli_command *cmd, const struct error *err)
{
    char text[ERROR_MESSAGE_MAX + ERROR_WHERE_MAX + 32];
    fprintf(stderr, "harrier %s: %s\n", cmd->name, error_format(err, text, sizeof text));
    return RUNNER_EXIT_TERMINATED;
}

/* A loop and an HTTP client for the one-shot commands. */
struct oneshot {
    uv_loop_t loop;
    struct http_client *http;
};

static void oneshot_init(struct oneshot *o)
{
    uv_loop_init(&o->loop);
    o->http = http_client_new(&o->loop);
}

static void oneshot_close(struct oneshot *o)
{
    http_client_free(o->http);
    uv_run(&o->loop, UV_RUN_DEFAULT);
    uv_loop_close(&o->loop);
}

/* §2.4: registration (or remove) token → tenant URL and a bearer token. */
static int exchange_token(struct oneshot *o, const char *github_url, const char *token,
                          const char *event, char **tenant, char **bearer, struct error *err)
{
    cleanup_free char *api = runner_url_api_root(github_url, err);
    if (!api)
        return err->code;
    cleanup_free char *url = xasprintf("%s/actions/runner-registration", api);
    cleanup_free char *auth = xasprintf("Authorization: RemoteAuth %s", token);
    const char *headers[] = {
        auth, "Content-Type: application/json; charset=utf-8", "Accept: application/json",
        "User-Agent: GitHubActionsRunner-linux-x64/" RUNNER_SERVICE_VERSION, NULL};
    json_t *body = json_pack("{s:s, s:s}", "url", github_url, "runner_event", event);
    cleanup_free char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct vss_conn *conn = vss_conn_new(&o->loop, o->http, api);
    (void)conn;
    vss_conn_free(conn);
    struct http_request_options ro = {.method = "POST",
                                      .url = url,
                                      .headers = headers,
                                      .body = text,
                                      .body_len = strlen(text),
                                      .timeout_ms = 100000};
    struct http_response resp;
    int rc = http_request_sync(&ro, &resp, err);
    if (rc < 0)
        return error_prefix(err, "cannot reach %s (is --url right and the network up?)", api);
    if (resp.status == 404) {
        http_response_free(&resp);
        return error_set(err, EACCES,
                         "the %s token was refused (404): it is wrong or has expired; get a new "
                         "one from the repository's or organization's runner settings",
                         strcmp(event, "remove") == 0 ? "removal" : "registration");
    }
    rc = http_response_check(&resp, "POST", err);
    json_t *reply = rc == 0 ? json_load_text(resp.body.data, resp.body.len, url, err) : NULL;
    http_response_free(&resp);
    if (rc < 0 || !reply)
        return err->code ? err->code : -1;
    const char *schema = json_get_string(reply, "token_schema");
    const char *t = json_get_string(reply, "url");
    const char *b = json_get_string(reply, "token");
    if (!t || !b || !schema || strcmp(schema, "OAuthAccessToken") != 0) {
        json_decref(reply);
        return error_set(err, EPROTO,
                         "runner-registration answered without a url, an OAuthAccessToken "
                         "token_schema and a token");
    }
    *tenant = xstrdup(t);
    *bearer = xstrdup(b);
    json_decref(reply);
    return 0;
}

/* §2.3: a PAT buys a short-lived registration or removal token from the REST API. */
static int token_from_pat(const char *github_url, const char *pat, const char *kind, char **token,
                          struct error *err)
{
    cleanup_free char *api = runner_url_api_root(github_url, err);
    if (!api)
        return err->code;
    const char *path = strstr(github_url, "://");
    path = path ? strchr(path + 3, '/') : NULL;
    size_t n = 0;
    char **parts = path ? str_split(path + 1, '/', &n) : NULL;
    while (n && !*parts[n - 1])
        n--;
    cleanup_free char *scope = NULL;
    if (n == 1)
        scope = xasprintf("orgs/%s", parts[0]);
    else if (n == 2 && strcmp(parts[0], "enterprises") == 0)
        scope = xasprintf("enterprises/%s", parts[1]);
    else if (n == 2)
        scope = xasprintf("repos/%s/%s", parts[0], parts[1]);
    str_list_free(parts);
    if (!scope)
        return error_set(err, EINVAL,
                         "--url should point to an organization, a repository or an enterprise "
                         "to use --pat");
    cleanup_free char *url = xasprintf("%s/%s/actions/runners/%s-token", api, scope, kind);
    cleanup_free char *cred = xasprintf("github:%s", pat);
    cleanup_free char *b64 = codec_base64_encode(cred, strlen(cred));
    cleanup_free char *auth = xasprintf("Authorization: basic %s", b64);
    const char *headers[] = {auth, "Accept: application/vnd.github.v3+json", NULL};
    struct http_request_options ro = {
        .method = "POST", .url = url, .headers = headers, .timeout_ms = 100000};
    struct http_response resp;
    int rc = http_request_sync(&ro, &resp, err);
    if (rc < 0)
        return error_prefix(err, "cannot reach %s", api);
    if (resp.status == 401 || resp.status == 403 || resp.status == 404) {
        long status = resp.status;
        http_response_free(&resp);
        return error_set(err, EACCES,
                         "the personal access token was refused (%ld); it needs admin rights on "
                         "%s",
                         status, scope);
    }
    rc = http_response_check(&resp, "POST", err);
    json_t *reply = rc == 0 ? json_load_text(resp.body.data, resp.body.len, url, err) : NULL;
    http_response_free(&resp);
    const char *t = json_get_string(reply, "token");
    if (t)
        *token = xstrdup(t);
    json_decref(reply);
    if (rc < 0)
        return rc;
    return t ? 0 : error_set(err, EPROTO, "%s answered without a token", url);
}

/* A VSS call whose reply must be 2xx JSON; returns the parsed body or NULL with err set. */
static json_t *call_json(struct vss_conn *conn, const char *method, const char *url,
                         const json_t *body, long *status, struct error *err)
{
    struct vss_call_options o = {.method = method, .url = url, .json = body, .retries = 2};
    struct http_response resp;
    if (vss_call_sync(conn, &o, &resp, err) < 0) {
        http_response_free(&resp);
        return NULL;
    }
    if (status)
        *status = resp.status;
    json_t *reply = NULL;
    if (resp.status / 100 != 2) {
        cleanup_free char *key = vss_error_type_key(&resp);
        if (key)
            error_set(err, EPROTO, "%s %s: %ld %s", method, url, resp.status, key);
        else
            http_response_check(&resp, method, err);
    } else {
        reply = json_load_text(resp.body.data, resp.body.len, url, err);
    }
    http_response_free(&resp);
    return reply;
}

static json_t *find_pool(json_t *pools, const char *group, struct error *err)
{
    json_t *list = json_get(pools, "value");
    json_t *def = NULL, *p;
    bool any_self_hosted = false;
    size_t i;
    json_array_foreach(list, i, p)
    {
        bool internal = false, hosted = false;
        if (!def && json_get_bool(p, "isInternal", &internal) && internal)
            def = p;
        if (!json_get_bool(p, "isHosted", &hosted) || !hosted)
            any_self_hosted = true;
    }
    if (!any_self_hosted) {
        if (!def)
            error_set(err, ENOENT, "the service lists no runner group");
        return def;
    }
    const char *want = group ? group : json_get_string(def, "name");
    json_array_foreach(list, i, p)
    {
        bool hosted = false;
        const char *name = json_get_string(p, "name");
        if (!(json_get_bool(p, "isHosted", &hosted) && hosted) && name && want &&
            str_eq_nocase(name, want))
            return p;
    }
    error_set(err, ENOENT, "Could not find any self-hosted runner group named \"%s\"",
              want ? want : "");
    return NULL;
}

static const char *machine_arch(void)
{
    struct utsname u;
    if (uname(&u) < 0)
        return "X64";
    if (strcmp(u.machine, "aarch64") == 0 || strcmp(u.machine, "arm64") == 0)
        return "ARM64";
    if (strncmp(u.machine, "arm", 3) == 0)
        return "ARM";
    if (strcmp(u.machine, "i686") == 0 || strcmp(u.machine, "i386") == 0)
        return "X86";
    return "X64";
}

static json_t *agent_labels(const char *extra, bool no_default)
{
    json_t *labels = json_array();
    if (!no_default) {
        const char *sys[] = {"self-hosted", "Linux", machine_arch()};
        for (size_t i = 0; i < 3; i++)
            json_array_append_new(
                labels, json_pack("{s:i, s:s, s:s}", "id", 0, "name", sys[i], "type", "system"));
    }
    size_t n = 0;
    char **user = extra ? str_split(extra, ',', &n) : NULL;
    for (size_t i = 0; i < n; i++) {
        char *l = str_trim(user[i]);
        if (*l)
            json_array_append_new(labels,
                                  json_pack("{s:i, s:s, s:s}", "id", 0, "name", l, "type", "user"));
    }
    str_list_free(user);
    return labels;
}

static char *host_name(void)
{
    char name[256] = "harrier";
    gethostname(name, sizeof name - 1);
    return xstrdup(name);
}

static bool reply_flag(const json_t *o, const char *key)
{
    bool b = false;
    return json_get_bool(o, key, &b) && b;
}

/* The RequireFipsCryptography property; absent counts as true at config time (§2.6). */
static bool agent_requires_fips(const json_t *agent)
{
    json_t *p = json_get(json_get(agent, "properties"), "RequireFipsCryptography");
    if (!p)
        return true;
    json_t *v = json_is_object(p) ? json_get(p, "$value") : p;
    if (json_is_boolean(v))
        return json_is_true(v);
    if (json_is_string(v))
        return str_eq_nocase(json_string_value(v), "true");
    return true;
}

/* The runners of that name (GET agents?agentName=…), or NULL with err set. */
static json_t *find_agent(struct vss_conn *conn, const char *name, struct error *err)
{
    cleanup_free char *escaped = runner_url_escape(name);
    cleanup_free char *query = xasprintf("agentName=%s&includeCapabilities=False", escaped);
    const char *route[] = {"poolId", "0", NULL};
    cleanup_free char *url = vss_conn_url(conn, VSS_LOC_AGENTS, route, query, err);
    return url ? call_json(conn, "GET", url, NULL, NULL, err) : NULL;
}

struct config_request {
    const char *url, *token, *name, *labels, *group, *work;
    bool no_default_labels, ephemeral, replace, disable_update;
    struct prompt *prompt;
    bool asked;       /* the questions after connecting were asked (slot 1); later slots reuse */
    char *answers[4]; /* owned: group, name, labels, work as answered */
};

/* Slot 1 asks what the official config.sh asks after connecting, in its order: the runner
 * group (when the service has self-hosted groups), the name, the labels, the work folder. */
static int ask_after_connect(struct config_request *q, json_t *pools, struct error *err)
{
    if (q->asked)
        return 0;
    q->asked = true;
    json_t *p;
    size_t i;
    bool groups = false;
    const char *default_group = NULL;
    json_array_foreach(json_get(pools, "value"), i, p)
    {
        bool hosted = false, internal = false;
        if (!(json_get_bool(p, "isHosted", &hosted) && hosted))
            groups = true;
        if (json_get_bool(p, "isInternal", &internal) && internal)
            default_group = json_get_string(p, "name");
    }
    cleanup_free char *host = host_name();
    cleanup_free char *label_text =
        xasprintf("This runner will have the following labels: 'self-hosted', 'Linux', '%s' \n"
                  "Enter any additional labels (ex. label-1,label-2):",
                  machine_arch());
    const struct prompt_question questions[] = {
        {"runnergroup", "Enter the name of the runner group to add this runner to:",
         default_group ? default_group : "default", false, false, PROMPT_ANY},
        {"name", "Enter the name of runner:", host, false, false, PROMPT_ANY},
        {"labels", label_text, NULL, true, false, PROMPT_ANY},
        {"work", "Enter name of work folder:", "_work", false, false, PROMPT_ANY},
    };
    const char **given[] = {&q->group, &q->name, &q->labels, &q->work};
    for (size_t k = 0; k < 4; k++) {
        if (*given[k] || (k == 0 && !groups))
            continue;
        if (prompt_ask(q->prompt, &questions[k], &q->answers[k], err) < 0)
            return err->code;
        *given[k] = q->answers[k];
    }
    return 0;
}

/* Registers one runner named name and writes its files into dir (PROTOCOL.md §2.6). */
static int configure(struct oneshot *o, struct config_request *q, const char *dir, int slot,
                     struct error *err)
{
    cleanup_free char *tenant = NULL, *bearer = NULL;
    if (exchange_token(o, q->url, q->token, "register", &tenant, &bearer, err) < 0)
        return err->code;
    struct vss_conn *conn = vss_conn_new(&o->loop, o->http, tenant);
    vss_conn_set_token(conn, bearer);
    struct runner_key *key = NULL;
    json_t *pools = NULL, *found = NULL, *agent = NULL, *body = NULL;
    cleanup_free char *name = NULL, *url = NULL;
    int rc = vss_conn_connect_sync(conn, err);
    if (rc == 0 && (url = vss_conn_url(conn, VSS_LOC_POOLS, NULL, "poolType=Automation", err)))
        pools = call_json(conn, "GET", url, NULL, NULL, err);
    if (pools && ask_after_connect(q, pools, err) < 0)
        rc = err->code;
    json_t *pool = pools && rc == 0 ? find_pool(pools, q->group, err) : NULL;
    int64_t pool_id = 0, existing = 0;
    if (pool && json_get_int(pool, "id", &pool_id)) {
        cleanup_free char *base = q->name ? xstrdup(q->name) : host_name();
        name = slot > 1 ? xasprintf("%s-%d", base, slot) : xstrdup(base);
        found = find_agent(conn, name, err);
    }
    /* As the official runner: a taken name is replaced with --replace; interactively the user
     * is asked whether to replace it, and for another name if not. */
    while (found && rc == 0) {
        json_t *first = json_array_get(json_get(found, "value"), 0);
        if (!first || !json_get_int(first, "id", &existing) || q->replace)
            break;
        bool replace = false;
        if (!q->prompt->unattended && slot == 1) {
            fprintf(q->prompt->out, "A runner exists with the same name\n");
            rc = prompt_yes_no(q->prompt, "replace",
                               "Would you like to replace the existing runner? (Y/N)", false,
                               &replace, err);
        }
        if (rc == 0 && replace) {
            q->replace = true;
            break;
        }
        json_decref(found);
        found = NULL;
        if (rc < 0)
            break;
        if (q->prompt->unattended || slot > 1) {
            rc = error_set(err, EEXIST,
                           "A runner exists with the same name \"%s\"; pass --replace to take "
                           "its place, or --name to choose another",
                           name);
            break;
        }
        struct prompt_question again = {"name",    "Enter the name of runner:", NULL, false, false,
                                        PROMPT_ANY};
        free(q->answers[1]);
        q->answers[1] = NULL;
        if (prompt_ask(q->prompt, &again, &q->answers[1], err) < 0) {
            rc = error_prefix(err,
                              "A runner exists with the same name \"%s\" (--replace takes "
                              "its place)",
                              name);
            break;
        }
        q->name = q->answers[1];
        free(name);
        name = xstrdup(q->name);
        existing = 0;
        found = find_agent(conn, name, err);
    }
    if (found)
        rc = runner_key_generate(&key, err);
    if (found && rc == 0) {
        cleanup_free char *mod = runner_key_modulus_base64(key);
        cleanup_free char *exp = runner_key_exponent_base64(key);
        body = json_pack("{s:o, s:i, s:s, s:{s:{s:s, s:s}}, s:I, s:s, s:s, s:s, s:b, s:b, s:i, "
                         "s:s}",
                         "labels", agent_labels(q->labels, q->no_default_labels), "maxParallelism",
                         1, "createdOn", "0001-01-01T00:00:00", "authorization", "publicKey",
                         "exponent", exp, "modulus", mod, "id", (json_int_t)existing, "name", name,
                         "version", RUNNER_SERVICE_VERSION, "osDescription", "Linux (harrier)",
                         "ephemeral", q->ephemeral, "disableUpdate", q->disable_update, "status", 0,
                         "provisioningState", "Provisioned");
        cleanup_free char *pid = xasprintf("%lld", (long long)pool_id);
        cleanup_free char *aid = xasprintf("%lld", (long long)existing);
        const char *route[] = {"poolId", pid, "agentId", existing ? aid : NULL, NULL};
        free(url);
        url = vss_conn_url(conn, VSS_LOC_AGENTS, route, NULL, err);
        long status = 0;
        agent = url ? call_json(conn, existing ? "PUT" : "POST", url, body, &status, err) : NULL;
        if (!agent)
            rc = err->code ? err->code : -1;
    }
    if (!found && rc == 0)
        rc = err->code ? err->code : -1;
    json_t *auth = json_get(agent, "authorization");
    if (agent && (!json_get_string(auth, "clientId") || !json_get_string(auth, "authorizationUrl")))
        rc = error_set(err, EPROTO,
                       "the service registered the runner without an OAuth client "
                       "(authorization.clientId and authorizationUrl)");
    else if (agent && q->disable_update && !reply_flag(agent, "disableUpdate"))
        rc = error_set(err, ENOTSUP,
                       "The GitHub server does not support configuring a self-hosted runner "
                       "with 'DisableUpdate' flag.");
    else if (agent && q->ephemeral && !reply_flag(agent, "ephemeral"))
        rc = error_set(err, ENOTSUP,
                       "The GitHub server does not support configuring a self-hosted runner "
                       "with 'Ephemeral' flag.");
    if (agent && rc == 0) {
        int64_t agent_id = 0;
        json_get_int(agent, "id", &agent_id);
        const char *agent_name = json_get_string(agent, "name");
        struct runner_settings s = {
            .agent_id = agent_id,
            .agent_name = (char *)(agent_name ? agent_name : name),
            .pool_id = pool_id,
            .pool_name = (char *)json_get_string(pool, "name"),
            .server_url = tenant,
            .github_url = (char *)q->url,
            .work_folder = (char *)(q->work ? q->work : "_work"),
            .ephemeral = q->ephemeral,
            .disable_update = q->disable_update,
            .is_hosted_server = runner_url_is_hosted(q->url),
        };
        struct runner_credentials c = {
            .scheme = "OAuth",
            .client_id = (char *)json_get_string(auth, "clientId"),
            .authorization_url = (char *)json_get_string(auth, "authorizationUrl"),
            .require_fips = agent_requires_fips(agent),
        };
        rc = path_mkdir_all(dir, 0700, err);
        if (rc == 0)
            rc = config_store_save(dir, &s, &c, key, err);
        if (rc == 0) {
            /* §2.6 step 5: the new OAuth credential must work. */
            struct vss_conn *test = vss_conn_new(&o->loop, o->http, tenant);
            vss_conn_set_oauth(test, key, c.client_id, c.authorization_url, c.require_fips);
            if (vss_conn_connect_sync(test, err) == 0) {
                free(url);
                url = vss_conn_url(test, VSS_LOC_POOLS, NULL, NULL, err);
                json_t *again = url ? call_json(test, "GET", url, NULL, NULL, err) : NULL;
                if (!again)
                    rc = error_prefix(err, "the runner was registered but its credential does "
                                           "not work");
                json_decref(again);
            } else {
                rc = err->code;
            }
            vss_conn_free(test);
        }
        if (rc == 0)
            printf("Runner \"%s\" (id %lld) registered in group \"%s\"; settings saved.\n",
                   s.agent_name, (long long)agent_id, s.pool_name ? s.pool_name : "");
    }
    json_decref(body);
    json_decref(agent);
    json_decref(found);
    json_decref(pools);
    runner_key_free(key);
    vss_conn_free(conn);
    return rc;
}

static void config_request_free(struct config_request *q)
{
    for (size_t i = 0; i < sizeof q->answers / sizeof q->answers[0]; i++)
        free(q->answers[i]);
}

/* Registers slots 1..n, stopping at the first failure (what was registered is said). */
static int configure_slots(struct config_request *q, int n, struct error *err)
{
    struct oneshot o;
    oneshot_init(&o);
    int rc = 0, done = 0;
    for (int k = 1; k <= n && rc == 0; k++) {
        cleanup_free char *dir = config_store_slot_dir(config_dir(), k);
        rc = configure(&o, q, dir, k, err);
        done += rc == 0;
    }
    oneshot_close(&o);
    if (rc < 0 && done > 0)
        error_prefix(err,
                     "slots 1 to %d are registered, slot %d is not ('harrier remove' "
                     "unregisters them)",
                     done, done + 1);
    return rc;
}

int command_config(const struct cli_command *cmd, struct cli_args *args)
{
    struct prompt prompt = {stdin, stdout, cli_flag(cmd, args, "unattended")};
    struct config_request q = {
        .url = cli_get(cmd, args, "url"),
        .token = cli_get(cmd, args, "token"),
        .name = cli_get(cmd, args, "name"),
        .labels = cli_get(cmd, args, "labels"),
        .group = cli_get(cmd, args, "runnergroup"),
        .work = cli_get(cmd, args, "work"),
        .no_default_labels = cli_flag(cmd, args, "no-default-labels"),
        .ephemeral = cli_flag(cmd, args, "ephemeral"),
        .replace = cli_flag(cmd, args, "replace"),
        .disable_update = cli_flag(cmd, args, "disableupdate"),
        .prompt = &prompt,
    };
    const char *pat = cli_get(cmd, args, "pat");
    int slots = 1;
    if (cli_get(cmd, args, "slots")) {
        char *end;
        long n = strtol(cli_get(cmd, args, "slots"), &end, 10);
        if (*end || n < 1 || n > 64)
            return cli_usage_error(cmd, "--slots takes a number from 1 to 64");
        slots = (int)n;
    }
    if (q.no_default_labels && (!q.labels || !*q.labels))
        return cli_usage_error(cmd, "--no-default-labels needs at least one label in --labels");
    if (config_store_exists(config_dir()))
        return cli_usage_error(cmd, "this folder already holds a runner's configuration; run "
                                    "'harrier remove' first");
    struct error err = {0};
    cleanup_free char *url = NULL, *token = NULL;
    const struct prompt_question ask_url = {
        "url", "What is the URL of your repository?", NULL, false, false, PROMPT_URL};
    const struct prompt_question ask_token = {
        "token", "What is your runner register token?", NULL, false, true, PROMPT_ANY};
    int rc = 0;
    if (!q.url && (rc = prompt_ask(&prompt, &ask_url, &url, &err)) == 0)
        q.url = url;
    if (rc == 0 && !q.token && pat)
        rc = token_from_pat(q.url, pat, "registration", &token, &err);
    else if (rc == 0 && !q.token)
        rc = prompt_ask(&prompt, &ask_token, &token, &err);
    if (token)
        q.token = token;
    if (rc == 0)
        rc = configure_slots(&q, slots, &err);
    config_request_free(&q);
    return rc < 0 ? fail(cmd, &err) : RUNNER_EXIT_OK;
}

static int unregister(struct oneshot *o, const char *dir, const char *token, struct error *err)
{
    struct runner_settings s;
    struct runner_credentials c;
    int rc = config_store_load(dir, &s, &c, NULL, err);
    if (rc < 0) {
        runner_settings_free(&s);
        runner_credentials_free(&c);
        return rc;
    }
    cleanup_free char *tenant = NULL, *bearer = NULL;
    if (!s.github_url)
        rc = error_set(err, EINVAL, ".runner has no gitHubUrl to unregister from");
    if (rc == 0)
        rc = exchange_token(o, s.github_url, token, "remove", &tenant, &bearer, err);
    struct vss_conn *conn = NULL;
    if (rc == 0) {
        conn = vss_conn_new(&o->loop, o->http, tenant);
        vss_conn_set_token(conn, bearer);
        rc = vss_conn_connect_sync(conn, err);
    }
    json_t *found = NULL;
    if (rc == 0) {
        cleanup_free char *escaped = runner_url_escape(s.agent_name ? s.agent_name : "");
        cleanup_free char *query = xasprintf("agentName=%s&includeCapabilities=False", escaped);
        const char *route[] = {"poolId", "0", NULL};
        cleanup_free char *url = vss_conn_url(conn, VSS_LOC_AGENTS, route, query, err);
        found = url ? call_json(conn, "GET", url, NULL, NULL, err) : NULL;
        if (!found)
            rc = err->code ? err->code : -1;
    }
    int64_t id = 0;
    if (rc == 0 && json_get_int(json_array_get(json_get(found, "value"), 0), "id", &id)) {
        cleanup_free char *aid = xasprintf("%lld", (long long)id);
        const char *route[] = {"poolId", "0", "agentId", aid, NULL};
        cleanup_free char *url = vss_conn_url(conn, VSS_LOC_AGENTS, route, NULL, err);
        struct http_response resp;
        struct vss_call_options co = {.method = "DELETE", .url = url, .retries = 2};
        rc = url ? vss_call_sync(conn, &co, &resp, err) : err->code;
        if (rc == 0)
            rc = http_response_check(&resp, "DELETE", err);
        http_response_free(&resp);
    } else if (rc == 0) {
        fprintf(stderr, "harrier remove: the service no longer knows runner \"%s\"\n",
                s.agent_name ? s.agent_name : "");
    }
    if (rc == 0)
        rc = config_store_remove(dir, err);
    if (rc == 0)
        printf("Runner \"%s\" removed.\n", s.agent_name ? s.agent_name : "");
    json_decref(found);
    vss_conn_free(conn);
    runner_settings_free(&s);
    runner_credentials_free(&c);
    return rc;
}

int command_remove(const struct cli_command *cmd, struct cli_args *args)
{
    const char *token = cli_get(cmd, args, "token");
    const char *pat = cli_get(cmd, args, "pat");
    struct error err = {0};
    cleanup_free char *from_pat = NULL, *asked = NULL;
    if (!config_store_exists(config_dir()))
        return cli_usage_error(cmd, "this folder holds no runner configuration (.runner)");
    if (!token && !pat) {
        struct prompt prompt = {stdin, stdout, cli_flag(cmd, args, "unattended")};
        const struct prompt_question q = {
            "token", "Enter runner remove token:", NULL, false, true, PROMPT_ANY};
        if (prompt_ask(&prompt, &q, &asked, &err) < 0)
            return fail(cmd, &err);
        token = asked;
    }
    if (!token) {
        struct runner_settings s;
        struct runner_credentials c;
        int rc = config_store_load(config_dir(), &s, &c, NULL, &err);
        if (rc == 0 && !s.github_url)
            rc = error_set(&err, EINVAL, ".runner has no gitHubUrl");
        if (rc == 0)
            rc = token_from_pat(s.github_url, pat, "remove", &from_pat, &err);
        runner_settings_free(&s);
        runner_credentials_free(&c);
        if (rc < 0)
            return fail(cmd, &err);
        token = from_pat;
    }
    /* Every slot config --slots registered, the last first, so that a failure leaves a
     * consistent prefix that a second 'harrier remove' finishes. */
    struct oneshot o;
    oneshot_init(&o);
    int rc = 0;
    for (int k = config_store_slot_count(config_dir()); k >= 1 && rc == 0; k--) {
        cleanup_free char *dir = config_store_slot_dir(config_dir(), k);
        rc = unregister(&o, dir, token, &err);
        if (rc == 0 && k > 1)
            rmdir(dir);
    }
    if (rc == 0) {
        cleanup_free char *slots = path_join(config_dir(), ".slots");
        rmdir(slots);
    }
    oneshot_close(&o);
    return rc < 0 ? fail(cmd, &err) : RUNNER_EXIT_OK;
}

/* §2.1: no ACTIONS_RUNNER_INPUT_* variable may reach a job. */
static void scrub_input_environment(void)
{
    extern char **environ;
    for (bool again = true; again;) {
        again = false;
        for (char **e = environ; e && *e; e++)
            if (str_starts_with_nocase(*e, "ACTIONS_RUNNER_INPUT_")) {
                cleanup_free char *name = xstrndup(*e, strcspn(*e, "="));
                unsetenv(name);
                again = true;
                break;
            }
    }
}

int command_run(const struct cli_command *cmd, struct cli_args *args)
{
    struct listener_options lo = {
        .dir = config_dir(), .once = cli_flag(cmd, args, "once"), .slots = 1};
    cleanup_free char *jit =
        cli_get(cmd, args, "jitconfig") ? xstrdup(cli_get(cmd, args, "jitconfig")) : NULL;
    lo.finish_jobs = cli_flag(cmd, args, "finish-jobs");
    const char *slots = cli_get(cmd, args, "slots");
    int configured = config_store_slot_count(config_dir());
    lo.slots = configured > 1 ? configured : 1;
    if (slots) {
        char *end;
        long n = strtol(slots, &end, 10);
        if (*end || n < 1 || n > 64)
            return cli_usage_error(cmd, "--slots takes a number from 1 to 64");
        if (jit && n > 1)
            return cli_usage_error(cmd, "a JIT configuration is one runner: --slots cannot be "
                                        "above 1 with --jitconfig");
        if (!jit && n > configured && configured > 0) {
            fprintf(stderr,
                    "harrier run: --slots %ld, but %d runner%s registered here; register the "
                    "slots with 'harrier config --slots %ld' (after 'harrier remove')\n",
                    n, configured, configured == 1 ? " is" : "s are", n);
            return RUNNER_EXIT_TERMINATED;
        }
        lo.slots = (int)n;
    }
    if (jit)
        lo.slots = 1;
    if (command_sandbox_level(cmd, cli_get(cmd, args, "sandbox"), &lo.sandbox_level,
                              &lo.sandbox_fallback) != 0)
        return cmd->usage_exit;
    scrub_input_environment();
    struct error err = {0};
    if (jit) {
        if (config_store_write_jit(config_dir(), jit, &err) < 0)
            return fail(cmd, &err);
        lo.once = true;
        lo.jit = true;
    }
    return listener_run(&lo);
}
