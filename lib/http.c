#include "lib/http.h"

#include "lib/mem.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum {
    DEFAULT_CONNECT_TIMEOUT_MS = 30000,
    DEFAULT_RETRY_DELAY_MS = 1000,
    DEFAULT_RETRY_MAX_DELAY_MS = 60000,
    MAX_REDIRECTS = 10,
    ERROR_BODY_QUOTE = 200,
};

/* ---- proxy settings ---------------------------------------------------------------- */

struct no_proxy_entry {
    char *host;
    char *port; /* NULL: any port */
};

struct http_proxy {
    char *http;  /* proxy for http:// URLs, or NULL */
    char *https; /* proxy for https:// URLs, or NULL */
    struct no_proxy_entry *entries;
    size_t entry_count;
    bool proxy_loopback; /* HARRIER_TEST_PROXY_LOOPBACK: tests only */
};

static char *url_part(CURLU *u, CURLUPart part, unsigned flags)
{
    char *value = NULL;
    if (curl_url_get(u, part, &value, flags) != CURLUE_OK)
        return NULL;
    char *copy = xstrdup(value);
    curl_free(value);
    return copy;
}

/* As the official runner: trimmed, and http:// put in front of an address without a scheme.
 * An address that still does not parse is ignored. */
static char *proxy_address_normalize(const char *address)
{
    if (!address)
        return NULL;
    cleanup_free char *copy = xstrdup(address);
    char *trimmed = str_trim(copy);
    if (!*trimmed)
        return NULL;
    char *full = strstr(trimmed, "://") ? xstrdup(trimmed) : xasprintf("http://%s", trimmed);
    CURLU *u = curl_url();
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, full, CURLU_NON_SUPPORT_SCHEME);
    curl_url_cleanup(u);
    if (rc != CURLUE_OK) {
        free(full);
        return NULL;
    }
    return full;
}

static bool is_ipv4_address(const char *s)
{
    struct in_addr addr;
    return inet_pton(AF_INET, s, &addr) == 1;
}

static void no_proxy_parse(struct http_proxy *proxy, const char *list)
{
    size_t count = 0;
    char **items = str_split(list, ',', &count);
    proxy->entries = xcalloc(count ? count : 1, sizeof *proxy->entries);
    for (size_t i = 0; i < count; i++) {
        char *item = str_trim(items[i]);
        if (!*item)
            continue;
        /* "host:port", split once at the first colon, empty parts dropped. */
        char *colon = strchr(item, ':');
        char *host = item, *port = NULL;
        if (colon) {
            *colon = '\0';
            port = colon + 1;
            if (!*host) {
                host = port;
                port = NULL;
            }
            if (port && !*port)
                port = NULL;
        }
        if (!*host || is_ipv4_address(host))
            continue; /* the official runner ignores IP addresses in no_proxy */
        struct no_proxy_entry *entry = &proxy->entries[proxy->entry_count++];
        entry->host = xstrdup(host);
        entry->port = port ? xstrdup(port) : NULL;
    }
    str_list_free(items);
}

struct http_proxy *http_proxy_new(const char *http_proxy, const char *https_proxy,
                                  const char *no_proxy)
{
    struct http_proxy *proxy = xcalloc(1, sizeof *proxy);
    proxy->http = proxy_address_normalize(http_proxy);
    proxy->https = proxy_address_normalize(https_proxy);
    if (no_proxy && *no_proxy)
        no_proxy_parse(proxy, no_proxy);
    return proxy;
}

static const char *env_either(const char *lower, const char *upper)
{
    const char *value = getenv(lower);
    if (!value || !*value)
        value = getenv(upper);
    return value;
}

struct http_proxy *http_proxy_from_env(void)
{
    struct http_proxy *proxy = http_proxy_new(env_either("http_proxy", "HTTP_PROXY"),
                                              env_either("https_proxy", "HTTPS_PROXY"),
                                              env_either("no_proxy", "NO_PROXY"));
    const char *loopback = getenv("HARRIER_TEST_PROXY_LOOPBACK");
    proxy->proxy_loopback = loopback && strcmp(loopback, "1") == 0;
    return proxy;
}

