/* The classic runner-service client: URLs, locations, errors, authenticated calls. */
#include "protocol/runner_service.h"

#include "lib/buf.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/mem.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- URLs (§2.2) ------------------------------------------------------------------------- */

static bool env_truthy(const char *name)
{
    const char *v = getenv(name);
    return v && (str_eq_nocase(v, "true") || strcmp(v, "1") == 0);
}

/* Splits scheme://authority/rest; *host is the authority without the port. */
static int url_split(const char *url, char **scheme, char **authority, char **host,
                     const char **path, struct error *err)
{
    const char *sep = url ? strstr(url, "://") : NULL;
    if (!sep || sep == url)
        return error_set(err, EINVAL, "'%s' is not an absolute http(s) URL", url ? url : "");
    *scheme = xstrndup(url, (size_t)(sep - url));
    str_lower(*scheme);
    if (strcmp(*scheme, "http") != 0 && strcmp(*scheme, "https") != 0) {
        free(*scheme);
        return error_set(err, EINVAL, "'%s' is not an http or https URL", url);
    }
    const char *a = sep + 3;
    size_t alen = strcspn(a, "/?#");
    if (alen == 0) {
        free(*scheme);
        return error_set(err, EINVAL, "'%s' has no host", url);
    }
    *authority = xstrndup(a, alen);
    const char *at = strrchr(*authority, '@');
    const char *hs = at ? at + 1 : *authority;
    size_t hlen = strcspn(hs, ":");
    *host = str_lower(xstrndup(hs, hlen));
    *path = a + alen;
    return 0;
}

static bool host_is_hosted(const char *host)
{
    return strcmp(host, "github.com") == 0 || strcmp(host, "www.github.com") == 0 ||
           strcmp(host, "github.localhost") == 0 || str_ends_with(host, ".ghe.localhost") ||
           str_ends_with(host, ".ghe.com");
}

bool runner_url_is_hosted(const char *url)
{
    if (env_truthy("GITHUB_ACTIONS_RUNNER_FORCE_GHES"))
        return false;
    char *scheme = NULL, *authority = NULL, *host = NULL;
    const char *path;
    if (url_split(url, &scheme, &authority, &host, &path, NULL) < 0)
        return false;
    bool hosted = host_is_hosted(host);
    free(scheme);
    free(authority);
    free(host);
    return hosted;
}

char *runner_url_api_root(const char *github_url, struct error *err)
{
    char *scheme = NULL, *authority = NULL, *host = NULL;
    const char *path;
    if (url_split(github_url, &scheme, &authority, &host, &path, err) < 0)
        return NULL;
    char *api;
    if (runner_url_is_hosted(github_url)) {
        const char *a = strrchr(authority, '@');
        a = a ? a + 1 : authority;
        if (str_starts_with_nocase(a, "www."))
            a += 4;
        api = xasprintf("%s://api.%s", scheme, a);
    } else {
        api = xasprintf("%s://%s/api/v3", scheme, authority);
    }
    free(scheme);
    free(authority);
    free(host);
    return api;
}

char *runner_url_escape(const char *text)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~')
            buf_putc(&b, (char)*p);
        else
            buf_printf(&b, "%%%02X", *p);
    }
    return buf_steal(&b);
}

/* --- locations (§1.3) -------------------------------------------------------------------- */

struct vss_location {
    char *id;
    char *path;
};

struct vss_locations {
    struct vss_location *items;
    size_t count;
};

struct vss_locations *vss_locations_parse(const json_t *connection_data, struct error *err)
{
    json_t *defs = json_get(json_get(connection_data, "locationServiceData"), "serviceDefinitions");
    if (!json_is_array(defs)) {
        error_set(err, EPROTO, "connectionData has no locationServiceData.serviceDefinitions");
        return NULL;
    }
    struct vss_locations *l = xcalloc(1, sizeof *l);
    l->items = xcalloc(json_array_size(defs) + 1, sizeof *l->items);
    size_t i;
    json_t *d;
    json_array_foreach(defs, i, d)
    {
        int64_t version = 0;
        const char *id = json_get_string(d, "identifier");
        const char *path = json_get_string(d, "relativePath");
        if (!json_get_int(d, "resourceVersion", &version) || version <= 0 || !id || !path)
            continue;
        l->items[l->count].id = str_lower(xstrdup(id));
        l->items[l->count].path = xstrdup(path);
        l->count++;
    }
    return l;
}

