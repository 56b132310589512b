/* lib/http against real servers on 127.0.0.1: tests/helpers/http_server.py (plain and
 * TLS) and Debian's tinyproxy, each started by the test that needs it. */
#include "lib/http.h"

#include "lib/json.h"
#include "lib/mem.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"
#define SERVER_SCRIPT "tests/helpers/http_server.py"

/* ---- child processes: the test server and tinyproxy ----------------------------------- */

static pid_t children[4];
static size_t child_count;
static char temp_dir[64];

static void stop_children(void)
{
    for (size_t i = 0; i < child_count; i++) {
        kill(children[i], SIGTERM);
        waitpid(children[i], NULL, 0);
    }
    child_count = 0;
    if (temp_dir[0]) {
        cleanup_free char *cmd = xasprintf("rm -rf '%s'", temp_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", temp_dir);
        temp_dir[0] = '\0';
    }
}

static const char *scratch_dir(void)
{
    if (!temp_dir[0]) {
        snprintf(temp_dir, sizeof temp_dir, "/tmp/harrier-http-XXXXXX");
        cr_assert_not_null(mkdtemp(temp_dir));
    }
    return temp_dir;
}

static pid_t spawn(char *const argv[], int stdout_fd)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        dup2(null, STDIN_FILENO);
        dup2(stdout_fd >= 0 ? stdout_fd : null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    children[child_count++] = pid;
    return pid;
}

/* Starts the test server (TLS when tls is true); returns its port. */
static int server_start(bool tls)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    char *argv[] = {PYTHON, SERVER_SCRIPT, tls ? "--tls" : NULL, (char *)scratch_dir(), NULL};
    spawn(argv, fds[1]);
    close(fds[1]);
    char line[64] = "";
    size_t len = 0;
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    while (len < sizeof line - 1 && !strchr(line, '\n')) {
        cr_assert_gt(poll(&p, 1, 30000), 0, "the test server did not start in 30 s");
        ssize_t n = read(fds[0], line + len, sizeof line - 1 - len);
        cr_assert_gt(n, 0, "the test server exited before printing its port");
        len += (size_t)n;
        line[len] = '\0';
    }
    close(fds[0]);
    int port = 0;
    cr_assert_eq(sscanf(line, "PORT %d", &port), 1, "server said: %s", line);
    return port;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t alen = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &alen);
    close(fd);
    return ntohs(addr.sin_port);
}

static bool port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close(fd);
    return ok;
}

static char proxy_log[256];

/* Starts tinyproxy in the foreground on a free loopback port; returns the port. Its log
 * (LogLevel Info: one "Request" line per proxied request) is proxy_log. */
static int tinyproxy_start(void)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = free_port();
        cleanup_free char *conf = xasprintf("%s/tinyproxy-%d.conf", scratch_dir(), port);
        snprintf(proxy_log, sizeof proxy_log, "%s/tinyproxy-%d.log", scratch_dir(), port);
        FILE *f = fopen(conf, "w");
        cr_assert_not_null(f);
        fprintf(f,
                "Port %d\nListen 127.0.0.1\nTimeout 60\nLogFile \"%s\"\nLogLevel Info\n"
                "MaxClients 50\nAllow 127.0.0.1\nViaProxyName \"harrier-test-proxy\"\n",
                port, proxy_log);
        fclose(f);
        char *argv[] = {"/usr/bin/tinyproxy", "-d", "-c", conf, NULL};
        pid_t pid = spawn(argv, -1);
        for (int i = 0; i < 300; i++) {
            if (port_accepts(port))
                return port;
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                child_count--; /* lost the port to someone else: try another */
                break;
            }
            usleep(100 * 1000);
        }
    }
    cr_assert_fail("tinyproxy did not start");
    return 0;
}

static size_t proxy_log_count(const char *needle)
{
    FILE *f = fopen(proxy_log, "r");
    if (!f)
        return 0;
    char line[1024];
    size_t n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

// cppcheck-suppress unknownMacro
TestSuite(http, .fini = stop_children, .timeout = 60);

/* ---- running requests on a loop ------------------------------------------------------ */

struct result {
    bool done;
    struct http_response resp;
    struct error err;
    bool failed;
    uint64_t started_ns, done_ns;
    /* streaming */
    int data_calls;
    size_t bytes_at_first_call;
    uint64_t first_data_ns;
    struct buf streamed;
};

static void on_done(struct http_response *resp, const struct error *err, void *user)
{
    struct result *r = user;
    r->done = true;
    r->done_ns = uv_hrtime();
    http_response_move(&r->resp, resp);
    if (err) {
        r->failed = true;
        r->err = *err;
    }
}

static int on_data(const struct http_response *resp, const void *bytes, size_t len, void *user)
{
    struct result *r = user;
    cr_assert_eq(resp->status, 200, "the status is known before the body");
    if (r->data_calls++ == 0) {
        r->first_data_ns = uv_hrtime();
        r->bytes_at_first_call = len;
    }
    buf_append(&r->streamed, bytes, len);
    return 0;
}

struct env {
    uv_loop_t loop;
    struct http_client *client;
};

static void env_init(struct env *e)
{
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    e->client = http_client_new(&e->loop);
}

/* Frees the client and checks that every handle of it closed. */
static void env_fini(struct env *e)
{
    http_client_free(e->client);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&e->loop), 0, "a handle was left open");
}