void http_proxy_free(struct http_proxy *proxy)
{
    if (!proxy)
        return;
    for (size_t i = 0; i < proxy->entry_count; i++) {
        free(proxy->entries[i].host);
        free(proxy->entries[i].port);
    }
    free(proxy->entries);
    free(proxy->http);
    free(proxy->https);
    free(proxy);
}

static bool host_is_loopback(const char *host)
{
    if (str_eq_nocase(host, "localhost"))
        return true;
    struct in_addr v4;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    size_t len = strlen(host);
    if (len > 2 && host[0] == '[' && host[len - 1] == ']') {
        char inner[64];
        snprintf(inner, sizeof inner, "%.*s", (int)(len - 2), host + 1);
        struct in6_addr v6;
        return inet_pton(AF_INET6, inner, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
    }
    return false;
}

static bool no_proxy_matches(const struct no_proxy_entry *entry, const char *host, const char *port)
{
    if (strcmp(entry->host, "*") == 0)
        return true;
    if (entry->port && strcmp(entry->port, port) != 0)
        return false;
    size_t host_len = strlen(host), entry_len = strlen(entry->host);
    if (entry->host[0] == '.')
        return host_len >= entry_len && str_eq_nocase(host + host_len - entry_len, entry->host);
    if (str_eq_nocase(host, entry->host))
        return true;
    return host_len > entry_len && host[host_len - entry_len - 1] == '.' &&
           str_eq_nocase(host + host_len - entry_len, entry->host);
}

char *http_proxy_for_url(const struct http_proxy *proxy, const char *url)
{
    if (!proxy)
        return NULL;
    CURLU *u = curl_url();
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        curl_url_cleanup(u);
        return NULL;
    }
    cleanup_free char *scheme = url_part(u, CURLUPART_SCHEME, 0);
    cleanup_free char *host = url_part(u, CURLUPART_HOST, 0);
    cleanup_free char *port = url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
    curl_url_cleanup(u);
    if (!scheme || !host || !port)
        return NULL;
    const char *address = NULL;
    if (str_eq_nocase(scheme, "https"))
        address = proxy->https;
    else if (str_eq_nocase(scheme, "http"))
        address = proxy->http;
    if (!address)
        return NULL;
    if (!proxy->proxy_loopback && host_is_loopback(host))
        return NULL;
    for (size_t i = 0; i < proxy->entry_count; i++)
        if (no_proxy_matches(&proxy->entries[i], host, port))
            return NULL;
    return xstrdup(address);
}

/* ---- client and requests ----------------------------------------------------------- */

struct socket_watch {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http_client *client;
    struct socket_watch *prev, *next;
};

struct http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct http_proxy *proxy;
    char *ca_file;
    bool tls_no_verify;
    bool closing;
    int open_handles; /* uv handles of the client not yet closed; freed at 0 once closing */
    struct http_request *requests;
    struct socket_watch *watches;
    uint64_t random_state;
};