void vss_locations_free(struct vss_locations *locations)
{
    if (!locations)
        return;
    for (size_t i = 0; i < locations->count; i++) {
        free(locations->items[i].id);
        free(locations->items[i].path);
    }
    free(locations->items);
    free(locations);
}

static const char *route_value(const char *const *route, const char *name, size_t len)
{
    for (size_t i = 0; route && route[i]; i += 2)
        if (strlen(route[i]) == len && strncasecmp(route[i], name, len) == 0)
            return route[i + 1];
    return NULL;
}

/* Expands one segment into out; false when it has parameters and all of them are missing. */
static bool expand_segment(const char *seg, size_t len, const char *const *route, struct buf *out)
{
    int params = 0, found = 0;
    struct buf b = BUF_INIT;
    buf_puts(&b, "");
    for (size_t i = 0; i < len;) {
        if (seg[i] == '{') {
            const char *close = memchr(seg + i, '}', len - i);
            if (close) {
                const char *name = seg + i + 1;
                if (*name == '*')
                    name++;
                const char *value = route_value(route, name, (size_t)(close - name));
                params++;
                if (value) {
                    found++;
                    char *esc = runner_url_escape(value);
                    buf_puts(&b, esc);
                    free(esc);
                }
                i = (size_t)(close - seg) + 1;
                continue;
            }
        }
        buf_putc(&b, seg[i++]);
    }
    bool keep = params == 0 || found > 0;
    if (keep) {
        buf_putc(out, '/');
        buf_append(out, b.data, b.len);
    }
    buf_free(&b);
    return keep;
}

char *vss_locations_url(const struct vss_locations *locations, const char *base, const char *guid,
                        const char *const *route, const char *query, struct error *err)
{
    const char *tmpl = NULL;
    for (size_t i = 0; locations && i < locations->count; i++)
        if (str_eq_nocase(locations->items[i].id, guid))
            tmpl = locations->items[i].path;
    if (!tmpl) {
        error_set(err, ENOENT,
                  "the service does not advertise resource %s in connectionData; is the URL "
                  "a GitHub Actions service?",
                  guid);
        return NULL;
    }
    /* The base's query goes after the path. */
    size_t base_len = strcspn(base, "?");
    struct buf url = BUF_INIT;
    buf_append(&url, base, base_len);
    while (url.len && url.data[url.len - 1] == '/')
        url.data[--url.len] = 0;
    const char *p = tmpl;
    while (*p) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len)
            expand_segment(p, len, route, &url);
        p += len;
    }
    const char *base_query = base[base_len] ? base + base_len + 1 : NULL;
    if (base_query || query) {
        buf_putc(&url, '?');
        if (base_query)
            buf_puts(&url, base_query);
        if (base_query && query)
            buf_putc(&url, '&');
        if (query)
            buf_puts(&url, query);
    }
    return buf_steal(&url);
}

/* --- errors (§1.5.1) ---------------------------------------------------------------------- */

static json_t *error_body(const struct http_response *resp)
{
    if (!resp || !resp->body.len)
        return NULL;
    return json_load_text(resp->body.data, resp->body.len, NULL, NULL);
}

char *vss_error_type_key(const struct http_response *resp)
{
    json_t *body = error_body(resp);
    char *key = NULL;
    const char *k = json_get_string(body, "typeKey");
    const char *name = json_get_string(body, "typeName");
    if (k && *k) {
        key = xstrdup(k);
    } else if (name && *name) {
        size_t n = strcspn(name, ",");
        const char *dot = name;
        for (size_t i = 0; i < n; i++)
            if (name[i] == '.')
                dot = name + i + 1;
        key = xstrndup(dot, (size_t)(name + n - dot));
    }
    json_decref(body);
    return key;
}

char *vss_error_message(const struct http_response *resp)
{
    json_t *body = error_body(resp);
    const char *m = json_get_string(body, "message");
    char *copy = m ? xstrdup(m) : NULL;
    json_decref(body);
    return copy;
}

int vss_error_code(const struct http_response *resp)
{
    json_t *body = error_body(resp);
    int64_t code = 0;
    json_get_int(body, "errorCode", &code);
    json_decref(body);
    return (int)code;
}