static void run_until_done(struct env *e, struct result *r)
{
    while (!r->done)
        uv_run(&e->loop, UV_RUN_ONCE);
}

static void result_free(struct result *r)
{
    http_response_free(&r->resp);
    buf_free(&r->streamed);
}

static struct http_request *start(struct env *e, struct http_request_options *o, struct result *r)
{
    o->on_done = on_done;
    o->user = r;
    r->started_ns = uv_hrtime();
    struct error err = {0};
    struct http_request *req = http_request_start(e->client, o, &err);
    cr_assert_not_null(req, "%s", err.message);
    return req;
}

/* One request on a fresh client, run to the end. */
static void fetch(struct http_request_options *o, struct result *r)
{
    struct env e;
    env_init(&e);
    start(&e, o, r);
    run_until_done(&e, r);
    env_fini(&e);
}

static double elapsed_ms(const struct result *r)
{
    return (double)(r->done_ns - r->started_ns) / 1e6;
}

static char *url(int port, const char *path)
{
    return xasprintf("http://127.0.0.1:%d%s", port, path);
}

static json_t *body_json(const struct result *r)
{
    struct error err = {0};
    json_t *j = json_load_text(r->resp.body.data, r->resp.body.len, "response", &err);
    cr_assert_not_null(j, "%s: %s", err.message, buf_cstr(&r->resp.body));
    return j;
}

/* ---- plain requests ------------------------------------------------------------------- */

Test(http, get_collects_body_and_headers)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/hello?token=secret");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u}, &r);
    cr_assert_not(r.failed, "%s", r.err.message);
    cr_assert_eq(r.resp.status, 200);
    cr_assert_str_eq(buf_cstr(&r.resp.body), "hello\n");
    cr_assert_str_eq(http_response_header(&r.resp, "x-TEST"), "yes");
    cr_assert_str_eq(http_response_header(&r.resp, "content-length"), "6");
    cr_assert_null(http_response_header(&r.resp, "X-Absent"));
    cr_assert_eq(r.resp.tries, 1);
    cr_assert_not(r.resp.via_proxy);
    cr_assert_null(strstr(r.resp.url, "secret"), "the query is kept out of messages");
    result_free(&r);
}

Test(http, sends_method_headers_and_memory_body)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/echo");
    const char *headers[] = {"Authorization: Bearer abc", "X-Custom: 1", NULL};
    struct result r = {0};
    fetch(
        &(struct http_request_options){
            .method = "PATCH", .url = u, .headers = headers, .body = "{\"a\":1}", .body_len = 7},
        &r);
    cr_assert_not(r.failed, "%s", r.err.message);
    json_t *j = body_json(&r);
    cr_assert_str_eq(json_get_string(j, "method"), "PATCH");
    cr_assert_str_eq(json_get_string(json_get(j, "headers"), "authorization"), "Bearer abc");
    cr_assert_str_eq(json_get_string(json_get(j, "headers"), "user-agent"), "harrier");
    json_int_t len = json_integer_value(json_get(j, "body_len"));
    cr_assert_eq(len, 7);
    json_decref(j);
    result_free(&r);
}

Test(http, streams_a_slow_body_in_pieces)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/slow?chunks=5&delay=0.5");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u, .on_data = on_data, .data_user = &r}, &r);
    cr_assert_not(r.failed, "%s", r.err.message);
    cr_assert_str_eq(buf_cstr(&r.streamed), "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    cr_assert_eq(r.resp.body.len, 0, "a streamed body is not also collected");
    cr_assert_geq(r.data_calls, 3, "the body came in %d pieces", r.data_calls);
    cr_assert_lt(r.bytes_at_first_call, r.streamed.len);
    /* the server needs 2 s for the last four lines: the first came well before the end */
    double ahead_ms = (double)(r.done_ns - r.first_data_ns) / 1e6;
    cr_assert_gt(ahead_ms, 1000, "first piece only %.0f ms before the end", ahead_ms);
    result_free(&r);
}

static int stop_after_first(const struct http_response *resp, const void *bytes, size_t len,
                            void *user)
{
    (void)resp, (void)bytes, (void)len, (void)user;
    return -EPIPE;
}

Test(http, a_receiver_can_stop_the_body)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/slow?chunks=5&delay=1");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u, .on_data = stop_after_first}, &r);
    cr_assert(r.failed);
    cr_assert_eq(r.err.code, -EPIPE);
    cr_assert_lt(elapsed_ms(&r), 3000, "stopped at once, not after the 4 s body");
    result_free(&r);
}