struct http_request {
    struct http_client *client;
    struct http_request *prev, *next;
    CURL *easy;
    uv_timer_t timer; /* backoff before a retry, and cancellation */
    struct curl_slist *headers;
    struct http_request_options options;
    char *method;
    char *url;
    char *proxy_url;
    void *body; /* copy of a memory body */
    size_t body_offset;
    struct http_response resp;
    char curl_error[CURL_ERROR_SIZE];
    int max_tries;
    bool replayable;
    bool in_multi, done, canceled, paused;
    bool status_seen;   /* this try's status was looked at (first body byte) */
    bool discarding;    /* this try's body is thrown away: a retry follows */
    uint64_t delivered; /* body bytes given to on_data over all tries */
    int abort_code;     /* from on_data or body_read */
    struct error last_error;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static uint64_t client_random(struct http_client *client)
{
    /* xorshift64: jitter needs spread, not secrecy */
    uint64_t x = client->random_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    client->random_state = x;
    return x;
}

static void client_handle_closed(uv_handle_t *handle)
{
    struct http_client *client = handle->data;
    if (--client->open_handles == 0 && client->closing)
        free(client);
}

static void watch_closed(uv_handle_t *handle)
{
    struct socket_watch *watch = handle->data;
    struct http_client *client = watch->client;
    free(watch);
    if (--client->open_handles == 0 && client->closing)
        free(client);
}

static void watch_close(struct socket_watch *watch)
{
    struct http_client *client = watch->client;
    /* Stopped at once: curl may hand the same fd number back before the close completes. */
    uv_poll_stop(&watch->poll);
    if (watch->prev)
        watch->prev->next = watch->next;
    else
        client->watches = watch->next;
    if (watch->next)
        watch->next->prev = watch->prev;
    watch->poll.data = watch;
    uv_close((uv_handle_t *)&watch->poll, watch_closed);
}

static void request_try_done(struct http_request *req, CURLcode result);

static void client_check_done(struct http_client *client)
{
    CURLMsg *msg;
    int pending;
    while (!client->closing && (msg = curl_multi_info_read(client->multi, &pending))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct http_request *req = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&req);
        curl_multi_remove_handle(client->multi, easy);
        req->in_multi = false;
        request_try_done(req, result);
    }
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    struct socket_watch *watch = poll->data;
    struct http_client *client = watch->client;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    curl_multi_socket_action(client->multi, watch->fd, flags, &running);
    client_check_done(client);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct http_client *client = userp;
    struct socket_watch *watch = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (watch) {
            curl_multi_assign(client->multi, fd, NULL);
            watch_close(watch);
        }
        return 0;
    }
    if (!watch) {
        watch = xcalloc(1, sizeof *watch);
        watch->fd = fd;
        watch->client = client;
        if (uv_poll_init_socket(client->loop, &watch->poll, fd) != 0) {
            free(watch);
            return -1;
        }
        watch->poll.data = watch;
        client->open_handles++;
        watch->next = client->watches;
        if (client->watches)
            client->watches->prev = watch;
        client->watches = watch;
        curl_multi_assign(client->multi, fd, watch);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&watch->poll, events, on_poll);
    return 0;
}