/* --- connections and calls (§3) ---------------------------------------------------------- */

struct vss_conn {
    uv_loop_t *loop;
    struct http_client *http;
    char *base;
    struct vss_locations *locations;
    char *token;
    const struct runner_key *key; /* OAuth when set */
    char *client_id, *authorization_url;
    bool ps256;
};

struct vss_conn *vss_conn_new(uv_loop_t *loop, struct http_client *http, const char *base)
{
    struct vss_conn *c = xcalloc(1, sizeof *c);
    c->loop = loop;
    c->http = http;
    c->base = xstrdup(base);
    return c;
}

void vss_conn_free(struct vss_conn *conn)
{
    if (!conn)
        return;
    vss_locations_free(conn->locations);
    free(conn->base);
    free(conn->token);
    free(conn->client_id);
    free(conn->authorization_url);
    free(conn);
}

void vss_conn_set_token(struct vss_conn *conn, const char *token)
{
    free(conn->token);
    conn->token = token ? xstrdup(token) : NULL;
}

void vss_conn_set_oauth(struct vss_conn *conn, const struct runner_key *key, const char *client_id,
                        const char *authorization_url, bool ps256)
{
    conn->key = key;
    free(conn->client_id);
    free(conn->authorization_url);
    conn->client_id = xstrdup(client_id);
    conn->authorization_url = xstrdup(authorization_url);
    conn->ps256 = ps256;
}

void vss_conn_drop_token(struct vss_conn *conn)
{
    if (conn->key)
        vss_conn_set_token(conn, NULL);
}

bool vss_conn_connected(const struct vss_conn *conn)
{
    return conn->locations != NULL;
}

char *vss_conn_url(const struct vss_conn *conn, const char *guid, const char *const *route,
                   const char *query, struct error *err)
{
    return vss_locations_url(conn->locations, conn->base, guid, route, query, err);
}

struct vss_call {
    struct vss_conn *conn;
    struct vss_call_options o;
    char *url, *method, *content_type;
    char *body;
    size_t body_len;
    struct http_request *req;
    bool token_request; /* req is the OAuth token request */
    int auth_tries;
    bool cancelled;
    bool starting; /* inside vss_call_start: a failure is returned, not reported */
    bool failed_at_start;
    struct error start_error;
};

static void call_send(struct vss_call *c);

static void call_finish(struct vss_call *c, struct http_response *resp, const struct error *err)
{
    if (c->starting) {
        c->failed_at_start = true;
        if (err)
            c->start_error = *err;
        return;
    }
    c->o.on_done(resp, err, c->o.user);
    free(c->url);
    free(c->method);
    free(c->content_type);
    free(c->body);
    free(c);
}

static void on_token(struct http_response *resp, const struct error *err, void *user)
{
    struct vss_call *c = user;
    c->req = NULL;
    if (err || c->cancelled) {
        struct error e = {0};
        if (err)
            e = *err;
        else
            error_set(&e, ECANCELED, "cancelled");
        error_prefix(&e, "getting an OAuth token");
        call_finish(c, resp, &e);
        return;
    }
    json_t *body = error_body(resp);
    const char *token = json_get_string(body, "access_token");
    if (resp->status == 200 && token) {
        vss_conn_set_token(c->conn, token);
        json_decref(body);
        call_send(c);
        return;
    }
    struct error e = {0};
    const char *kind = json_get_string(body, "error");
    const char *desc = json_get_string(body, "error_description");
    if (kind && strcmp(kind, "invalid_client") == 0)
        error_set(&e, -VSS_ERROR_REGISTRATION_DELETED,
                  "the runner registration has been deleted from the server (invalid_client%s%s); "
                  "configure the runner again",
                  desc ? ": " : "", desc ? desc : "");
    else if (desc && strstr(desc, "Current server time is"))
        error_set(&e, -VSS_ERROR_CLOCK_SKEW,
                  "the OAuth token was refused for the time (%s); check this machine's clock",
                  desc);
    else
        error_set(&e, EACCES, "the OAuth token request was refused (%ld%s%s%s%s)", resp->status,
                  kind ? ", " : "", kind ? kind : "", desc ? ": " : "", desc ? desc : "");
    snprintf(e.where, sizeof e.where, "%s", c->conn->authorization_url);
    json_decref(body);
    call_finish(c, resp, &e);
}