Test(http, dropped_connection_is_a_clear_error)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/drop");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u}, &r);
    cr_assert(r.failed);
    cr_assert_eq(r.err.code, -ECONNRESET, "code %d: %s", r.err.code, r.err.message);
    cr_assert_str_eq(r.err.where, u);
    cr_assert_not_null(strstr(r.err.message, "GET failed: the connection closed before"), "%s",
                       r.err.message);
    char formatted[2048];
    error_format(&r.err, formatted, sizeof formatted);
    cr_assert_not_null(strstr(formatted, "/drop"), "the error names the URL: %s", formatted);
    result_free(&r);
}

Test(http, dropped_connection_is_retried_while_nothing_was_delivered)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/drop");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u, .retries = 2, .retry_delay_ms = 50}, &r);
    cr_assert(r.failed);
    cr_assert_eq(r.resp.tries, 3);
    cr_assert_not_null(strstr(r.err.message, "after 3 tries"), "%s", r.err.message);
    result_free(&r);

    /* once bytes went to on_data, a new try would repeat them: no retry */
    struct result s = {0};
    fetch(
        &(struct http_request_options){
            .url = u, .retries = 2, .retry_delay_ms = 50, .on_data = on_data, .data_user = &s},
        &s);
    cr_assert(s.failed);
    cr_assert_eq(s.resp.tries, 1);
    cr_assert_eq(s.streamed.len, 1000);
    result_free(&s);
}

/* ---- retries ---------------------------------------------------------------------------- */

static json_t *server_hits(int port, const char *key)
{
    cleanup_free char *u = xasprintf("http://127.0.0.1:%d/hits?key=%s", port, key);
    struct http_response resp;
    struct error err = {0};
    cr_assert_eq(http_request_sync(&(struct http_request_options){.url = u}, &resp, &err), 0, "%s",
                 err.message);
    json_t *j = json_load_text(resp.body.data, resp.body.len, "hits", &err);
    cr_assert_not_null(j);
    http_response_free(&resp);
    return j;
}

Test(http, retries_500_then_200_after_a_backoff)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/flaky?key=a&fail=1&code=500");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u, .retries = 3, .retry_delay_ms = 400}, &r);
    cr_assert_not(r.failed, "%s", r.err.message);
    cr_assert_eq(r.resp.status, 200);
    cr_assert_eq(r.resp.tries, 2);
    cr_assert_geq(elapsed_ms(&r), 400, "the backoff was waited (%.0f ms)", elapsed_ms(&r));
    json_t *hits = server_hits(port, "a");
    cr_assert_eq(json_integer_value(json_get(hits, "count")), 2);
    json_t *times = json_get(hits, "times");
    double gap =
        json_real_value(json_array_get(times, 1)) - json_real_value(json_array_get(times, 0));
    cr_assert_geq(gap, 0.39, "the server saw the second try %.3f s after the first", gap);
    json_decref(hits);
    result_free(&r);
}

Test(http, gives_up_after_the_configured_tries)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/flaky?key=b&fail=10&code=503");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u, .retries = 2, .retry_delay_ms = 50}, &r);
    cr_assert_not(r.failed, "a 503 is a response: %s", r.err.message);
    cr_assert_eq(r.resp.status, 503);
    cr_assert_eq(r.resp.tries, 3);
    cr_assert_str_eq(buf_cstr(&r.resp.body), "failure 3", "the last response is kept");
    struct error err = {0};
    cr_assert_lt(http_response_check(&r.resp, "GET", &err), 0);
    cr_assert_not_null(strstr(err.message, "HTTP 503: failure 3"), "%s", err.message);
    result_free(&r);
}

Test(http, post_is_retried_only_when_marked_idempotent)
{
    int port = server_start(false);
    cleanup_free char *u1 = url(port, "/flaky?key=c&fail=1");
    struct result r = {0};
    fetch(&(struct http_request_options){.method = "POST",
                                         .url = u1,
                                         .body = "x",
                                         .body_len = 1,
                                         .retries = 3,
                                         .retry_delay_ms = 50},
          &r);
    cr_assert_eq(r.resp.status, 500);
    cr_assert_eq(r.resp.tries, 1);
    result_free(&r);

    cleanup_free char *u2 = url(port, "/flaky?key=d&fail=1");
    struct result s = {0};
    fetch(&(struct http_request_options){.method = "POST",
                                         .url = u2,
                                         .body = "xyz",
                                         .body_len = 3,
                                         .retries = 3,
                                         .retry_delay_ms = 50,
                                         .idempotent = true},
          &s);
    cr_assert_eq(s.resp.status, 200);
    cr_assert_eq(s.resp.tries, 2);
    json_t *j = body_json(&s);
    cr_assert_eq(json_integer_value(json_get(j, "body_len")), 3, "the body was sent again");
    json_decref(j);
    result_free(&s);
}

Test(http, honours_retry_after)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/retry-after?key=e");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u, .retries = 1, .retry_delay_ms = 10}, &r);
    cr_assert_eq(r.resp.status, 200);
    cr_assert_eq(r.resp.tries, 2);
    cr_assert_geq(elapsed_ms(&r), 990, "Retry-After: 1 was waited (%.0f ms)", elapsed_ms(&r));
    result_free(&r);
}

