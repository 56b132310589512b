/* http: harrier's HTTP client, libcurl's multi interface driven by a libuv loop.
 * A client is bound to one loop and owns the connections it keeps alive; each request runs
 * on that loop and ends with exactly one on_done call. Proxies follow the official runner. */
#ifndef HARRIER_LIB_HTTP_H
#define HARRIER_LIB_HTTP_H

#include "lib/buf.h"
#include "lib/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct http_client;
struct http_request;

struct http_header {
    char *name;
    char *value;
};

/* What came back. Owned by the request and valid during on_done (and on_data); to keep it,
 * move it out with http_response_move(). */
struct http_response {
    long status;                 /* 0 when no response arrived */
    struct http_header *headers; /* of the final response, in order */
    size_t header_count;
    struct buf body; /* the body when the request has no on_data callback */
    int tries;       /* how many times the request was sent (1 = no retry) */
    char *url;       /* the URL asked for (redacted: no user info, no query) */
    char *final_url; /* after redirects (redacted likewise) */
    bool via_proxy;  /* true when the request went through a proxy */
};

/* on_data: a piece of the body, as it arrives. resp->status and headers are already known.
 * Return 0 to go on, or a negative value to stop the request (it ends with that code). */
typedef int (*http_data_fn)(const struct http_response *resp, const void *bytes, size_t len,
                            void *user);
/* body_read: fills out (cap bytes) with the next piece of the body to send; returns the
 * count, 0 at the end, HTTP_READ_PAUSE when nothing is ready yet (then call
 * http_request_resume() when it is), or another negative value to fail the request. */
typedef ssize_t (*http_read_fn)(void *out, size_t cap, void *user);
/* body_rewind: goes back to the start of the body for a new try; 0 or negative. */
typedef int (*http_rewind_fn)(void *user);
/* on_done: called once, from the loop. err is NULL when a response arrived (whatever its
 * status), else says what failed and names the URL (err->where). err->code is -ECANCELED
 * for a cancelled request, -ETIMEDOUT for a timeout. */
typedef void (*http_done_fn)(struct http_response *resp, const struct error *err, void *user);

enum { HTTP_READ_PAUSE = -0x7f00 };

struct http_request_options {
    const char *method;         /* "GET" when NULL */
    const char *url;            /* http:// or https:// */
    const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */

    /* Body, from memory (copied when the request starts)... */
    const void *body;
    size_t body_len;
    /* ...or streamed from body_read. body_size is its length, or -1 when unknown (sent
     * chunked). Retries need body_rewind. */
    http_read_fn body_read;
    http_rewind_fn body_rewind;
    int64_t body_size;
    void *body_user;

    http_data_fn on_data; /* NULL: the body is collected into resp->body */
    void *data_user;
    http_done_fn on_done;
    void *user;

    unsigned connect_timeout_ms; /* 0: 30 s */
    unsigned timeout_ms;         /* whole try, connection to last byte; 0: none */
    unsigned idle_timeout_ms;    /* a try that sends and gets no byte for this long fails
                                  * (and may be retried); for long transfers; 0: none */

    /* Retries, for connection errors, 5xx (not 501) and 429, with exponential backoff: the
     * wait before try n+1 is retry_delay_ms * 2^(n-1), plus up to half again at random,
     * at most retry_max_delay_ms (a Retry-After header is honoured up to that too). Only
     * for requests that can be replayed: an idempotent method (GET, HEAD, PUT, DELETE,
     * OPTIONS) or `idempotent` set, a body that can be rewound, and no body bytes yet given
     * to on_data. */
    int retries;                 /* extra tries after the first; 0: none */
    unsigned retry_delay_ms;     /* 0: 1000 */
    unsigned retry_max_delay_ms; /* 0: 60000 */
    bool idempotent;             /* the caller vouches that repeating this request is safe */

    bool no_redirects; /* redirects are followed (up to 10) unless set */
};

/* A client on loop. Reads the proxy settings from the environment (http_proxy_from_env)
 * and GITHUB_ACTIONS_RUNNER_TLS_NO_VERIFY, as the official runner does. */
struct http_client *http_client_new(uv_loop_t *loop);
/* Ends every request still running (each gets on_done with -ECANCELED, before this returns)
 * and closes the client's handles; run the loop afterwards so that they finish closing.
 * Not from inside on_data or body_read. */
void http_client_free(struct http_client *client);
/* A PEM file of CA certificates to trust instead of the system's (NULL: the system's). */
void http_client_set_ca_file(struct http_client *client, const char *path);
/* Turns off TLS certificate checks (GITHUB_ACTIONS_RUNNER_TLS_NO_VERIFY does this too). */
void http_client_set_tls_no_verify(struct http_client *client, bool no_verify);

/* Starts a request. Returns its handle (valid until on_done returns), or NULL with err set
 * when the options are wrong; then on_done is not called. */
struct http_request *http_request_start(struct http_client *client,
                                        const struct http_request_options *options,
                                        struct error *err);
/* Stops a request; its on_done still comes, from the loop, with -ECANCELED. No-op once
 * on_done has been called. */
void http_request_cancel(struct http_request *request);
/* Continues a request whose body_read returned HTTP_READ_PAUSE. */
void http_request_resume(struct http_request *request);

/* One request, start to end, on a private loop: for one-shot CLI callers. On success *out
 * holds the response (free it with http_response_free). Returns 0 when a response arrived,
 * whatever its status, or negative with err set. options->on_done is ignored. */
int http_request_sync(const struct http_request_options *options, struct http_response *out,
                      struct error *err);

/* A header of the response, by name, ignoring case (the first one); NULL when absent. */
const char *http_response_header(const struct http_response *resp, const char *name);
/* Fills err and returns negative unless the status is 2xx ("GET <url>: 404 Not Found..."),
 * quoting the start of a collected body. */
int http_response_check(const struct http_response *resp, const char *method, struct error *err);
/* Moves src's contents to dst (src is left empty). */
void http_response_move(struct http_response *dst, struct http_response *src);
void http_response_free(struct http_response *resp);

/* Proxy settings, read as the official runner's RunnerWebProxy does: http_proxy for http://
 * URLs, https_proxy for https:// URLs (lower-case names win over upper-case ones), a proxy
 * address without a scheme taken as http://, and a request goes direct when its scheme has
 * no proxy, its host is loopback (localhost, 127.0.0.0/8, ::1), or no_proxy names it.
 * no_proxy is a comma list of entries: `*` (everything), `host` (that host and its
 * subdomains), `.host` (subdomains only), each with an optional `:port`; IPv4 addresses
 * are ignored there, as the official runner ignores them. */
struct http_proxy;
struct http_proxy *http_proxy_new(const char *http_proxy, const char *https_proxy,
                                  const char *no_proxy);
/* From http_proxy/HTTP_PROXY, https_proxy/HTTPS_PROXY, no_proxy/NO_PROXY. Tests may set
 * HARRIER_TEST_PROXY_LOOPBACK=1 to send loopback requests through a proxy too. */
struct http_proxy *http_proxy_from_env(void);
void http_proxy_free(struct http_proxy *proxy);
/* The proxy URL for url (caller frees), or NULL to go direct. */
char *http_proxy_for_url(const struct http_proxy *proxy, const char *url);
/* Replaces the client's proxy settings (the client takes proxy; NULL: always direct). */
void http_client_set_proxy(struct http_client *client, struct http_proxy *proxy);

#endif