static void fetch_token(struct vss_call *c)
{
    struct vss_conn *conn = c->conn;
    struct error err = {0};
    char *jwt = runner_key_jwt_new(conn->key, conn->client_id, conn->authorization_url, conn->ps256,
                                   time(NULL), &err);
    if (!jwt) {
        call_finish(c, NULL, &err);
        return;
    }
    char *form = xasprintf("grant_type=client_credentials&client_assertion_type=urn%%3Aietf%%"
                           "3Aparams%%3Aoauth%%3Aclient-assertion-type%%3Ajwt-bearer"
                           "&client_assertion=%s",
                           jwt);
    free(jwt);
    static const char *const headers[] = {
        "Content-Type: application/x-www-form-urlencoded", "Accept: application/json",
        "User-Agent: GitHubActionsRunner-linux-x64/" RUNNER_SERVICE_VERSION " harrier", NULL};
    struct http_request_options o = {
        .method = "POST",
        .url = conn->authorization_url,
        .headers = headers,
        .body = form,
        .body_len = strlen(form),
        .timeout_ms = 100000,
        .on_done = on_token,
        .user = c,
    };
    c->token_request = true;
    c->req = http_request_start(conn->http, &o, &err);
    free(form);
    if (!c->req)
        call_finish(c, NULL, &err);
}

static void on_response(struct http_response *resp, const struct error *err, void *user)
{
    struct vss_call *c = user;
    c->req = NULL;
    /* A 401 means the token is missing, expired or revoked: one new token, then again. */
    if (!err && !c->cancelled && resp->status == 401 && c->conn->key && !c->o.anonymous &&
        c->auth_tries < 2) {
        c->auth_tries++;
        vss_conn_set_token(c->conn, NULL);
        fetch_token(c);
        return;
    }
    call_finish(c, resp, err);
}

static void call_send(struct vss_call *c)
{
    struct vss_conn *conn = c->conn;
    if (conn->key && !conn->token && !c->o.anonymous) {
        fetch_token(c);
        return;
    }
    c->token_request = false;
    char *auth =
        conn->token && !c->o.anonymous ? xasprintf("Authorization: Bearer %s", conn->token) : NULL;
    char *ctype = c->body ? xasprintf("Content-Type: %s", c->content_type) : NULL;
    const char *headers[8];
    size_t n = 0;
    headers[n++] = "Accept: application/json; api-version=6.0-preview";
    headers[n++] = "User-Agent: GitHubActionsRunner-linux-x64/" RUNNER_SERVICE_VERSION " harrier";
    headers[n++] = "X-TFS-FedAuthRedirect: Suppress";
    if (auth)
        headers[n++] = auth;
    if (ctype)
        headers[n++] = ctype;
    headers[n] = NULL;
    struct http_request_options o = {
        .method = c->method,
        .url = c->url,
        .headers = headers,
        .body = c->body,
        .body_len = c->body_len,
        .timeout_ms = c->o.timeout_ms ? c->o.timeout_ms : 100000,
        .retries = c->o.retries,
        .retry_delay_ms = 500,
        .retry_max_delay_ms = 5000,
        .on_done = on_response,
        .user = c,
    };
    struct error err = {0};
    c->req = http_request_start(conn->http, &o, &err);
    free(auth);
    free(ctype);
    if (!c->req)
        call_finish(c, NULL, &err);
}

struct vss_call *vss_call_start(struct vss_conn *conn, const struct vss_call_options *options,
                                struct error *err)
{
    if (!options->url || !options->on_done) {
        error_set(err, EINVAL, "a call needs a URL and on_done");
        return NULL;
    }
    struct vss_call *c = xcalloc(1, sizeof *c);
    c->conn = conn;
    c->o = *options;
    c->url = xstrdup(options->url);
    c->method = xstrdup(options->method ? options->method : "GET");
    if (options->json) {
        c->body = json_dumps(options->json, JSON_COMPACT);
        c->body_len = strlen(c->body);
        c->content_type = xstrdup("application/json; charset=utf-8");
    } else if (options->body) {
        c->body = xmemdup(options->body, options->body_len + 1);
        c->body[options->body_len] = 0;
        c->body_len = options->body_len;
        c->content_type =
            xstrdup(options->content_type ? options->content_type : "application/octet-stream");
    }
    c->o.json = NULL;
    c->o.body = NULL;
    c->starting = true;
    call_send(c);
    c->starting = false;
    if (c->failed_at_start) {
        *err = c->start_error;
        if (!err->message[0])
            error_set(err, EIO, "the call to %s could not start", c->url);
        free(c->url);
        free(c->method);
        free(c->content_type);
        free(c->body);
        free(c);
        return NULL;
    }
    return c;
}