Test(http, connection_refused_is_retried_then_reported)
{
    int port = free_port(); /* nothing listens there */
    cleanup_free char *u = url(port, "/x");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u, .retries = 2, .retry_delay_ms = 20}, &r);
    cr_assert(r.failed);
    cr_assert_eq(r.err.code, -ECONNREFUSED, "%d %s", r.err.code, r.err.message);
    cr_assert_eq(r.resp.tries, 3);
    cr_assert_eq(r.resp.status, 0);
    result_free(&r);
}

/* ---- timeouts and cancellation --------------------------------------------------------- */

Test(http, total_timeout)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/sleep?s=30");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u, .timeout_ms = 500, .retries = 2}, &r);
    cr_assert(r.failed);
    cr_assert_eq(r.err.code, -ETIMEDOUT);
    cr_assert_not_null(strstr(r.err.message, "timed out"), "%s", r.err.message);
    cr_assert_eq(r.resp.tries, 1, "the whole-try timeout is not retried");
    cr_assert_lt(elapsed_ms(&r), 15000);
    result_free(&r);
}

Test(http, idle_timeout_ends_a_stalled_body)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/slow?chunks=2&delay=30");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u,
                                         .idle_timeout_ms = 700,
                                         .retries = 1,
                                         .retry_delay_ms = 50,
                                         .on_data = on_data,
                                         .data_user = &r},
          &r);
    cr_assert(r.failed);
    cr_assert_eq(r.err.code, -ETIMEDOUT, "%s", r.err.message);
    cr_assert_not_null(strstr(r.err.message, "no data moved for 700 ms"), "%s", r.err.message);
    cr_assert_eq(r.resp.tries, 1, "the first line went to on_data: no retry");
    cr_assert_str_eq(buf_cstr(&r.streamed), "chunk 0\n");
    cr_assert_lt(elapsed_ms(&r), 20000);
    result_free(&r);

    /* collected, so the stalled try is retried, and stalls again */
    struct result s = {0};
    fetch(
        &(struct http_request_options){
            .url = u, .idle_timeout_ms = 700, .retries = 1, .retry_delay_ms = 50},
        &s);
    cr_assert_eq(s.err.code, -ETIMEDOUT, "%s", s.err.message);
    cr_assert_eq(s.resp.tries, 2);
    result_free(&s);

    /* a body that keeps moving is not idle, even though it takes longer than the timeout */
    cleanup_free char *moving = url(port, "/slow?chunks=5&delay=0.4");
    struct result m = {0};
    fetch(&(struct http_request_options){.url = moving, .idle_timeout_ms = 1200}, &m);
    cr_assert_not(m.failed, "%s", m.err.message);
    cr_assert_eq(m.resp.body.len, 40);
    result_free(&m);
    result_free(&r);
}

static void cancel_later(uv_timer_t *timer)
{
    http_request_cancel(timer->data);
}

Test(http, cancel_in_flight)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/sleep?s=30");
    struct env e;
    env_init(&e);
    struct result r = {0};
    struct http_request *req = start(&e, &(struct http_request_options){.url = u}, &r);
    uv_timer_t timer;
    uv_timer_init(&e.loop, &timer);
    timer.data = req;
    uv_timer_start(&timer, cancel_later, 200, 0);
    run_until_done(&e, &r);
    cr_assert(r.failed);
    cr_assert_eq(r.err.code, -ECANCELED);
    cr_assert_lt(elapsed_ms(&r), 10000);
    uv_close((uv_handle_t *)&timer, NULL);
    env_fini(&e);
    result_free(&r);
}

Test(http, freeing_the_client_ends_its_requests)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/sleep?s=30");
    struct env e;
    env_init(&e);
    struct result r[3] = {0};
    for (int i = 0; i < 3; i++)
        start(&e, &(struct http_request_options){.url = u}, &r[i]);
    for (int i = 0; i < 20; i++)
        uv_run(&e.loop, UV_RUN_NOWAIT);
    env_fini(&e);
    for (int i = 0; i < 3; i++) {
        cr_assert(r[i].done && r[i].failed);
        cr_assert_eq(r[i].err.code, -ECANCELED);
        result_free(&r[i]);
    }
}

Test(http, many_requests_share_one_loop)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/slow?chunks=3&delay=0.2");
    struct env e;
    env_init(&e);
    enum { N = 12 };
    struct result r[N] = {0};
    for (int i = 0; i < N; i++)
        start(&e, &(struct http_request_options){.url = u}, &r[i]);
    for (int i = 0; i < N; i++)
        run_until_done(&e, &r[i]);
    env_fini(&e);
    for (int i = 0; i < N; i++) {
        cr_assert_not(r[i].failed, "%s", r[i].err.message);
        cr_assert_str_eq(buf_cstr(&r[i].resp.body), "chunk 0\nchunk 1\nchunk 2\n");
        result_free(&r[i]);
    }
}

/* Each request starts the next from on_done, on connections the server closes: curl gets
 * the same fd numbers back at once, which only works if a removed socket's poll handle
 * was stopped before its close completed. */
struct chain {
    struct http_client *client;
    const char *url;
    int left, ok;
    bool done;
};