static void on_client_timer(uv_timer_t *timer)
{
    struct http_client *client = timer->data;
    int running;
    curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    client_check_done(client);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct http_client *client = userp;
    /* Even a 0 ms timeout goes through the loop: calling curl_multi_socket_action from
     * inside this callback would re-enter curl. */
    if (timeout_ms < 0)
        uv_timer_stop(&client->timer);
    else
        uv_timer_start(&client->timer, on_client_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static bool env_true(const char *name)
{
    const char *v = getenv(name);
    return v && (strcmp(v, "1") == 0 || str_eq_nocase(v, "true") || str_eq_nocase(v, "$true"));
}

struct http_client *http_client_new(uv_loop_t *loop)
{
    pthread_once(&curl_once, curl_init_once);
    struct http_client *client = xcalloc(1, sizeof *client);
    client->loop = loop;
    client->multi = curl_multi_init();
    if (!client->multi)
        abort(); /* only on out-of-memory */
    curl_multi_setopt(client->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client);
    curl_multi_setopt(client->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(client->multi, CURLMOPT_TIMERDATA, client);
    uv_timer_init(loop, &client->timer);
    client->timer.data = client;
    client->open_handles = 1;
    client->proxy = http_proxy_from_env();
    client->tls_no_verify = env_true("GITHUB_ACTIONS_RUNNER_TLS_NO_VERIFY");
    client->random_state = (uv_hrtime() ^ ((uint64_t)getpid() << 32)) | 1;
    return client;
}

void http_client_set_ca_file(struct http_client *client, const char *path)
{
    free(client->ca_file);
    client->ca_file = path ? xstrdup(path) : NULL;
}

void http_client_set_tls_no_verify(struct http_client *client, bool no_verify)
{
    client->tls_no_verify = no_verify;
}

void http_client_set_proxy(struct http_client *client, struct http_proxy *proxy)
{
    http_proxy_free(client->proxy);
    client->proxy = proxy;
}

/* ---- responses ----------------------------------------------------------------------- */

static void headers_clear(struct http_response *resp)
{
    for (size_t i = 0; i < resp->header_count; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    free(resp->headers);
    resp->headers = NULL;
    resp->header_count = 0;
}

void http_response_free(struct http_response *resp)
{
    if (!resp)
        return;
    headers_clear(resp);
    buf_free(&resp->body);
    free(resp->url);
    free(resp->final_url);
    memset(resp, 0, sizeof *resp);
}

void http_response_move(struct http_response *dst, struct http_response *src)
{
    *dst = *src;
    memset(src, 0, sizeof *src);
}

const char *http_response_header(const struct http_response *resp, const char *name)
{
    for (size_t i = 0; i < resp->header_count; i++)
        if (str_eq_nocase(resp->headers[i].name, name))
            return resp->headers[i].value;
    return NULL;
}

static int status_code_errno(long status)
{
    switch (status) {
    case 401:
    case 403:
        return -EACCES;
    case 404:
        return -ENOENT;
    case 408:
    case 504:
        return -ETIMEDOUT;
    default:
        return -EIO;
    }
}

int http_response_check(const struct http_response *resp, const char *method, struct error *err)
{
    if (resp->status >= 200 && resp->status < 300)
        return 0;
    char quote[ERROR_BODY_QUOTE + 1];
    size_t n = resp->body.len < ERROR_BODY_QUOTE ? resp->body.len : ERROR_BODY_QUOTE;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)resp->body.data[i];
        quote[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    quote[n] = '\0';
    return error_set_at(err, status_code_errno(resp->status), resp->url, 0, 0,
                        "%s returned HTTP %ld%s%s%s", method ? method : "GET", resp->status,
                        n ? ": " : "", quote, resp->body.len > n ? "..." : "");
}

/* The URL for messages: no user info, no query (they may hold tokens, as SAS URLs do). */
static char *url_redact(const char *url)
{
    CURLU *u = curl_url();
    char *out = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
        curl_url_set(u, CURLUPART_USER, NULL, 0);
        curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
        curl_url_set(u, CURLUPART_QUERY, NULL, 0);
        curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
        out = url_part(u, CURLUPART_URL, 0);
    }
    curl_url_cleanup(u);
    return out ? out : xstrdup("(unparsable URL)");
}

/* ---- curl callbacks ---------------------------------------------------------------- */

static bool status_is_retryable(long status)
{
    return status == 429 || (status >= 500 && status != 501 && status != 505);
}

static bool request_can_retry(const struct http_request *req)
{
    return req->replayable && req->delivered == 0 && req->resp.tries < req->max_tries &&
           !req->canceled && !req->client->closing;
}

static void header_add(struct http_response *resp, const char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    if (!len)
        return;
    if ((line[0] == ' ' || line[0] == '\t') && resp->header_count) {
        /* an obsolete folded line continues the previous value */
        struct http_header *last = &resp->headers[resp->header_count - 1];
        cleanup_free char *more = xstrndup(line, len);
        char *joined = xasprintf("%s %s", last->value, str_trim(more));
        free(last->value);
        last->value = joined;
        return;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return;
    cleanup_free char *name = xstrndup(line, (size_t)(colon - line));
    cleanup_free char *value = xstrndup(colon + 1, len - (size_t)(colon + 1 - line));
    resp->headers = xrealloc(resp->headers, (resp->header_count + 1) * sizeof *resp->headers);
    resp->headers[resp->header_count].name = xstrdup(str_trim(name));
    resp->headers[resp->header_count].value = xstrdup(str_trim(value));
    resp->header_count++;
}

static void on_idle_timer(uv_timer_t *timer);

/* Bytes moved: the idle timeout starts again. Not after a cancel, whose timer it would
 * replace. */
static void request_touch(struct http_request *req)
{
    if (req->options.idle_timeout_ms && req->in_multi && !req->canceled)
        uv_timer_start(&req->timer, on_idle_timer, req->options.idle_timeout_ms, 0);
}

static size_t on_curl_header(char *data, size_t size, size_t count, void *userp)
{
    struct http_request *req = userp;
    size_t len = size * count;
    request_touch(req);
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* a new response (after a redirect, a 100 Continue or a 401): start afresh */
        headers_clear(&req->resp);
        const char *space = memchr(data, ' ', len);
        if (space)
            req->resp.status = strtol(space + 1, NULL, 10);
        return len;
    }
    header_add(&req->resp, data, len);
    return len;
}

static size_t on_curl_write(char *data, size_t size, size_t count, void *userp)
{
    struct http_request *req = userp;
    size_t len = size * count;
    if (req->canceled)
        return 0;
    request_touch(req);
    if (!req->status_seen) {
        req->status_seen = true;
        long status = 0;
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
        req->resp.status = status;
        /* a response that will be retried never reaches the caller */
        req->discarding = status_is_retryable(status) && request_can_retry(req);
    }
    if (req->discarding)
        return len;
    if (!req->options.on_data) {
        buf_append(&req->resp.body, data, len);
        return len;
    }
    int rc = req->options.on_data(&req->resp, data, len, req->options.data_user);
    if (rc < 0) {
        req->abort_code = rc;
        return 0;
    }
    req->delivered += len;
    return len;
}

static size_t on_curl_read(char *out, size_t size, size_t count, void *userp)
{
    struct http_request *req = userp;
    size_t cap = size * count;
    if (req->canceled)
        return CURL_READFUNC_ABORT;
    request_touch(req);
    if (!req->options.body_read) {
        size_t left = req->options.body_len - req->body_offset;
        size_t n = left < cap ? left : cap;
        memcpy(out, (char *)req->body + req->body_offset, n);
        req->body_offset += n;
        return n;
    }
    ssize_t n = req->options.body_read(out, cap, req->options.body_user);
    if (n == HTTP_READ_PAUSE) {
        req->paused = true;
        return CURL_READFUNC_PAUSE;
    }
    if (n < 0) {
        req->abort_code = (int)n;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)n > cap ? cap : (size_t)n;
}

static int body_rewind(struct http_request *req)
{
    if (!req->options.body_read) {
        req->body_offset = 0;
        return 0;
    }
    if (!req->options.body_rewind)
        return -ESPIPE;
    return req->options.body_rewind(req->options.body_user);
}

static int on_curl_seek(void *userp, curl_off_t offset, int origin)
{
    struct http_request *req = userp;
    if (offset != 0 || origin != SEEK_SET)
        return CURL_SEEKFUNC_CANTSEEK;
    return body_rewind(req) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_CANTSEEK;
}

/* ---- request life ------------------------------------------------------------------ */

static void request_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void request_release(struct http_request *req)
{
    curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    http_response_free(&req->resp);
    free(req->method);
    free(req->url);
    free(req->proxy_url);
    free(req->body);
    req->timer.data = req;
    uv_close((uv_handle_t *)&req->timer, request_closed);
}

static void request_unlink(struct http_request *req)
{
    struct http_client *client = req->client;
    if (req->prev)
        req->prev->next = req->next;
    else
        client->requests = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

/* Ends the request: one on_done call, then everything is released. */
static void request_finish(struct http_request *req, const struct error *err)
{
    if (req->done)
        return;
    req->done = true;
    uv_timer_stop(&req->timer);
    if (req->in_multi) {
        curl_multi_remove_handle(req->client->multi, req->easy);
        req->in_multi = false;
    }
    request_unlink(req);
    char *effective = NULL;
    if (curl_easy_getinfo(req->easy, CURLINFO_EFFECTIVE_URL, &effective) == CURLE_OK && effective)
        req->resp.final_url = url_redact(effective);
    if (req->options.on_done)
        req->options.on_done(&req->resp, err, req->options.user);
    request_release(req);
}

static void request_fail(struct http_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void request_fail(struct http_request *req, int code, const char *fmt, ...)
{
    char detail[ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    struct error err = {0};
    char tries[48] = "";
    if (req->resp.tries > 1)
        snprintf(tries, sizeof tries, " after %d tries", req->resp.tries);
    char proxy[256] = "";
    if (req->proxy_url) {
        cleanup_free char *shown = url_redact(req->proxy_url);
        snprintf(proxy, sizeof proxy, " (through proxy %s)", shown);
    }
    error_set_at(&err, code, req->resp.url, 0, 0, "%s failed%s: %s%s", req->method, tries, detail,
                 proxy);
    request_finish(req, &err);
}

static void request_cancelled(struct http_request *req)
{
    request_fail(req, -ECANCELED, "cancelled");
}

static int request_add(struct http_request *req)
{
    req->resp.tries++;
    req->status_seen = req->discarding = false;
    req->curl_error[0] = '\0';
    if (curl_multi_add_handle(req->client->multi, req->easy) != CURLM_OK)
        return -EIO;
    req->in_multi = true;
    request_touch(req);
    return 0;
}

static void on_retry_timer(uv_timer_t *timer)
{
    struct http_request *req = timer->data;
    if (req->canceled) {
        request_cancelled(req);
        return;
    }
    int rc = body_rewind(req);
    if (rc < 0) {
        request_fail(req, rc, "cannot rewind the body to try again (%s)", req->last_error.message);
        return;
    }
    if (request_add(req) < 0)
        request_fail(req, -EIO, "cannot start the transfer again");
}

static unsigned retry_after_ms(const struct http_response *resp)
{
    const char *value = http_response_header(resp, "Retry-After");
    if (!value || !isdigit((unsigned char)value[0]))
        return 0; /* an HTTP date is rare; the backoff applies then */
    unsigned long seconds = strtoul(value, NULL, 10);
    return seconds > 86400 ? 86400u * 1000u : (unsigned)seconds * 1000u;
}

static void request_retry_later(struct http_request *req)
{
    unsigned base =
        req->options.retry_delay_ms ? req->options.retry_delay_ms : DEFAULT_RETRY_DELAY_MS;
    unsigned max = req->options.retry_max_delay_ms ? req->options.retry_max_delay_ms
                                                   : DEFAULT_RETRY_MAX_DELAY_MS;
    uint64_t delay = base;
    for (int i = 1; i < req->resp.tries && delay < max; i++)
        delay *= 2;
    delay += client_random(req->client) % (delay / 2 + 1);
    uint64_t asked = retry_after_ms(&req->resp);
    if (asked > delay)
        delay = asked;
    if (delay > max)
        delay = max;
    headers_clear(&req->resp);
    buf_reset(&req->resp.body);
    req->resp.status = 0;
    req->timer.data = req;
    uv_timer_start(&req->timer, on_retry_timer, delay, 0);
}

static void on_idle_timer(uv_timer_t *timer)
{
    struct http_request *req = timer->data;
    if (req->in_multi) {
        curl_multi_remove_handle(req->client->multi, req->easy);
        req->in_multi = false;
    }
    if (request_can_retry(req)) {
        error_set(&req->last_error, -ETIMEDOUT, "no data for %u ms", req->options.idle_timeout_ms);
        request_retry_later(req);
        return;
    }
    request_fail(req, -ETIMEDOUT, "timed out: no data moved for %u ms",
                 req->options.idle_timeout_ms);
}

static int curl_code_errno(CURLcode code)
{
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
        return -ECONNRESET;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
        return -EPROTO;
    case CURLE_TOO_MANY_REDIRECTS:
        return -ELOOP;
    default:
        return -EIO;
    }
}

static bool curl_code_retryable(struct http_request *req, CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    case CURLE_OPERATION_TIMEDOUT: {
        /* a connect timeout is worth another try; the whole-try timeout is the caller's */
        curl_off_t connected = 0;
        curl_easy_getinfo(req->easy, CURLINFO_CONNECT_TIME_T, &connected);
        return connected == 0;
    }
    default:
        return false;
    }
}

/* What a failed try says, with a hint where one helps. */
static void curl_error_describe(struct http_request *req, CURLcode code, char *out, size_t size)
{
    const char *detail = req->curl_error[0] ? req->curl_error : curl_easy_strerror(code);
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(out, size, "timed out (%s)", detail);
        break;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        snprintf(out, size, "the connection closed before the whole response arrived (%s)", detail);
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(out, size,
                 "%s; if the server uses a private CA, give its certificate as the CA file",
                 detail);
        break;
    default:
        snprintf(out, size, "%s", detail);
    }
}

static void request_try_done(struct http_request *req, CURLcode result)
{
    if (req->canceled) {
        request_cancelled(req);
        return;
    }
    if (result == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
        req->resp.status = status;
        bool retry = status_is_retryable(status) && request_can_retry(req);
        /* a body-less 5xx never passed the write callback; decide here too */
        if (retry) {
            error_set(&req->last_error, -EIO, "HTTP %ld", status);
            request_retry_later(req);
            return;
        }
        request_finish(req, NULL);
        return;
    }
    if (req->abort_code) {
        int code = req->abort_code;
        if (result == CURLE_WRITE_ERROR)
            request_fail(req, code, "stopped by the receiver of the body (%d)", code);
        else
            request_fail(req, code, "the body could not be read (%d)", code);
        return;
    }
    char detail[ERROR_MESSAGE_MAX - 200];
    curl_error_describe(req, result, detail, sizeof detail);
    if (curl_code_retryable(req, result) && request_can_retry(req)) {
        error_set(&req->last_error, curl_code_errno(result), "%s", detail);
        request_retry_later(req);
        return;
    }
    request_fail(req, curl_code_errno(result), "%s", detail);
}

static bool method_is_idempotent(const char *method)
{
    static const char *const idempotent[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof idempotent / sizeof *idempotent; i++)
        if (strcmp(method, idempotent[i]) == 0)
            return true;
    return false;
}

static bool has_header(const char *const *headers, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; headers && headers[i]; i++)
        if (strncasecmp(headers[i], name, len) == 0 && headers[i][len] == ':')
            return true;
    return false;
}

static void request_set_body(struct http_request *req, CURL *easy)
{
    const struct http_request_options *o = &req->options;
    bool has_body = o->body_read || o->body;
    if (!has_body) {
        if (strcmp(req->method, "HEAD") == 0)
            curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
        else if (strcmp(req->method, "GET") != 0)
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
        return;
    }
    curl_off_t size = o->body_read ? (curl_off_t)o->body_size : (curl_off_t)o->body_len;
    curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_curl_read);
    curl_easy_setopt(easy, CURLOPT_READDATA, req);
    curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, on_curl_seek);
    curl_easy_setopt(easy, CURLOPT_SEEKDATA, req);
    if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, size);
        if (size < 0)
            req->headers = curl_slist_append(req->headers, "Transfer-Encoding: chunked");
    } else {
        curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, size);
        if (strcmp(req->method, "PUT") != 0)
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    }
}