void vss_call_cancel(struct vss_call *call)
{
    call->cancelled = true;
    if (call->req)
        http_request_cancel(call->req);
}

struct sync_state {
    bool done;
    int rc;
    struct http_response *out;
    struct error *err;
};

static void on_sync_done(struct http_response *resp, const struct error *err, void *user)
{
    struct sync_state *s = user;
    s->done = true;
    if (err) {
        *s->err = *err;
        s->rc = err->code ? err->code : -1;
        if (resp && s->out)
            http_response_move(s->out, resp);
        return;
    }
    if (s->out)
        http_response_move(s->out, resp);
}

int vss_call_sync(struct vss_conn *conn, const struct vss_call_options *options,
                  struct http_response *out, struct error *err)
{
    struct sync_state s = {.out = out, .err = err};
    struct vss_call_options o = *options;
    o.on_done = on_sync_done;
    o.user = &s;
    memset(out, 0, sizeof *out);
    if (!vss_call_start(conn, &o, err))
        return err->code;
    while (!s.done)
        uv_run(conn->loop, UV_RUN_ONCE);
    return s.rc;
}

static char *connection_data_url(const struct vss_conn *conn)
{
    size_t base_len = strcspn(conn->base, "?");
    while (base_len && conn->base[base_len - 1] == '/')
        base_len--;
    return xasprintf("%.*s/_apis/connectionData?connectOptions=1&lastChangeId=-1"
                     "&lastChangeId64=-1",
                     (int)base_len, conn->base);
}

static int take_locations(struct vss_conn *conn, struct http_response *resp, struct error *err)
{
    int rc = http_response_check(resp, "GET", err);
    json_t *data = NULL;
    if (rc == 0) {
        data = json_load_text(resp->body.data, resp->body.len, resp->url, err);
        if (!data)
            rc = err->code;
    }
    if (rc == 0) {
        struct vss_locations *l = vss_locations_parse(data, err);
        if (l) {
            vss_locations_free(conn->locations);
            conn->locations = l;
        } else {
            rc = err->code;
        }
    }
    json_decref(data);
    return rc;
}

int vss_conn_connect_sync(struct vss_conn *conn, struct error *err)
{
    cleanup_free char *url = connection_data_url(conn);
    struct http_response resp;
    struct vss_call_options o = {.url = url, .retries = 3, .anonymous = true};
    int rc = vss_call_sync(conn, &o, &resp, err);
    if (rc == 0)
        rc = take_locations(conn, &resp, err);
    http_response_free(&resp);
    return rc;
}

struct connect_state {
    struct vss_conn *conn;
    vss_connect_fn *done;
    void *user;
};

static void on_connection_data(struct http_response *resp, const struct error *err, void *user)
{
    struct connect_state *s = user;
    struct error e = {0};
    int rc;
    if (err) {
        e = *err;
        rc = e.code ? e.code : -1;
    } else {
        rc = take_locations(s->conn, resp, &e);
    }
    s->done(rc, rc < 0 ? &e : NULL, s->user);
    free(s);
}

int vss_conn_connect_start(struct vss_conn *conn, vss_connect_fn *done, void *user,
                           struct error *err)
{
    cleanup_free char *url = connection_data_url(conn);
    struct connect_state *s = xcalloc(1, sizeof *s);
    *s = (struct connect_state){conn, done, user};
    struct vss_call_options o = {
        .url = url, .retries = 3, .anonymous = true, .on_done = on_connection_data, .user = s};
    if (!vss_call_start(conn, &o, err)) {
        free(s);
        return err->code;
    }
    return 0;
}

/* --- action download info (§8.2) ----------------------------------------------------------- */

#define EMPTY_GUID "00000000-0000-0000-0000-000000000000"