static void on_chain_done(struct http_response *resp, const struct error *err, void *user)
{
    struct chain *c = user;
    if (!err && resp->status == 200 && strcmp(buf_cstr(&resp->body), "bye\n") == 0)
        c->ok++;
    if (--c->left == 0) {
        c->done = true;
        return;
    }
    struct error e = {0};
    cr_assert_not_null(http_request_start(
        c->client,
        &(struct http_request_options){.url = c->url, .on_done = on_chain_done, .user = c}, &e));
}

Test(http, chained_requests_on_closed_connections)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/close");
    struct env e;
    env_init(&e);
    struct chain c = {.client = e.client, .url = u, .left = 40};
    struct error err = {0};
    cr_assert_not_null(http_request_start(
        e.client, &(struct http_request_options){.url = u, .on_done = on_chain_done, .user = &c},
        &err));
    while (!c.done)
        uv_run(&e.loop, UV_RUN_ONCE);
    env_fini(&e);
    cr_assert_eq(c.ok, 40);
}

/* on_done may free the client; the other request still in flight ends cancelled. */
struct freeing {
    struct http_client *client;
    struct result other;
    bool freed;
};

static void on_done_free_client(struct http_response *resp, const struct error *err, void *user)
{
    (void)resp, (void)err;
    struct freeing *f = user;
    http_client_free(f->client);
    f->freed = true;
}

Test(http, on_done_may_free_the_client)
{
    int port = server_start(false);
    cleanup_free char *quick = url(port, "/hello");
    cleanup_free char *slow = url(port, "/sleep?s=30");
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct freeing f = {.client = http_client_new(&loop)};
    struct error err = {0};
    cr_assert_not_null(http_request_start(
        f.client, &(struct http_request_options){.url = slow, .on_done = on_done, .user = &f.other},
        &err));
    cr_assert_not_null(http_request_start(
        f.client,
        &(struct http_request_options){.url = quick, .on_done = on_done_free_client, .user = &f},
        &err));
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(f.freed);
    cr_assert(f.other.done && f.other.failed);
    cr_assert_eq(f.other.err.code, -ECANCELED);
    cr_assert_eq(uv_loop_close(&loop), 0, "a handle was left open");
    result_free(&f.other);
}

/* ---- uploads ----------------------------------------------------------------------------- */

struct source {
    size_t total, sent;
    int rewinds;
    EVP_MD_CTX *sha;
};

/* A deterministic 1 MiB body, given out in odd-sized pieces. */
static ssize_t source_read(void *out, size_t cap, void *user)
{
    struct source *s = user;
    size_t n = s->total - s->sent;
    if (n > 7001)
        n = 7001;
    if (n > cap)
        n = cap;
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)out)[i] = (unsigned char)((s->sent + i) * 31 % 251);
    if (s->sha)
        EVP_DigestUpdate(s->sha, out, n);
    s->sent += n;
    return (ssize_t)n;
}

static int source_rewind(void *user)
{
    struct source *s = user;
    s->sent = 0;
    s->rewinds++;
    if (s->sha)
        EVP_DigestInit_ex(s->sha, EVP_sha256(), NULL);
    return 0;
}

static void sha_hex(EVP_MD_CTX *ctx, char out[65])
{
    unsigned char digest[32];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, digest, &len);
    for (unsigned i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", digest[i]);
}

Test(http, streamed_upload_of_unknown_size)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/echo");
    struct source src = {.total = 1 << 20, .sha = EVP_MD_CTX_new()};
    EVP_DigestInit_ex(src.sha, EVP_sha256(), NULL);
    struct result r = {0};
    fetch(&(struct http_request_options){.method = "PUT",
                                         .url = u,
                                         .body_read = source_read,
                                         .body_size = -1,
                                         .body_user = &src},
          &r);
    cr_assert_not(r.failed, "%s", r.err.message);
    json_t *j = body_json(&r);
    cr_assert_eq(json_integer_value(json_get(j, "body_len")), 1 << 20);
    cr_assert(json_is_true(json_get(j, "chunked")), "an unknown size is sent chunked");
    char hex[65];
    sha_hex(src.sha, hex);
    cr_assert_str_eq(json_get_string(j, "body_sha256"), hex);
    json_decref(j);
    EVP_MD_CTX_free(src.sha);
    result_free(&r);
}