static void request_set_options(struct http_request *req)
{
    struct http_client *client = req->client;
    const struct http_request_options *o = &req->options;
    CURL *easy = req->easy;
    curl_easy_setopt(easy, CURLOPT_URL, req->url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->curl_error);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, o->no_redirects ? 0L : 1L);
    curl_easy_setopt(easy, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_curl_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_curl_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(
        easy, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS));
    if (o->timeout_ms)
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    /* Proxies are decided here, as the official runner decides them; curl's own reading of
     * the environment differs (it ignores HTTP_PROXY, matches no_proxy IPs), so it is
     * switched off both ways: "" means no proxy, and no_proxy "" means no exceptions. */
    curl_easy_setopt(easy, CURLOPT_PROXY, req->proxy_url ? req->proxy_url : "");
    curl_easy_setopt(easy, CURLOPT_NOPROXY, "");
    curl_easy_setopt(easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    if (client->ca_file)
        curl_easy_setopt(easy, CURLOPT_CAINFO, client->ca_file);
    if (client->tls_no_verify) {
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    for (size_t i = 0; o->headers && o->headers[i]; i++)
        req->headers = curl_slist_append(req->headers, o->headers[i]);
    if (!has_header(o->headers, "User-Agent"))
        req->headers = curl_slist_append(req->headers, "User-Agent: harrier");
    /* curl would wait up to a second for a "100 Continue" that many servers never send */
    if (!has_header(o->headers, "Expect"))
        req->headers = curl_slist_append(req->headers, "Expect:");
    request_set_body(req, easy);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
}

static int options_check(const struct http_request_options *o, struct error *err)
{
    const char *url = o->url ? o->url : "";
    if (!str_starts_with_nocase(url, "http://") && !str_starts_with_nocase(url, "https://"))
        return error_set_at(err, EINVAL, url, 0, 0,
                            "not an http:// or https:// URL; give the full URL");
    CURLU *u = curl_url();
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    curl_url_cleanup(u);
    if (rc != CURLUE_OK)
        return error_set_at(err, EINVAL, url, 0, 0, "not a valid URL (%s)", curl_url_strerror(rc));
    if (o->body && o->body_read)
        return error_set_at(err, EINVAL, url, 0, 0,
                            "a request body comes from memory or from body_read, not both");
    return 0;
}

struct http_request *http_request_start(struct http_client *client,
                                        const struct http_request_options *options,
                                        struct error *err)
{
    if (options_check(options, err) < 0)
        return NULL;
    if (client->closing) {
        error_set_at(err, ECANCELED, options->url, 0, 0, "the HTTP client is shutting down");
        return NULL;
    }
    struct http_request *req = xcalloc(1, sizeof *req);
    req->client = client;
    req->options = *options;
    req->method = xstrdup(options->method ? options->method : "GET");
    req->url = xstrdup(options->url);
    req->resp.url = url_redact(options->url);
    if (options->body && options->body_len)
        req->body = xmemdup(options->body, options->body_len);
    req->options.body = req->body;
    if (options->body && !options->body_len)
        req->options.body = req->body = xstrdup(""); /* an empty body is still a body */
    req->proxy_url = http_proxy_for_url(client->proxy, req->url);
    req->resp.via_proxy = req->proxy_url != NULL;
    req->max_tries = 1 + (options->retries > 0 ? options->retries : 0);
    bool body_replayable = !options->body_read || options->body_rewind;
    req->replayable = body_replayable && (options->idempotent || method_is_idempotent(req->method));
    uv_timer_init(client->loop, &req->timer);
    req->timer.data = req;
    req->easy = curl_easy_init();
    if (!req->easy)
        abort(); /* only on out-of-memory */
    request_set_options(req);
    req->next = client->requests;
    if (client->requests)
        client->requests->prev = req;
    client->requests = req;
    if (request_add(req) < 0) {
        error_set_at(err, EIO, req->resp.url, 0, 0, "cannot start the transfer");
        req->options.on_done = NULL;
        req->done = true;
        request_unlink(req);
        request_release(req);
        return NULL;
    }
    return req;
}

static void on_cancel_timer(uv_timer_t *timer)
{
    request_cancelled(timer->data);
}

void http_request_cancel(struct http_request *req)
{
    if (req->done || req->canceled)
        return;
    req->canceled = true;
    /* Finished from the loop: this may be called from inside a curl callback, where the
     * transfer cannot be taken out of the multi handle. */
    req->timer.data = req;
    uv_timer_start(&req->timer, on_cancel_timer, 0, 0);
}

void http_request_resume(struct http_request *req)
{
    if (req->done || !req->paused)
        return;
    req->paused = false;
    curl_easy_pause(req->easy, CURLPAUSE_CONT);
}

void http_client_free(struct http_client *client)
{
    if (!client || client->closing)
        return;
    client->closing = true;
    while (client->requests) {
        struct http_request *req = client->requests;
        req->canceled = true;
        request_cancelled(req);
    }
    /* closing cached connections reports their sockets as removed, which closes watches */
    curl_multi_cleanup(client->multi);
    client->multi = NULL;
    while (client->watches)
        watch_close(client->watches);
    http_proxy_free(client->proxy);
    client->proxy = NULL;
    free(client->ca_file);
    client->ca_file = NULL;
    uv_timer_stop(&client->timer);
    uv_close((uv_handle_t *)&client->timer, client_handle_closed);
}

/* ---- synchronous use ----------------------------------------------------------------- */

struct sync_state {
    bool done;
    int rc;
    struct http_response *out;
    struct error *err;
};

static void on_sync_done(struct http_response *resp, const struct error *err, void *user)
{
    struct sync_state *state = user;
    state->done = true;
    http_response_move(state->out, resp);
    if (err) {
        state->rc = err->code;
        if (state->err)
            *state->err = *err;
    }
}

int http_request_sync(const struct http_request_options *options, struct http_response *out,
                      struct error *err)
{
    memset(out, 0, sizeof *out);
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0)
        return error_set(err, rc, "cannot start an event loop: %s", uv_strerror(rc));
    struct http_client *client = http_client_new(&loop);
    struct sync_state state = {.out = out, .err = err};
    struct http_request_options opts = *options;
    opts.on_done = on_sync_done;
    opts.user = &state;
    if (!http_request_start(client, &opts, err))
        state.rc = err ? err->code : -EINVAL;
    else
        while (!state.done)
            uv_run(&loop, UV_RUN_ONCE);
    http_client_free(client);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (state.rc < 0)
        http_response_free(out);
    return state.rc;
}