static char *member_copy(const json_t *object, const char *key)
{
    const char *v = json_get_string(object, key);
    return v ? xstrdup(v) : NULL;
}

void vss_action_download_infos_free(struct vss_action_download_infos *infos)
{
    for (size_t i = 0; i < infos->count; i++) {
        struct vss_action_download_info *a = &infos->items[i];
        char *strings[] = {a->key,           a->name_with_owner, a->resolved_name_with_owner,
                           a->ref,           a->resolved_sha,    a->tarball_url,
                           a->zipball_url,   a->token,           a->package_version,
                           a->package_digest};
        for (size_t k = 0; k < sizeof strings / sizeof strings[0]; k++)
            free(strings[k]);
    }
    free(infos->items);
    *infos = (struct vss_action_download_infos){0};
}

int vss_action_download_infos_parse(const char *body, size_t len,
                                    struct vss_action_download_infos *out, struct error *err)
{
    *out = (struct vss_action_download_infos){0};
    json_t *doc = json_load_text(body, len, "the action download info", err);
    if (!doc)
        return err->code;
    json_t *actions = json_get(doc, "actions");
    if (!json_is_object(actions)) {
        json_decref(doc);
        return error_set(err, EPROTO, "the action download info has no 'actions' object");
    }
    out->items = xcalloc(json_object_size(actions) + 1, sizeof *out->items);
    const char *key;
    json_t *v;
    json_object_foreach(actions, key, v)
    {
        struct vss_action_download_info *a = &out->items[out->count++];
        a->key = xstrdup(key);
        a->name_with_owner = member_copy(v, "nameWithOwner");
        a->resolved_name_with_owner = member_copy(v, "resolvedNameWithOwner");
        a->ref = member_copy(v, "ref");
        a->resolved_sha = member_copy(v, "resolvedSha");
        a->tarball_url = member_copy(v, "tarballUrl");
        a->zipball_url = member_copy(v, "zipballUrl");
        const char *token = json_get_string(json_get(v, "authentication"), "token");
        a->token = token && *token ? xstrdup(token) : NULL;
        json_t *package = json_get(v, "packageDetails");
        a->package_version = member_copy(package, "version");
        a->package_digest = member_copy(package, "manifestDigest");
        if (!a->name_with_owner || !a->ref || !a->resolved_sha || !a->tarball_url) {
            error_set(err, EPROTO,
                      "the action download info for '%s' lacks nameWithOwner, ref, resolvedSha "
                      "or tarballUrl",
                      key);
            vss_action_download_infos_free(out);
            json_decref(doc);
            return err->code;
        }
        if (!a->resolved_name_with_owner)
            a->resolved_name_with_owner = xstrdup(a->name_with_owner);
    }
    json_decref(doc);
    return 0;
}

struct vss_action_download_info_call {
    struct vss_conn *conn;
    struct vss_call *call;
    char *route_scope, *route_hub, *route_plan, *query;
    json_t *body;
    vss_action_download_info_fn *done;
    void *user;
    bool cancelled;
};

static void download_info_call_free(struct vss_action_download_info_call *c)
{
    free(c->route_scope);
    free(c->route_hub);
    free(c->route_plan);
    free(c->query);
    json_decref(c->body);
    free(c);
}

static void download_info_finish(struct vss_action_download_info_call *c, int rc,
                                 const struct error *err,
                                 const struct vss_action_download_infos *infos)
{
    c->done(rc, err, infos, c->user);
    download_info_call_free(c);
}

/* The official runner gives up at once on the two exceptions that say the action cannot be
 * had (ActionManager.GetDownloadInfoAsync); a 422 is how the service sends the first. */
static bool download_info_refused_for_good(const struct http_response *resp)
{
    static const char *const final[] = {"UnresolvableActionDownloadInfoException",
                                        "NonRetryableActionDownloadInfoException"};
    if (resp->status == 422)
        return true;
    cleanup_free char *key = vss_error_type_key(resp);
    for (size_t i = 0; key && i < sizeof final / sizeof final[0]; i++)
        if (str_eq_nocase(key, final[i]))
            return true;
    return false;
}