Test(http, streamed_upload_is_replayed_on_retry)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/flaky?key=f&fail=1");
    struct source src = {.total = 300000};
    struct result r = {0};
    fetch(&(struct http_request_options){.method = "PUT",
                                         .url = u,
                                         .body_read = source_read,
                                         .body_rewind = source_rewind,
                                         .body_size = 300000,
                                         .body_user = &src,
                                         .retries = 2,
                                         .retry_delay_ms = 50},
          &r);
    cr_assert_eq(r.resp.status, 200, "%s", r.err.message);
    cr_assert_eq(r.resp.tries, 2);
    cr_assert_geq(src.rewinds, 1);
    json_t *j = body_json(&r);
    cr_assert_eq(json_integer_value(json_get(j, "body_len")), 300000);
    cr_assert(json_is_false(json_get(j, "chunked")));
    json_decref(j);
    result_free(&r);

    /* without a rewind callback the body cannot be sent twice: no retry */
    cleanup_free char *u2 = url(port, "/flaky?key=g&fail=1");
    struct source once = {.total = 1000};
    struct result s = {0};
    fetch(&(struct http_request_options){.method = "PUT",
                                         .url = u2,
                                         .body_read = source_read,
                                         .body_size = 1000,
                                         .body_user = &once,
                                         .retries = 2,
                                         .retry_delay_ms = 50},
          &s);
    cr_assert_eq(s.resp.status, 500);
    cr_assert_eq(s.resp.tries, 1);
    result_free(&s);
}

/* A body that is not ready at first: body_read pauses, a timer resumes. */
struct paused_source {
    struct http_request *req;
    int reads;
    bool ready;
};

static ssize_t paused_read(void *out, size_t cap, void *user)
{
    struct paused_source *p = user;
    p->reads++;
    if (!p->ready)
        return HTTP_READ_PAUSE;
    if (p->reads > 100)
        return 0;
    const char text[] = "late body";
    if (cap < sizeof text - 1)
        return -EINVAL;
    memcpy(out, text, sizeof text - 1);
    p->reads = 1000;
    return (ssize_t)(sizeof text - 1);
}

static void make_ready(uv_timer_t *timer)
{
    struct paused_source *p = timer->data;
    p->ready = true;
    http_request_resume(p->req);
}

Test(http, paused_body_resumes)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/echo");
    struct env e;
    env_init(&e);
    struct paused_source p = {0};
    struct result r = {0};
    p.req = start(
        &e,
        &(struct http_request_options){
            .method = "POST", .url = u, .body_read = paused_read, .body_size = 9, .body_user = &p},
        &r);
    uv_timer_t timer;
    uv_timer_init(&e.loop, &timer);
    timer.data = &p;
    uv_timer_start(&timer, make_ready, 300, 0);
    run_until_done(&e, &r);
    uv_close((uv_handle_t *)&timer, NULL);
    env_fini(&e);
    cr_assert_not(r.failed, "%s", r.err.message);
    json_t *j = body_json(&r);
    cr_assert_eq(json_integer_value(json_get(j, "body_len")), 9);
    json_decref(j);
    result_free(&r);
}

/* ---- misc ----------------------------------------------------------------------------------- */

Test(http, follows_redirects_unless_told_not_to)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/redirect");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u}, &r);
    cr_assert_eq(r.resp.status, 200);
    cr_assert_str_eq(buf_cstr(&r.resp.body), "hello\n");
    cr_assert(str_ends_with(r.resp.final_url, "/hello"), "%s", r.resp.final_url);
    result_free(&r);
    struct result s = {0};
    fetch(&(struct http_request_options){.url = u, .no_redirects = true}, &s);
    cr_assert_eq(s.resp.status, 302);
    cr_assert_str_eq(http_response_header(&s.resp, "Location"), "/hello");
    result_free(&s);
}

Test(http, response_check_names_status_and_url)
{
    int port = server_start(false);
    cleanup_free char *u = url(port, "/status?code=404");
    struct http_response resp;
    struct error err = {0};
    cr_assert_eq(http_request_sync(&(struct http_request_options){.url = u}, &resp, &err), 0);
    cr_assert_eq(resp.status, 404);
    cr_assert_eq(http_response_check(&resp, "GET", &err), -ENOENT);
    cr_assert_not_null(strstr(err.message, "GET returned HTTP 404: status 404"), "%s", err.message);
    cr_assert(str_ends_with(err.where, "/status"), "%s", err.where);
    http_response_free(&resp);
}

Test(http, sync_request_reports_failure_with_url)
{
    cleanup_free char *u = url(free_port(), "/nothing");
    struct http_response resp;
    struct error err = {0};
    int rc = http_request_sync(&(struct http_request_options){.url = u}, &resp, &err);
    cr_assert_eq(rc, -ECONNREFUSED);
    cr_assert_str_eq(err.where, u);
    cr_assert_eq(resp.status, 0);
}

Test(http, bad_urls_are_refused_at_start)
{
    struct env e;
    env_init(&e);
    struct error err = {0};
    cr_assert_null(
        http_request_start(e.client, &(struct http_request_options){.url = "ftp://x/"}, &err));
    cr_assert_eq(err.code, -EINVAL);
    cr_assert_str_eq(err.where, "ftp://x/");
    cr_assert_null(
        http_request_start(e.client, &(struct http_request_options){.url = "http://"}, &err));
    env_fini(&e);
}

/* ---- TLS ------------------------------------------------------------------------------------ */

