/* The official runner's configuration files, read tolerantly and written as it writes them. */
#include "runner/config_store.h"

#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/json.h"
#include "lib/mem.h"
#include "lib/path.h"
#include "protocol/runner_service.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const store_files[] = {".runner", ".credentials", ".credentials_rsaparams"};

static char *dup_member(const json_t *o, const char *key)
{
    const char *s = json_get_string(o, key);
    return s ? xstrdup(s) : NULL;
}

static bool get_flag(const json_t *o, const char *key)
{
    bool b = false;
    return json_get_bool(o, key, &b) && b;
}

static bool env_truthy(const char *name)
{
    const char *v = getenv(name);
    return v && (str_eq_nocase(v, "true") || strcmp(v, "1") == 0);
}

static bool host_ends_with_any(const char *url, const char *const *suffixes)
{
    const char *a = url ? strstr(url, "://") : NULL;
    if (!a)
        return false;
    a += 3;
    size_t len = strcspn(a, "/:?#");
    cleanup_free char *host = str_lower(xstrndup(a, len));
    for (size_t i = 0; suffixes[i]; i++)
        if (str_ends_with(host, suffixes[i]))
            return true;
    return false;
}

/* isHostedServer when .runner does not say (§2.8). */
static bool infer_hosted(const struct runner_settings *s)
{
    if (s->github_url && *s->github_url)
        return runner_url_is_hosted(s->github_url);
    if (env_truthy("GITHUB_ACTIONS_RUNNER_FORCE_EMPTY_GITHUB_URL_IS_HOSTED"))
        return true;
    if (env_truthy("GITHUB_ACTIONS_RUNNER_FORCE_GHES"))
        return false;
    static const char *const v1[] = {".actions.githubusercontent.com", ".codedev.ms", NULL};
    static const char *const v2[] = {".actions.githubusercontent.com",
                                     ".githubapp.com",
                                     ".ghe.com",
                                     ".actions.localhost",
                                     ".ghe.localhost",
                                     NULL};
    if (s->server_url && *s->server_url)
        return host_ends_with_any(s->server_url, v1);
    if (s->server_url_v2 && *s->server_url_v2)
        return host_ends_with_any(s->server_url_v2, v2);
    return true;
}

static json_t *load_file(const char *dir, const char *name, struct error *err)
{
    cleanup_free char *path = path_join(dir, name);
    json_t *v = json_load_path(path, err);
    if (v && !json_is_object(v)) {
        json_decref(v);
        error_set_at(err, EINVAL, path, 0, 0, "not a JSON object");
        return NULL;
    }
    return v;
}

int config_store_load(const char *dir, struct runner_settings *settings,
                      struct runner_credentials *credentials, struct runner_key **key,
                      struct error *err)
{
    memset(settings, 0, sizeof *settings);
    memset(credentials, 0, sizeof *credentials);
    if (!config_store_exists(dir))
        return error_set(err, ENOENT,
                         "the runner is not configured in %s; run 'harrier config' first", dir);
    json_t *r = load_file(dir, ".runner", err);
    if (!r)
        return err->code;
    json_get_int(r, "agentId", &settings->agent_id);
    json_get_int(r, "poolId", &settings->pool_id);
    settings->agent_name = dup_member(r, "agentName");
    settings->pool_name = dup_member(r, "poolName");
    settings->server_url = dup_member(r, "serverUrl");
    settings->github_url = dup_member(r, "gitHubUrl");
    settings->work_folder = dup_member(r, "workFolder");
    settings->server_url_v2 = dup_member(r, "serverUrlV2");
    settings->ephemeral = get_flag(r, "ephemeral");
    settings->disable_update = get_flag(r, "disableUpdate");
    settings->use_v2_flow = get_flag(r, "useV2Flow");
    bool hosted;
    settings->is_hosted_server =
        json_get_bool(r, "isHostedServer", &hosted) ? hosted : infer_hosted(settings);
    json_decref(r);

    json_t *c = load_file(dir, ".credentials", err);
    if (!c)
        return err->code;
    json_t *data = json_get(c, "data");
    credentials->scheme = dup_member(c, "scheme");
    credentials->client_id = dup_member(data, "clientId");
    credentials->authorization_url = dup_member(data, "authorizationUrl");
    credentials->oauth_endpoint_url = dup_member(data, "oauthEndpointUrl");
    const char *fips = json_get_string(data, "requireFipsCryptography");
    credentials->require_fips = fips ? (str_eq_nocase(fips, "true") || strcmp(fips, "1") == 0)
                                     : get_flag(data, "requireFipsCryptography");
    json_decref(c);
    if (!credentials->scheme || !str_eq_nocase(credentials->scheme, "OAuth") ||
        !credentials->client_id || !credentials->authorization_url)
        return error_set(err, EINVAL,
                         "%s/.credentials is not an OAuth credential with clientId and "
                         "authorizationUrl; configure the runner again",
                         dir);
    if (!key)
        return 0;
    json_t *k = load_file(dir, ".credentials_rsaparams", err);
    if (!k)
        return err->code;
    int rc = runner_key_from_params(k, key, err);
    json_decref(k);
    if (rc < 0)
        error_prefix(err, "%s/.credentials_rsaparams", dir);
    return rc;
}