static void on_download_info(struct http_response *resp, const struct error *err, void *user)
{
    struct vss_action_download_info_call *c = user;
    c->call = NULL;
    struct error e = {0};
    if (err || c->cancelled) {
        if (err)
            e = *err;
        else
            error_set(&e, ECANCELED, "cancelled");
        download_info_finish(c, e.code ? e.code : -1, &e, NULL);
        return;
    }
    if (resp->status == 200) {
        struct vss_action_download_infos infos;
        if (vss_action_download_infos_parse(resp->body.data, resp->body.len, &infos, &e) < 0) {
            download_info_finish(c, e.code, &e, NULL);
            return;
        }
        download_info_finish(c, 0, NULL, &infos);
        vss_action_download_infos_free(&infos);
        return;
    }
    cleanup_free char *message = vss_error_message(resp);
    if (message)
        error_set(&e, EIO, "%s", message);
    else
        http_response_check(resp, "POST", &e);
    if (!e.message[0])
        error_set(&e, EIO, "the service answered %ld", resp->status);
    if (download_info_refused_for_good(resp))
        e.code = VSS_ERROR_ACTION_UNRESOLVABLE;
    download_info_finish(c, e.code, &e, NULL);
}

static int download_info_post(struct vss_action_download_info_call *c, struct error *err)
{
    const char *route[] = {"scopeIdentifier", c->route_scope, "hubName", c->route_hub,
                           "planId",          c->route_plan,  NULL};
    cleanup_free char *url =
        vss_conn_url(c->conn, VSS_LOC_ACTION_DOWNLOAD_INFO, route, c->query, err);
    struct vss_call_options o = {
        .method = "POST", .url = url, .json = c->body, .on_done = on_download_info, .user = c};
    if (url)
        c->call = vss_call_start(c->conn, &o, err);
    return c->call ? 0 : (err->code ? err->code : -1);
}

static void on_download_info_locations(struct http_response *resp, const struct error *err,
                                       void *user)
{
    struct vss_action_download_info_call *c = user;
    c->call = NULL;
    struct error e = {0};
    int rc;
    if (err || c->cancelled) {
        if (err)
            e = *err;
        else
            error_set(&e, ECANCELED, "cancelled");
        rc = e.code ? e.code : -1;
    } else {
        rc = take_locations(c->conn, resp, &e);
    }
    if (rc == 0)
        rc = download_info_post(c, &e);
    if (rc < 0) {
        error_prefix(&e, "reaching the job's service");
        download_info_finish(c, rc, &e, NULL);
    }
}

struct vss_action_download_info_call *
vss_action_download_info_start(struct vss_conn *conn, const struct vss_plan_ids *ids,
                               const struct vss_action_reference *actions, size_t count,
                               vss_action_download_info_fn *done, void *user, struct error *err)
{
    if (!ids->plan || !ids->job) {
        error_set(err, EINVAL, "the job message names no plan or job for actiondownloadinfo");
        return NULL;
    }
    struct vss_action_download_info_call *c = xcalloc(1, sizeof *c);
    c->conn = conn;
    c->done = done;
    c->user = user;
    c->route_scope = xstrdup(ids->scope && *ids->scope ? ids->scope : EMPTY_GUID);
    c->route_hub = xstrdup(ids->hub && *ids->hub ? ids->hub : "actions");
    c->route_plan = xstrdup(ids->plan);
    cleanup_free char *job = runner_url_escape(ids->job);
    c->query = xasprintf("jobId=%s", job);
    json_t *list = json_array();
    for (size_t i = 0; i < count; i++)
        json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "nameWithOwner",
                                              actions[i].name_with_owner, "ref", actions[i].ref,
                                              "path", actions[i].path ? actions[i].path : ""));
    c->body = json_pack("{s:o}", "actions", list);
    if (vss_conn_connected(conn)) {
        if (download_info_post(c, err) < 0) {
            download_info_call_free(c);
            return NULL;
        }
        return c;
    }
    cleanup_free char *url = connection_data_url(conn);
    struct vss_call_options o = {.url = url,
                                 .retries = 3,
                                 .anonymous = true,
                                 .on_done = on_download_info_locations,
                                 .user = c};
    c->call = vss_call_start(conn, &o, err);
    if (!c->call) {
        download_info_call_free(c);
        return NULL;
    }
    return c;
}

void vss_action_download_info_cancel(struct vss_action_download_info_call *call)
{
    call->cancelled = true;
    if (call->call)
        vss_call_cancel(call->call);
}