Test(http, tls_with_a_ca_file)
{
    int port = server_start(true);
    cleanup_free char *u = xasprintf("https://127.0.0.1:%d/hello", port);
    cleanup_free char *ca = xasprintf("%s/ca.pem", scratch_dir());

    struct result r = {0};
    fetch(&(struct http_request_options){.url = u}, &r);
    cr_assert(r.failed, "a self-signed server is refused without its CA");
    cr_assert_eq(r.err.code, -EPROTO, "%d %s", r.err.code, r.err.message);
    cr_assert_not_null(strstr(r.err.message, "CA file"), "%s", r.err.message);
    result_free(&r);

    struct env e;
    env_init(&e);
    http_client_set_ca_file(e.client, ca);
    struct result s = {0};
    start(&e, &(struct http_request_options){.url = u}, &s);
    run_until_done(&e, &s);
    env_fini(&e);
    cr_assert_not(s.failed, "%s", s.err.message);
    cr_assert_str_eq(buf_cstr(&s.resp.body), "hello\n");
    result_free(&s);

    setenv("GITHUB_ACTIONS_RUNNER_TLS_NO_VERIFY", "1", 1);
    struct result t = {0};
    fetch(&(struct http_request_options){.url = u}, &t);
    cr_assert_not(t.failed, "%s", t.err.message);
    result_free(&t);
}

/* ---- proxies: the decision, then a real proxy ---------------------------------------------- */

static void expect_proxy(const struct http_proxy *p, const char *u, const char *want)
{
    cleanup_free char *got = http_proxy_for_url(p, u);
    if (want)
        cr_assert(got && strcmp(got, want) == 0, "%s: got %s, want %s", u, got ? got : "direct",
                  want);
    else
        cr_assert_null(got, "%s: got %s, want direct", u, got);
}

Test(http, proxy_rules_follow_the_official_runner)
{
    struct http_proxy *p =
        http_proxy_new(" http://proxy:3128 ", "secure-proxy:8443",
                       "example.com, .internal.net,git.corp:8080,10.1.2.3,  ,localhost:9");
    expect_proxy(p, "http://github.com/", "http://proxy:3128");
    expect_proxy(p, "https://github.com/", "http://secure-proxy:8443");
    /* host entries match the host and its subdomains, ignoring case */
    expect_proxy(p, "https://example.com/x", NULL);
    expect_proxy(p, "https://API.Example.COM/x", NULL);
    expect_proxy(p, "https://notexample.com/", "http://secure-proxy:8443");
    /* a leading dot: subdomains only */
    expect_proxy(p, "http://a.internal.net/", NULL);
    expect_proxy(p, "http://internal.net/", "http://proxy:3128");
    /* ports must match when given; default ports count */
    expect_proxy(p, "http://git.corp:8080/", NULL);
    expect_proxy(p, "http://git.corp/", "http://proxy:3128");
    /* IP addresses in no_proxy are ignored, as the official runner ignores them */
    expect_proxy(p, "http://10.1.2.3/", "http://proxy:3128");
    /* loopback always goes direct */
    expect_proxy(p, "http://127.0.0.1:8080/", NULL);
    expect_proxy(p, "http://127.5.5.5/", NULL);
    expect_proxy(p, "http://LOCALHOST/", NULL);
    expect_proxy(p, "http://[::1]:80/", NULL);
    http_proxy_free(p);

    /* only an https proxy: http:// goes direct */
    p = http_proxy_new(NULL, "http://p:1", NULL);
    expect_proxy(p, "http://github.com/", NULL);
    expect_proxy(p, "https://github.com/", "http://p:1");
    http_proxy_free(p);

    p = http_proxy_new("http://p:1", "http://p:1", "foo.com,*");
    expect_proxy(p, "https://github.com/", NULL);
    http_proxy_free(p);
    p = http_proxy_new("http://p:1", NULL, ".com:443");
    expect_proxy(p, "http://github.com/", "http://p:1");
    http_proxy_free(p);
}

Test(http, proxy_env_lower_case_wins)
{
    setenv("HTTPS_PROXY", "http://upper:1", 1);
    setenv("https_proxy", "http://lower:2", 1);
    setenv("HTTP_PROXY", "http://upper-only:3", 1);
    unsetenv("http_proxy");
    setenv("NO_PROXY", "upper.example", 1);
    setenv("no_proxy", "lower.example", 1);
    struct http_proxy *p = http_proxy_from_env();
    expect_proxy(p, "https://github.com/", "http://lower:2");
    expect_proxy(p, "http://github.com/", "http://upper-only:3");
    expect_proxy(p, "https://lower.example/", NULL);
    expect_proxy(p, "https://upper.example/", "http://lower:2");
    http_proxy_free(p);
    setenv("https_proxy", "", 1); /* empty counts as unset */
    p = http_proxy_from_env();
    expect_proxy(p, "https://github.com/", "http://upper:1");
    http_proxy_free(p);
}

static json_t *echo_through(const char *u, struct result *r)
{
    fetch(&(struct http_request_options){.url = u}, r);
    cr_assert_not(r->failed, "%s", r->err.message);
    cr_assert_eq(r->resp.status, 200);
    return body_json(r);
}

static const char *via_header(json_t *echo)
{
    return json_get_string(json_get(echo, "headers"), "via");
}