static int save_json(const char *dir, const char *name, json_t *value, struct error *err)
{
    cleanup_free char *path = path_join(dir, name);
    cleanup_free char *text = json_dumps(value, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(value);
    return path_write_file_atomic(path, text, strlen(text), 0600, err);
}

static void set_string(json_t *o, const char *key, const char *value)
{
    if (value)
        json_object_set_new(o, key, json_string(value));
}

static void set_true(json_t *o, const char *key, bool value)
{
    if (value)
        json_object_set_new(o, key, json_true());
}

int config_store_save(const char *dir, const struct runner_settings *s,
                      const struct runner_credentials *c, const struct runner_key *key,
                      struct error *err)
{
    json_t *r = json_object();
    json_object_set_new(r, "agentId", json_integer(s->agent_id));
    set_string(r, "agentName", s->agent_name);
    json_object_set_new(r, "poolId", json_integer(s->pool_id));
    set_string(r, "poolName", s->pool_name);
    set_string(r, "serverUrl", s->server_url);
    set_string(r, "gitHubUrl", s->github_url);
    set_string(r, "workFolder", s->work_folder);
    set_true(r, "ephemeral", s->ephemeral);
    set_true(r, "disableUpdate", s->disable_update);
    set_true(r, "useV2Flow", s->use_v2_flow);
    set_string(r, "serverUrlV2", s->server_url_v2);
    if (!s->is_hosted_server)
        json_object_set_new(r, "isHostedServer", json_false());
    json_t *data = json_object();
    set_string(data, "clientId", c->client_id);
    set_string(data, "authorizationUrl", c->authorization_url);
    set_string(data, "oauthEndpointUrl", c->oauth_endpoint_url);
    json_object_set_new(data, "requireFipsCryptography",
                        json_string(c->require_fips ? "True" : "False"));
    json_t *cred = json_pack("{s:s, s:o}", "scheme", "OAuth", "data", data);
    /* The key first: a .runner without its key would be a broken registration. */
    int rc = save_json(dir, ".credentials_rsaparams", runner_key_params_new(key), err);
    if (rc == 0)
        rc = save_json(dir, ".credentials", cred, err);
    else
        json_decref(cred);
    if (rc == 0)
        rc = save_json(dir, ".runner", r, err);
    else
        json_decref(r);
    return rc;
}

bool config_store_exists(const char *dir)
{
    cleanup_free char *path = path_join(dir, ".runner");
    return access(path, F_OK) == 0;
}

int config_store_remove(const char *dir, struct error *err)
{
    for (size_t i = 0; i < sizeof store_files / sizeof store_files[0]; i++) {
        cleanup_free char *path = path_join(dir, store_files[i]);
        if (unlink(path) < 0 && errno != ENOENT)
            return error_set_errno(err, errno, "cannot delete %s", path);
    }
    return 0;
}

char *config_store_slot_dir(const char *dir, int slot)
{
    if (slot <= 1)
        return xstrdup(dir);
    char name[32];
    snprintf(name, sizeof name, ".slots/%d", slot);
    return path_join(dir, name);
}

int config_store_slot_count(const char *dir)
{
    int n = 0;
    for (;;) {
        cleanup_free char *slot = config_store_slot_dir(dir, n + 1);
        if (!config_store_exists(slot))
            return n;
        n++;
    }
}

int config_store_write_jit(const char *dir, const char *blob, struct error *err)
{
    size_t len = 0;
    cleanup_free uint8_t *outer = codec_base64_decode(blob, &len);
    json_t *files = outer ? json_load_text((const char *)outer, len, "jitconfig", NULL) : NULL;
    if (!json_is_object(files)) {
        json_decref(files);
        return error_set(err, EINVAL,
                         "the JIT configuration is not base64 of a JSON object of files; pass "
                         "the encoded_jit_config value exactly as GitHub returned it");
    }
    int rc = 0;
    for (size_t i = 0; i < sizeof store_files / sizeof store_files[0] && rc == 0; i++) {
        const char *content = json_get_string(files, store_files[i]);
        size_t n = 0;
        cleanup_free uint8_t *bytes = content ? codec_base64_decode(content, &n) : NULL;
        if (!bytes) {
            rc = error_set(err, EINVAL, "the JIT configuration has no valid '%s'", store_files[i]);
            break;
        }
        cleanup_free char *path = path_join(dir, store_files[i]);
        rc = path_write_file_atomic(path, bytes, n, 0600, err);
    }
    json_decref(files);
    return rc;
}

void runner_settings_free(struct runner_settings *s)
{
    free(s->agent_name);
    free(s->pool_name);
    free(s->server_url);
    free(s->github_url);
    free(s->work_folder);
    free(s->server_url_v2);
    memset(s, 0, sizeof *s);
}

void runner_credentials_free(struct runner_credentials *c)
{
    free(c->scheme);
    free(c->client_id);
    free(c->authorization_url);
    free(c->oauth_endpoint_url);
    memset(c, 0, sizeof *c);
}