Test(http, tinyproxy_carries_requests_unless_no_proxy_says_otherwise)
{
    int port = server_start(false);
    int proxy_port = tinyproxy_start();
    cleanup_free char *proxy = xasprintf("127.0.0.1:%d", proxy_port); /* no scheme: http:// */
    setenv("HARRIER_TEST_PROXY_LOOPBACK", "1", 1);
    setenv("http_proxy", proxy, 1);
    setenv("HTTP_PROXY", "http://127.0.0.1:1", 1); /* nothing there: lower case must win */
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");

    cleanup_free char *u = url(port, "/echo");
    struct result r = {0};
    json_t *j = echo_through(u, &r);
    cr_assert(r.resp.via_proxy);
    cr_assert_not_null(via_header(j), "tinyproxy adds Via");
    cr_assert_not_null(strstr(via_header(j), "harrier-test-proxy"), "%s", via_header(j));
    cleanup_free char *line = xasprintf("GET http://127.0.0.1:%d/echo", port);
    cr_assert_eq(proxy_log_count(line), 1, "tinyproxy logged the request");
    json_decref(j);
    result_free(&r);

    /* no_proxy naming the host: direct */
    setenv("no_proxy", "example.com,localhost", 1);
    cleanup_free char *local = xasprintf("http://localhost:%d/echo", port);
    struct result s = {0};
    j = echo_through(local, &s);
    cr_assert_not(s.resp.via_proxy);
    cr_assert_null(via_header(j), "went direct, yet: %s", via_header(j));
    cleanup_free char *local_line = xasprintf("GET http://localhost:%d/echo", port);
    cr_assert_eq(proxy_log_count(local_line), 0);
    json_decref(j);
    result_free(&s);

    /* the entry's port differs: through the proxy again */
    cleanup_free char *other_port = xasprintf("localhost:%d", port + 1);
    setenv("no_proxy", other_port, 1);
    struct result t = {0};
    j = echo_through(local, &t);
    cr_assert_not_null(via_header(j));
    cr_assert_eq(proxy_log_count(local_line), 1);
    json_decref(j);
    result_free(&t);

    /* `*`: everything direct */
    setenv("no_proxy", "*", 1);
    struct result w = {0};
    j = echo_through(u, &w);
    cr_assert_null(via_header(j));
    cr_assert_eq(proxy_log_count(line), 1);
    json_decref(j);
    result_free(&w);
}

Test(http, loopback_bypasses_the_proxy)
{
    int port = server_start(false);
    int proxy_port = tinyproxy_start();
    cleanup_free char *proxy = xasprintf("http://127.0.0.1:%d", proxy_port);
    unsetenv("HARRIER_TEST_PROXY_LOOPBACK");
    setenv("http_proxy", proxy, 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    cleanup_free char *u = url(port, "/echo");
    struct result r = {0};
    json_t *j = echo_through(u, &r);
    cr_assert_null(via_header(j), "loopback went through the proxy");
    cr_assert_eq(proxy_log_count("Request"), 0);
    json_decref(j);
    result_free(&r);
}

Test(http, https_through_tinyproxy_connect)
{
    int port = server_start(true);
    int proxy_port = tinyproxy_start();
    cleanup_free char *proxy = xasprintf("http://127.0.0.1:%d", proxy_port);
    setenv("HARRIER_TEST_PROXY_LOOPBACK", "1", 1);
    setenv("https_proxy", proxy, 1);
    unsetenv("http_proxy");
    unsetenv("no_proxy");
    cleanup_free char *u = xasprintf("https://127.0.0.1:%d/hello", port);
    cleanup_free char *ca = xasprintf("%s/ca.pem", scratch_dir());
    struct env e;
    env_init(&e);
    http_client_set_ca_file(e.client, ca);
    struct result r = {0};
    start(&e, &(struct http_request_options){.url = u}, &r);
    run_until_done(&e, &r);
    env_fini(&e);
    cr_assert_not(r.failed, "%s", r.err.message);
    cr_assert_str_eq(buf_cstr(&r.resp.body), "hello\n");
    cr_assert(r.resp.via_proxy);
    cleanup_free char *line = xasprintf("CONNECT 127.0.0.1:%d", port);
    cr_assert_eq(proxy_log_count(line), 1, "tinyproxy logged the tunnel");
    result_free(&r);
}

Test(http, a_dead_proxy_is_named_in_the_error)
{
    int dead = free_port();
    cleanup_free char *proxy = xasprintf("http://user:pw@127.0.0.1:%d", dead);
    setenv("HARRIER_TEST_PROXY_LOOPBACK", "1", 1);
    setenv("http_proxy", proxy, 1);
    cleanup_free char *u = url(free_port(), "/x");
    struct result r = {0};
    fetch(&(struct http_request_options){.url = u}, &r);
    cr_assert(r.failed);
    cleanup_free char *shown = xasprintf("through proxy http://127.0.0.1:%d", dead);
    cr_assert_not_null(strstr(r.err.message, shown), "%s", r.err.message);
    cr_assert_null(strstr(r.err.message, "pw"), "proxy credentials stay out of messages");
    result_free(&r);
}
