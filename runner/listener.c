/* `harrier run`: session, long-poll, dispatch, lock renewal, and the worker's events sent to
 * the service as timeline records, console lines, logs and the job's completion. */
#include "runner/listener.h"

#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/path.h"
#include "protocol/runner_key.h"
#include "protocol/runner_service.h"
#include "runner/cli.h"
#include "runner/config_store.h"
#include "runner/dotenv.h"
#include "runner/events.h"
#include "runner/worker_process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define EMPTY_GUID "00000000-0000-0000-0000-000000000000"

/* HARRIER_TEST_TIMER_SCALE (test-only, read only when set) shrinks the protocol's timers:
 * 0.01 turns the 60 s lock renewal into 0.6 s. */
static double timer_scale = 1.0;

static uint64_t scaled(double ms)
{
    double v = ms * timer_scale;
    return v < 1 ? 1 : (uint64_t)v;
}

static double random_between(double lo, double hi)
{
    return lo + (hi - lo) * ((double)random() / (double)RAND_MAX);
}

static char *now_iso(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char text[64];
    size_t n = strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(text + n, sizeof text - n, ".%07ldZ", ts.tv_nsec / 100);
    return xstrdup(text);
}

/* --- the job ------------------------------------------------------------------------------ */

struct record {
    char *id;
    char *name;
    int order; /* 0 for the job record */
    const char *state, *result;
    char *start, *finish;
    json_t *log;     /* the TaskLog once created */
    bool log_failed; /* it could not be created: its pages are dropped */
    json_t *issues;  /* array */
    int errors, warnings, notices;
    struct buf text; /* the log, timestamped lines */
    json_t *feed;    /* live lines not yet sent */
    int lines;       /* lines so far */
    int feed_start;  /* line number of feed[0] */
    bool dirty;
};

/* OP_LOG_PAGE appends one page of a record's log to its TaskLog, created first (OP_LOG_CREATE)
 * when the record has none yet: one log per record, as §7.6 recommends. */
enum op_kind { OP_RECORDS, OP_FEED, OP_LOG_CREATE, OP_LOG_PAGE, OP_SUMMARY, OP_COMPLETE };

/* A log page is uploaded when it reaches 8 MiB, as the official runner rolls its log files
 * over, or when its step ends: a long step's log reaches the service as it grows, and the
 * listener never holds more than a page per record. */
#define LOG_PAGE_BYTES (8u << 20)

struct op {
    enum op_kind kind;
    int tries;
    size_t record;
    char *text; /* summary markdown, feed JSON, or a log page */
    size_t len; /* of a log page */
    struct op *next;
};

struct listener;

struct job {
    struct slot *sl;
    json_t *message;
    int64_t request_id, message_id;
    char *job_id, *plan_id, *scope, *hub, *timeline_id, *orch_id;
    int plan_version;
    struct vss_conn *conn; /* job base URL, job token */
    bool connected;

    uv_timer_t renew_timer;
    bool renewed, renewing, renew_done;
    int renew_failures;
    time_t renew_deadline;

    uv_timer_t flush_timer, kill_timer, retry_timer;
    int flush_ticks;
    size_t setup_record; /* "Set up job" */
    int steps_started;
    json_t *tail;    /* job lines after the first step, for "Complete job" */
    bool op_waiting; /* a failed upload waits for its retry */
    char *message_path;
    struct worker_process *worker; /* NULL once it is done */
    bool started_worker, cancelled, finishing;

    struct record *records; /* [0] is the job record */
    size_t record_count;
    size_t *step_record; /* worker step number → record index */
    size_t step_cap;

    struct op *ops, **ops_tail;
    bool op_running;
    bool reported;
    const char *result;
    json_t *outputs;
    int handles_open;
};

/* One registration (--slots N: N of them in one process): its session, long-poll and job. */
struct slot {
    struct listener *p;
    int index;  /* 1-based */
    char *dir;  /* its .runner, .credentials, .credentials_rsaparams */
    char *work; /* its jobs' work folder */
    struct runner_settings settings;
    struct runner_credentials credentials;
    struct runner_key *key;
    struct vss_conn *conn;

    char *session_id;
    uint8_t *session_key;
    size_t session_key_len;

    struct vss_call *poll, *session_call;
    int deleting;
    bool poll_after_delete;
    bool connected_once;
    double conflict_waited;
    bool poll_busy_status;
    int64_t last_message_id;
    int poll_errors;
    uint64_t poll_started;
    int empty_polls;
    uv_timer_t poll_timer;
    int connect_failures, session_failures;

    struct job *job;
    int jobs_taken;
    bool stopping, closed;
    int exit_code;
};

/* A line for the user on stderr; with several slots it names the slot's runner. */
static void slot_say(const struct slot *sl, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* The process: one loop, one HTTP client, one process tree for the workers, and the slots. */
struct listener {
    const struct listener_options *o;
    uv_loop_t loop;
    struct http_client *http;
    struct sandbox_job *procs;
    char *self_exe;
    char *actions_cache; /* shared by every slot's jobs */
    uv_signal_t sigint, sigterm;
    int signals;
    struct slot *slots;
    int slot_count;
    bool connected_once, closed;
};

static void slot_say(const struct slot *sl, const char *format, ...)
{
    if (sl->p->slot_count > 1)
        fprintf(stderr,
                "harrier run: %s: ", sl->settings.agent_name ? sl->settings.agent_name : "runner");
    else
        fputs("harrier run: ", stderr);
    va_list ap;
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
}

static void poll_start(struct slot *sl);
static void slot_stop(struct slot *sl, int code);
static void job_op_next(struct job *j);
static void job_done(struct job *j);

static const char *route_pool(struct slot *sl, char *buf, size_t size)
{
    snprintf(buf, size, "%lld", (long long)sl->settings.pool_id);
    return buf;
}

/* --- uploads: one request at a time per job, in order ---------------------------------- */

/* Puts op in the queue, first or last. */
static void job_op_link(struct job *j, struct op *op, bool front)
{
    if (front) {
        op->next = j->ops;
        j->ops = op;
        if (j->ops_tail == &j->ops)
            j->ops_tail = &op->next;
    } else {
        op->next = NULL;
        *j->ops_tail = op;
        j->ops_tail = &op->next;
    }
}

/* Queues an upload and starts the next one when none is out. len: a log page's bytes. */
static void job_op_queue(struct job *j, enum op_kind kind, size_t record, char *text, size_t len,
                         bool front)
{
    struct op *op = xcalloc(1, sizeof *op);
    op->kind = kind;
    op->record = record;
    op->text = text;
    op->len = len;
    job_op_link(j, op, front);
    job_op_next(j);
}

static void job_op_push(struct job *j, enum op_kind kind, size_t record, char *text, bool front)
{
    job_op_queue(j, kind, record, text, 0, front);
}

static json_t *record_json(struct job *j, struct record *r)
{
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:i, s:s}", "id", r->id, "type", r->order ? "Task" : "Job", "name",
        r->name, "state", r->state, "percentComplete", strcmp(r->state, "completed") == 0 ? 100 : 0,
        "workerName", j->sl->settings.agent_name ? j->sl->settings.agent_name : "");
    json_object_set_new(o, "parentId", r->order ? json_string(j->job_id) : json_null());
    json_object_set_new(o, "result", r->result ? json_string(r->result) : json_null());
    json_object_set_new(o, "startTime", r->start ? json_string(r->start) : json_null());
    json_object_set_new(o, "finishTime", r->finish ? json_string(r->finish) : json_null());
    json_object_set_new(o, "refName", json_string(r->name));
    if (r->order)
        json_object_set_new(o, "order", json_integer(r->order));
    else
        json_object_set_new(o, "agentPlatform", json_string("Linux"));
    json_object_set_new(o, "errorCount", json_integer(r->errors));
    json_object_set_new(o, "warningCount", json_integer(r->warnings));
    json_object_set_new(o, "noticeCount", json_integer(r->notices));
    if (json_array_size(r->issues))
        json_object_set(o, "issues", r->issues);
    json_object_set_new(o, "log", r->log ? json_incref(r->log) : json_null());
    return o;
}

static char *job_route_url(struct job *j, const char *guid, const char *record, const char *log,
                           const char *type, const char *name, const char *query, struct error *err)
{
    const char *route[] = {"scopeIdentifier",
                           j->scope,
                           "hubName",
                           j->hub,
                           "planId",
                           j->plan_id,
                           "timelineId",
                           j->timeline_id,
                           "recordId",
                           record,
                           "logId",
                           log,
                           "type",
                           type,
                           "name",
                           name,
                           NULL};
    return vss_conn_url(j->conn, guid, route, query, err);
}

static void on_op_done(struct http_response *resp, const struct error *err, void *user);

struct op_ctx {
    struct job *j;
    struct op *op;
};

static void job_maybe_free(struct job *j);

static void job_op_next(struct job *j)
{
    /* Nothing of the job goes to the service before its lock was renewed once (§7.1: the
     * official worker starts, and reports, only then). */
    if (j->op_running || j->op_waiting || !j->ops || !j->connected || !j->renewed)
        return;
    while (j->ops && j->ops->kind == OP_LOG_PAGE && j->records[j->ops->record].log_failed) {
        struct op *drop = j->ops;
        j->ops = drop->next;
        if (!j->ops)
            j->ops_tail = &j->ops;
        free(drop->text);
        free(drop);
    }
    if (!j->ops)
        return;
    if (j->ops->kind == OP_LOG_PAGE && !j->records[j->ops->record].log) {
        job_op_push(j, OP_LOG_CREATE, j->ops->record, NULL, true);
        return;
    }
    struct op *op = j->ops;
    j->ops = op->next;
    if (!j->ops)
        j->ops_tail = &j->ops;
    struct error err = {0};
    struct vss_call_options o = {.on_done = on_op_done, .timeout_ms = 30000};
    json_t *body = NULL;
    char *url = NULL;
    struct record *r = &j->records[op->record];
    char idbuf[32];
    switch (op->kind) {
    case OP_RECORDS: {
        json_t *list = json_array();
        for (size_t i = 0; i < j->record_count; i++)
            if (j->records[i].dirty) {
                json_array_append_new(list, record_json(j, &j->records[i]));
                j->records[i].dirty = false;
            }
        body = json_pack("{s:I, s:o}", "count", (json_int_t)json_array_size(list), "value", list);
        url = job_route_url(j, VSS_LOC_RECORDS, NULL, NULL, NULL, NULL, NULL, &err);
        o.method = "PATCH";
        break;
    }
    case OP_FEED: {
        json_t *lines = json_loads(op->text, 0, NULL);
        body = json_pack("{s:I, s:o, s:s, s:i}", "count", (json_int_t)json_array_size(lines),
                         "value", lines, "stepId", r->id, "startLine", r->feed_start);
        r->feed_start += (int)json_array_size(lines);
        url = job_route_url(j, VSS_LOC_FEED, j->job_id, NULL, NULL, NULL, NULL, &err);
        o.method = "POST";
        break;
    }
    case OP_LOG_CREATE: {
        cleanup_free char *path = xasprintf("logs\\%s", r->id);
        body =
            json_pack("{s:s, s:s, s:s, s:i, s:n}", "path", path, "createdOn", "0001-01-01T00:00:00",
                      "lastChangedOn", "0001-01-01T00:00:00", "id", 0, "location");
        url = job_route_url(j, VSS_LOC_LOGS, NULL, NULL, NULL, NULL, NULL, &err);
        o.method = "POST";
        break;
    }
    case OP_LOG_PAGE: {
        int64_t id = 0;
        json_get_int(r->log, "id", &id);
        snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
        url = job_route_url(j, VSS_LOC_LOGS, NULL, idbuf, NULL, NULL, NULL, &err);
        o.method = "POST";
        o.body = op->text ? op->text : "";
        o.body_len = op->len;
        o.content_type = "application/octet-stream";
        break;
    }
    case OP_SUMMARY:
        url = job_route_url(j, VSS_LOC_ATTACHMENTS, j->job_id, NULL, "Checks.Step.Summary", r->id,
                            NULL, &err);
        o.method = "PUT";
        o.body = op->text;
        o.body_len = strlen(op->text);
        o.content_type = "application/octet-stream";
        break;
    case OP_COMPLETE:
        if (j->plan_version >= 8) {
            body = json_pack("{s:s, s:s, s:I, s:s, s:o}", "name", "JobCompleted", "jobId",
                             j->job_id, "requestId", (json_int_t)j->request_id, "result", j->result,
                             "outputs", json_object());
            const char *k;
            json_t *v;
            json_object_foreach(j->outputs, k, v)
            {
                if (json_is_string(v) && *json_string_value(v))
                    json_object_set_new(json_get(body, "outputs"), k,
                                        json_pack("{s:O}", "value", v));
            }
            url = job_route_url(j, VSS_LOC_EVENTS, NULL, NULL, NULL, NULL, NULL, &err);
            o.method = "POST";
            o.retries = 4;
        } else {
            char pool[32], rid[32];
            snprintf(rid, sizeof rid, "%lld", (long long)j->request_id);
            const char *route[] = {"poolId", route_pool(j->sl, pool, sizeof pool), "requestId", rid,
                                   NULL};
            url = vss_conn_url(j->sl->conn, VSS_LOC_JOBREQUESTS, route, "lockToken=" EMPTY_GUID,
                               &err);
            cleanup_free char *finish = now_iso();
            body = json_pack("{s:I, s:s, s:s}", "requestId", (json_int_t)j->request_id,
                             "finishTime", finish, "result", j->result);
            o.method = "PATCH";
        }
        break;
    }
    o.url = url;
    o.json = body;
    struct op_ctx *ctx = xcalloc(1, sizeof *ctx);
    *ctx = (struct op_ctx){j, op};
    o.user = ctx;
    struct vss_conn *conn = op->kind == OP_COMPLETE && j->plan_version < 8 ? j->sl->conn : j->conn;
    j->op_running = true;
    if (!url || !vss_call_start(conn, &o, &err)) {
        log_warn("job upload: %s", err.message);
        j->op_running = false;
        free(ctx);
        bool complete = op->kind == OP_COMPLETE;
        free(op->text);
        free(op);
        if (complete) {
            json_decref(body);
            free(url);
            job_done(j);
            return;
        }
    }
    json_decref(body);
    free(url);
    if (!j->op_running)
        job_op_next(j);
}

static void job_done(struct job *j);

static void on_retry_timer(uv_timer_t *t)
{
    struct job *j = t->data;
    j->op_waiting = false;
    job_op_next(j);
}

static void on_op_done(struct http_response *resp, const struct error *err, void *user)
{
    struct op_ctx *ctx = user;
    struct job *j = ctx->j;
    struct op *op = ctx->op;
    free(ctx);
    j->op_running = false;
    bool ok = !err && resp && resp->status / 100 == 2;
    if (!ok)
        log_warn("job upload %d failed: %s", (int)op->kind,
                 err    ? err->message
                 : resp ? resp->body.data ? resp->body.data : ""
                        : "");
    if (op->kind == OP_LOG_CREATE && ok) {
        json_t *log = json_load_text(resp->body.data, resp->body.len, NULL, NULL);
        if (json_get(log, "id")) {
            json_decref(j->records[op->record].log);
            j->records[op->record].log = log;
            j->records[op->record].dirty = true;
        } else {
            json_decref(log);
            ok = false;
        }
    }
    if (!ok && op->kind == OP_RECORDS)
        for (size_t i = 0; i < j->record_count; i++)
            j->records[i].dirty = true; /* the whole state goes again */
    cleanup_free char *key = !err && resp ? vss_error_type_key(resp) : NULL;
    bool final = key && (strstr(key, "PlanNotFound") || strstr(key, "PlanSecurity") ||
                         strstr(key, "PlanTerminated"));
    /* Records, logs and the completion are retried: 5 tries, 5 s apart (§7.10). */
    if (!ok && !final && op->tries < 4 && op->kind != OP_FEED && op->kind != OP_SUMMARY) {
        op->tries++;
        job_op_link(j, op, true);
        j->op_waiting = true;
        uv_timer_start(&j->retry_timer, on_retry_timer, scaled(5000), 0);
        return;
    }
    if (!ok && op->kind == OP_LOG_CREATE)
        j->records[op->record].log_failed = true;
    bool complete = op->kind == OP_COMPLETE;
    free(op->text);
    free(op);
    if (complete) {
        job_done(j);
        return;
    }
    job_op_next(j);
}

/* --- records from the worker's events ---------------------------------------------------- */

static size_t record_add(struct job *j, const char *id, const char *name, int order)
{
    j->records = xrealloc(j->records, (j->record_count + 1) * sizeof *j->records);
    struct record *r = &j->records[j->record_count];
    memset(r, 0, sizeof *r);
    r->id = id ? xstrdup(id) : codec_uuid4();
    r->name = xstrdup(name ? name : "");
    r->order = order;
    r->state = "pending";
    r->issues = json_array();
    r->feed = json_array();
    r->feed_start = 1;
    r->dirty = true;
    return j->record_count++;
}

/* The record's log so far goes out as a page (an empty one too: every step gets a log). */
static void record_page(struct job *j, size_t index)
{
    struct record *r = &j->records[index];
    size_t len = r->text.len;
    char *bytes = buf_steal(&r->text);
    job_op_queue(j, OP_LOG_PAGE, index, bytes ? bytes : xstrdup(""), len, false);
}

/* The official log line's time: seven decimals, as .NET's "o" format writes them (§7.6). */
static char *log_time(const char *when)
{
    const char *dot = when ? strchr(when, '.') : NULL;
    if (!dot)
        return now_iso();
    size_t digits = strspn(dot + 1, "0123456789");
    return xasprintf("%.*s.%.*s%.*sZ", (int)(dot - when), when, (int)(digits > 7 ? 7 : digits),
                     dot + 1, (int)(digits < 7 ? 7 - digits : 0), "0000000");
}

/* A line of the record's log, timestamped when the worker wrote it (now when unknown). */
static void record_line(struct job *j, size_t index, const char *line, const char *at)
{
    struct record *r = &j->records[index];
    cleanup_free char *when = log_time(at);
    buf_printf(&r->text, "%s %s\n", when, line);
    if (r->text.len >= LOG_PAGE_BYTES)
        record_page(j, index);
    if (index != 0) {
        buf_printf(&j->records[0].text, "%s %s\n", when, line);
        if (j->records[0].text.len >= LOG_PAGE_BYTES)
            record_page(j, 0);
    }
    r->lines++;
    if (json_array_size(r->feed) < 1024) {
        size_t len = strlen(line);
        if (len > 1024) {
            cleanup_free char *cut = xasprintf("%.1024s...", line);
            json_array_append_new(r->feed, json_string(cut));
        } else {
            json_array_append_new(r->feed, json_string(line));
        }
    }
}

static void flush_feed(struct job *j)
{
    for (size_t i = 0; i < j->record_count; i++) {
        struct record *r = &j->records[i];
        while (json_array_size(r->feed)) {
            json_t *chunk = json_array();
            while (json_array_size(r->feed) && json_array_size(chunk) < 100) {
                json_array_append(chunk, json_array_get(r->feed, 0));
                json_array_remove(r->feed, 0);
            }
            job_op_push(j, OP_FEED, i, json_dumps(chunk, JSON_COMPACT), false);
            json_decref(chunk);
        }
    }
}

static void flush_records(struct job *j)
{
    for (size_t i = 0; i < j->record_count; i++)
        if (j->records[i].dirty) {
            job_op_push(j, OP_RECORDS, 0, NULL, false);
            return;
        }
}

/* As the official runner's JobServerQueue: live lines go out every 250 ms for the job's first
 * minute, then every 500 ms; timeline records every 500 ms. */
static void on_flush(uv_timer_t *t)
{
    struct job *j = t->data;
    j->flush_ticks++;
    if (j->flush_ticks == 240)
        uv_timer_set_repeat(t, 500);
    if (j->finishing || !j->connected || !j->renewed || j->op_running || j->ops)
        return;
    if (j->flush_ticks >= 240 || j->flush_ticks % 2 == 0)
        flush_records(j);
    flush_feed(j);
}

static const char *timeline_result(enum events_result r)
{
    switch (r) {
    case EVENTS_SUCCESS:
        return "succeeded";
    case EVENTS_FAILURE:
        return "failed";
    case EVENTS_CANCELLED:
        return "canceled";
    case EVENTS_SKIPPED:
        return "skipped";
    }
    return "failed";
}

/* The message's step id for a main step the worker names by its context name. */
static const char *message_step_id(struct job *j, const char *context_name)
{
    json_t *steps = json_get(j->message, "steps"), *s;
    size_t i;
    json_array_foreach(steps, i, s)
    {
        const char *name = json_get_string(s, "contextName");
        const char *id = json_get_string(s, "id");
        if (context_name &&
            ((name && strcmp(name, context_name) == 0) || (id && str_eq_nocase(id, context_name))))
            return id;
    }
    return NULL;
}

static size_t step_index(struct job *j, int step)
{
    if (step <= 0 || (size_t)step >= j->step_cap || !j->step_record[step])
        return 0;
    return j->step_record[step];
}

/* A timeline Issue (§7.4): where the annotation points and its title in `data`, every value a
 * string; logFileLineNumber is the line of the record's log that shows it (the worker writes
 * the ##[error] line just before the annotation). */
static json_t *issue_json(const struct step_annotation *a, const char *level, int log_line)
{
    json_t *data = json_object();
    const struct {
        const char *key;
        int value;
    } numbers[] = {{"line", a->line},
                   {"col", a->col},
                   {"endLine", a->end_line},
                   {"endColumn", a->end_column},
                   {"logFileLineNumber", log_line}};
    if (a->file)
        json_object_set_new(data, "file", json_string(a->file));
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        if (numbers[i].value > 0) {
            char text[32];
            snprintf(text, sizeof text, "%d", numbers[i].value);
            json_object_set_new(data, numbers[i].key, json_string(text));
        }
    if (a->title)
        json_object_set_new(data, "title", json_string(a->title));
    return json_pack("{s:s, s:s, s:s, s:o}", "type", level, "category", "General", "message",
                     a->message ? a->message : "", "data", data);
}

/* The job's own lines (worker step 0) as the official runner shows them: before the first step
 * in "Set up job" (order 1, opened with the job); after it in "Complete job", which is added
 * after the last step when the job ends. */
static size_t job_lines_record(struct job *j)
{
    return j->steps_started ? 0 : j->setup_record;
}

static void setup_record_close(struct job *j, const char *result)
{
    struct record *r = &j->records[j->setup_record];
    if (strcmp(r->state, "completed") == 0)
        return;
    r->state = "completed";
    r->result = result;
    free(r->finish);
    r->finish = now_iso();
    r->dirty = true;
    record_page(j, j->setup_record);
}

/* Job lines after the first step wait here, [time, line] pairs, for "Complete job". */
static void job_tail_line(struct job *j, const char *line, const char *when)
{
    if (!j->tail)
        j->tail = json_array();
    cleanup_free char *now = when ? NULL : now_iso();
    json_array_append_new(j->tail, json_pack("[s, s]", when ? when : now, line));
}

static void complete_record_add(struct job *j)
{
    int order = 1;
    for (size_t i = 0; i < j->record_count; i++)
        if (j->records[i].order > order)
            order = j->records[i].order;
    size_t index = record_add(j, NULL, "Complete job", order + 1);
    struct record *r = &j->records[index];
    r->state = "completed";
    r->result = "succeeded";
    r->start = now_iso();
    r->finish = now_iso();
    json_t *pair;
    size_t i;
    json_array_foreach(j->tail, i, pair)
    {
        record_line(j, index, json_string_value(json_array_get(pair, 1)),
                    json_string_value(json_array_get(pair, 0)));
    }
    record_page(j, index);
}

static void on_event(struct job *j, const struct events_event *ev)
{
    switch (ev->kind) {
    case EVENTS_JOB_STARTED:
        break;
    case EVENTS_STEP_STARTED: {
        /* Set-up ends with the first step; an error in it (an action that cannot be had) is
         * its failure, and the worker then skips every step. */
        if (!j->steps_started++)
            setup_record_close(j, j->records[j->setup_record].errors ? "failed" : "succeeded");
        const char *id = ev->stage == EVENTS_STAGE_MAIN ? message_step_id(j, ev->id) : NULL;
        for (size_t i = 1; id && i < j->record_count; i++)
            if (strcmp(j->records[i].id, id) == 0)
                id = NULL; /* a step id is used once */
        size_t index = record_add(j, id, ev->name, ev->step + 1);
        struct record *r = &j->records[index];
        r->state = "inProgress";
        r->start = now_iso();
        if ((size_t)ev->step >= j->step_cap) {
            size_t cap = (size_t)ev->step + 16;
            j->step_record = xrealloc(j->step_record, cap * sizeof *j->step_record);
            memset(j->step_record + j->step_cap, 0, (cap - j->step_cap) * sizeof *j->step_record);
            j->step_cap = cap;
        }
        j->step_record[ev->step] = index;
        /* A step's start goes out at once, so the job's page shows it without the batching
         * delay: next, ahead of uploads already queued. */
        if (!j->ops || j->ops->kind != OP_RECORDS)
            job_op_push(j, OP_RECORDS, 0, NULL, true);
        break;
    }
    case EVENTS_LOG:
        if (ev->step <= 0 && j->steps_started)
            job_tail_line(j, ev->line ? ev->line : "", ev->time);
        else
            record_line(j, ev->step <= 0 ? job_lines_record(j) : step_index(j, ev->step),
                        ev->line ? ev->line : "", ev->time);
        break;
    case EVENTS_ANNOTATION: {
        struct record *r =
            &j->records[ev->step <= 0 ? job_lines_record(j) : step_index(j, ev->step)];
        const char *level = ev->annotation.level == ANNOTATION_ERROR     ? "error"
                            : ev->annotation.level == ANNOTATION_WARNING ? "warning"
                                                                         : "notice";
        if (strcmp(level, "error") == 0)
            r->errors++;
        else if (strcmp(level, "warning") == 0)
            r->warnings++;
        else
            r->notices++;
        json_array_append_new(r->issues, issue_json(&ev->annotation, level, r->lines));
        r->dirty = true;
        break;
    }
    case EVENTS_STEP_SUMMARY:
        if (ev->markdown)
            job_op_push(j, OP_SUMMARY, step_index(j, ev->step), xstrdup(ev->markdown), false);
        break;
    case EVENTS_STEP_FINISHED: {
        size_t index = step_index(j, ev->step);
        struct record *r = &j->records[index];
        if (index == 0)
            break;
        r->state = "completed";
        r->result = timeline_result(ev->conclusion);
        free(r->finish);
        r->finish = now_iso();
        r->dirty = true;
        flush_feed(j);
        record_page(j, index);
        break;
    }
    case EVENTS_JOB_FINISHED:
        /* A job that ends in set-up (an action that cannot be downloaded, say) fails there. */
        setup_record_close(j, j->records[j->setup_record].errors ? "failed"
                              : j->steps_started || ev->result == EVENTS_SUCCESS
                                  ? "succeeded"
                                  : timeline_result(ev->result));
        j->reported = true;
        j->result = timeline_result(ev->result);
        json_decref(j->outputs);
        j->outputs = ev->outputs ? json_deep_copy(ev->outputs) : json_object();
        break;
    }
}

/* --- the worker ------------------------------------------------------------------------- */

static void job_finish(struct job *j);

static void on_handle_closed(uv_handle_t *h)
{
    struct job *j = h->data;
    j->handles_open--;
    job_maybe_free(j);
}

static void on_worker_line(void *data, const char *line, size_t len)
{
    struct job *j = data;
    struct events_event ev;
    struct error err = {0};
    if (events_decode(line, len, &ev, &err) < 0) {
        log_debug("not a worker event: %s", err.message);
        return;
    }
    on_event(j, &ev);
    events_event_free(&ev);
}

/* The worker is gone and its events read: a worker that died is a failed job (job_finish). */
static void on_worker_exit(void *data, int code)
{
    struct job *j = data;
    j->worker = NULL;
    if (!j->reported)
        log_warn("the worker ended (exit code %d) before it reported the job's end", code);
    job_finish(j);
}

static int job_spawn_worker(struct job *j, struct error *err)
{
    struct slot *sl = j->sl;
    if (path_mkdir_all(sl->work, 0700, err) < 0)
        return err->code;
    j->message_path = xasprintf("%s/.job-%lld.json", sl->work, (long long)j->request_id);
    cleanup_free char *text = json_dumps(j->message, JSON_COMPACT);
    if (path_write_file_atomic(j->message_path, text, strlen(text), 0600, err) < 0)
        return err->code;
    const char *argv[14] = {
        sl->p->self_exe,   "worker",
        "--message",       j->message_path,
        "--work",          sl->work,
        "--actions-cache", sl->p->actions_cache,
        "--name",          sl->settings.agent_name ? sl->settings.agent_name : "harrier"};
    size_t n = 10;
    if (!sl->p->o->sandbox_fallback) {
        argv[n++] = "--sandbox";
        argv[n++] = sandbox_level_name(sl->p->o->sandbox_level);
    }
    argv[n] = NULL;
    struct worker_process_options wo = {argv, on_worker_line, on_worker_exit, j};
    if (worker_process_start(&sl->p->loop, sl->p->procs, &wo, &j->worker, err) < 0)
        return err->code;
    j->started_worker = true;
    return 0;
}

/* The worker is gone and its events read: close the records and complete the job (§7.10). */
static void job_finish(struct job *j)
{
    if (j->finishing)
        return;
    j->finishing = true;
    uv_timer_stop(&j->kill_timer);
    if (!j->reported)
        j->result = j->cancelled ? "canceled" : "failed";
    if (!j->renewed) {
        /* A job whose lock was never renewed is dropped here as abandoned; nothing is
         * reported (§7.1), the service gives it to another runner. */
        job_done(j);
        return;
    }
    setup_record_close(j, j->steps_started ? "succeeded" : j->cancelled ? "canceled" : "failed");
    complete_record_add(j);
    struct record *job = &j->records[0];
    for (size_t i = 1; i < j->record_count; i++)
        if (strcmp(j->records[i].state, "completed") != 0) {
            j->records[i].state = "completed";
            j->records[i].result = j->cancelled ? "canceled" : "failed";
            j->records[i].finish = now_iso();
            j->records[i].dirty = true;
        }
    job->state = "completed";
    job->result = j->result;
    job->finish = now_iso();
    job->dirty = true;
    /* At the job's end only each step's last 200 live lines still go out (§7.5). */
    for (size_t i = 0; i < j->record_count; i++) {
        struct record *r = &j->records[i];
        while (json_array_size(r->feed) > 200) {
            json_array_remove(r->feed, 0);
            r->feed_start++;
        }
    }
    flush_feed(j);
    /* Steps the worker left unfinished keep what they logged (§7.7), then the job's log. */
    for (size_t i = 1; i < j->record_count; i++)
        if (j->records[i].text.len)
            record_page(j, i);
    record_page(j, 0);
    job_op_push(j, OP_RECORDS, 0, NULL, false);
    job_op_push(j, OP_COMPLETE, 0, NULL, false);
}

/* --- lock renewal (§7.2) ----------------------------------------------------------------- */

static void job_start_worker(struct job *j);
static void message_delete(struct slot *sl, int64_t id, bool then_poll);

static void on_renew(struct http_response *resp, const struct error *err, void *user);

static void renew_now(uv_timer_t *t)
{
    struct job *j = t->data;
    if (j->renew_done || j->renewing)
        return;
    struct slot *sl = j->sl;
    char pool[32], rid[32];
    snprintf(rid, sizeof rid, "%lld", (long long)j->request_id);
    const char *route[] = {"poolId", route_pool(sl, pool, sizeof pool), "requestId", rid, NULL};
    struct error err = {0};
    cleanup_free char *url =
        vss_conn_url(sl->conn, VSS_LOC_JOBREQUESTS, route, "lockToken=" EMPTY_GUID, &err);
    json_t *body = json_pack("{s:I}", "requestId", (json_int_t)j->request_id);
    struct vss_call_options o = {.method = "PATCH",
                                 .url = url,
                                 .json = body,
                                 .timeout_ms = 30000,
                                 .on_done = on_renew,
                                 .user = j};
    j->renewing = true;
    if (!url || !vss_call_start(sl->conn, &o, &err)) {
        j->renewing = false;
        log_warn("cannot renew the job's lock: %s", err.message);
        uv_timer_start(&j->renew_timer, renew_now, scaled(10000), 0);
    }
    json_decref(body);
}

static void job_abandon(struct job *j, const char *why)
{
    log_error("%s; the job is abandoned", why);
    j->renew_done = true;
    j->cancelled = true;
    if (j->worker)
        worker_process_end(j->worker);
    if (!j->started_worker) {
        j->reported = true;
        j->result = "abandoned";
        job_finish(j);
    }
}

static void on_renew(struct http_response *resp, const struct error *err, void *user)
{
    struct job *j = user;
    cleanup_free char *key = NULL;
    j->renewing = false;
    if (j->renew_done)
        goto out;
    json_t *body = !err && resp->status == 200
                       ? json_load_text(resp->body.data, resp->body.len, NULL, NULL)
                       : NULL;
    if (body && json_get(body, "lockedUntil")) {
        j->renew_failures = 0;
        j->renew_deadline = time(NULL) + 600 + 300;
        bool first = !j->renewed;
        j->renewed = true;
        json_decref(body);
        uv_timer_start(&j->renew_timer, renew_now, scaled(60000), 0);
        if (first) {
            /* Polling goes on with status Busy: that is where a cancellation arrives. */
            message_delete(j->sl, j->message_id, true);
            flush_records(j); /* the job's start: its record and "Set up job" in progress */
            job_start_worker(j);
        }
        goto out;
    }
    json_decref(body);
    key = !err ? vss_error_type_key(resp) : NULL;
    if (key && (strcmp(key, "TaskAgentJobNotFoundException") == 0 ||
                strcmp(key, "TaskAgentJobTokenExpiredException") == 0)) {
        job_abandon(j, "the service no longer knows the job");
        goto out;
    }
    j->renew_failures++;
    if (!j->renewed && j->renew_failures >= 6) {
        message_delete(j->sl, j->message_id, true);
        job_abandon(j, "the job's lock could not be renewed 6 times in a row");
        goto out;
    }
    if (j->renewed && time(NULL) > j->renew_deadline) {
        job_abandon(j, "the job's lock could not be renewed before it ran out");
        goto out;
    }
    double wait = !j->renewed              ? random_between(1000, 10000)
                  : j->renew_failures <= 5 ? random_between(5000, 15000)
                                           : random_between(15000, 30000);
    log_warn("renewing the job's lock failed (%s); retrying", err ? err->message : "bad answer");
    uv_timer_start(&j->renew_timer, renew_now, scaled(wait), 0);
out:
    job_maybe_free(j);
}

/* --- job start and end ------------------------------------------------------------------- */

static void job_start_worker(struct job *j)
{
    struct error err = {0};
    if (job_spawn_worker(j, &err) < 0) {
        log_error("cannot start the worker: %s", err.message);
        job_finish(j);
    }
}

static void on_job_connected(int rc, const struct error *err, void *user)
{
    struct job *j = user;
    if (rc < 0) {
        log_error("cannot reach the job's service: %s", err ? err->message : "");
        /* Without the job service nothing can be reported; the lock will run out. */
        return;
    }
    j->connected = true;
    if (j->renewed)
        flush_records(j); /* the job's start, held until the job service was reachable */
    job_op_next(j);
}

static const char *endpoint_token(const json_t *ep)
{
    return json_get_string(json_get(json_get(ep, "authorization"), "parameters"), "AccessToken");
}

/* The orch_id claim of the job token, when it is a JWT (§7.1); NULL otherwise. */
static char *token_orchestration_id(const char *token)
{
    const char *dot = token ? strchr(token, '.') : NULL;
    const char *end = dot ? strchr(dot + 1, '.') : NULL;
    if (!end)
        return NULL;
    cleanup_free char *part = xstrndup(dot + 1, (size_t)(end - dot - 1));
    size_t len = 0;
    cleanup_free uint8_t *text = codec_base64_decode(part, &len);
    json_t *claims = text ? json_load_text((const char *)text, len, NULL, NULL) : NULL;
    const char *id = json_get_string(claims, "orch_id");
    if (!id)
        id = json_get_string(claims, "orchid");
    char *copy = id ? xstrdup(id) : NULL;
    json_decref(claims);
    return copy;
}

static int job_new(struct slot *sl, json_t *message, int64_t message_id, struct job **out,
                   struct error *err)
{
    json_t *plan = json_get(message, "plan");
    json_t *eps = json_get(json_get(message, "resources"), "endpoints"), *ep, *vss = NULL;
    size_t i;
    json_array_foreach(eps, i, ep)
    {
        const char *name = json_get_string(ep, "name");
        if (name && str_eq_nocase(name, "SystemVssConnection"))
            vss = ep;
    }
    int64_t request_id = 0, version = 0;
    const char *job_id = json_get_string(message, "jobId");
    const char *url = json_get_string(vss, "url");
    const char *token = endpoint_token(vss);
    if (!json_get_int(message, "requestId", &request_id) || !job_id || !url || !token ||
        !json_get_string(plan, "planId") || !json_get_string(json_get(message, "timeline"), "id"))
        return error_set(err, EPROTO,
                         "the job message lacks requestId, jobId, plan, timeline or the "
                         "SystemVssConnection endpoint");
    json_get_int(plan, "version", &version);
    struct job *j = xcalloc(1, sizeof *j);
    j->sl = sl;
    j->message = json_incref(message);
    j->request_id = request_id;
    j->message_id = message_id;
    j->job_id = xstrdup(job_id);
    j->plan_id = xstrdup(json_get_string(plan, "planId"));
    j->scope =
        xstrdup(json_get_string(plan, "scopeIdentifier") ? json_get_string(plan, "scopeIdentifier")
                                                         : EMPTY_GUID);
    j->hub =
        xstrdup(json_get_string(plan, "planType") ? json_get_string(plan, "planType") : "actions");
    j->timeline_id = xstrdup(json_get_string(json_get(message, "timeline"), "id"));
    j->plan_version = (int)version;
    j->orch_id = token_orchestration_id(token);
    j->conn = vss_conn_new(&sl->p->loop, sl->p->http, url);
    vss_conn_set_token(j->conn, token);
    j->ops_tail = &j->ops;
    j->result = "failed";
    const char *display = json_get_string(message, "jobDisplayName");
    size_t job_record = record_add(j, job_id, display ? display : "job", 0);
    j->records[job_record].state = "inProgress";
    j->records[job_record].start = now_iso();
    j->setup_record = record_add(j, NULL, "Set up job", 1);
    j->records[j->setup_record].state = "inProgress";
    j->records[j->setup_record].start = now_iso();
    uv_timer_init(&sl->p->loop, &j->renew_timer);
    uv_timer_init(&sl->p->loop, &j->flush_timer);
    uv_timer_init(&sl->p->loop, &j->kill_timer);
    uv_timer_init(&sl->p->loop, &j->retry_timer);
    j->renew_timer.data = j->flush_timer.data = j->kill_timer.data = j->retry_timer.data = j;
    j->handles_open += 4;
    uv_timer_start(&j->flush_timer, on_flush, 250, 250);
    if (vss_conn_connect_start(j->conn, on_job_connected, j, err) < 0)
        log_error("cannot reach the job's service: %s", err->message);
    *out = j;
    return 0;
}

static void job_free(struct job *j)
{
    json_decref(j->message);
    json_decref(j->outputs);
    json_decref(j->tail);
    free(j->job_id);
    free(j->plan_id);
    free(j->scope);
    free(j->hub);
    free(j->timeline_id);
    free(j->orch_id);
    vss_conn_free(j->conn);
    for (size_t i = 0; i < j->record_count; i++) {
        struct record *r = &j->records[i];
        free(r->id);
        free(r->name);
        free(r->start);
        free(r->finish);
        json_decref(r->log);
        json_decref(r->issues);
        json_decref(r->feed);
        buf_free(&r->text);
    }
    free(j->records);
    free(j->step_record);
    while (j->ops) {
        struct op *op = j->ops;
        j->ops = op->next;
        free(op->text);
        free(op);
    }
    if (j->message_path)
        unlink(j->message_path);
    free(j->message_path);
    free(j);
}

/* Freed once every handle is closed and no request is out. */
static void job_maybe_free(struct job *j)
{
    if (!j->renew_done || j->renewing || j->handles_open > 0 || j->op_running || j->worker)
        return;
    struct slot *sl = j->sl;
    if (sl->job == j)
        sl->job = NULL;
    job_free(j);
    if (sl->stopping)
        slot_stop(sl, sl->exit_code);
}

static void job_done(struct job *j)
{
    struct slot *sl = j->sl;
    log_info("job %s completed: %s", j->job_id, j->result);
    printf("%s: Job %s completed with result: %s\n",
           sl->settings.agent_name ? sl->settings.agent_name : "runner",
           json_get_string(j->message, "jobDisplayName")
               ? json_get_string(j->message, "jobDisplayName")
               : j->job_id,
           j->result);
    fflush(stdout);
    j->renew_done = true;
    uv_timer_stop(&j->renew_timer);
    uv_close((uv_handle_t *)&j->renew_timer, on_handle_closed);
    uv_close((uv_handle_t *)&j->flush_timer, on_handle_closed);
    uv_close((uv_handle_t *)&j->kill_timer, on_handle_closed);
    uv_close((uv_handle_t *)&j->retry_timer, on_handle_closed);
    if (sl->p->o->once || sl->settings.ephemeral) {
        if (sl->settings.ephemeral || sl->p->o->jit) {
            struct error err = {0};
            config_store_remove(sl->dir, &err);
        }
        sl->stopping = true;
        sl->exit_code = RUNNER_EXIT_OK;
    }
    /* Back to Online: the Busy poll is replaced (§4.2). */
    if (sl->poll)
        vss_call_cancel(sl->poll);
    else if (!sl->stopping)
        poll_start(sl);
}

static void on_kill_timer(uv_timer_t *t)
{
    struct job *j = t->data;
    if (j->worker)
        worker_process_end(j->worker);
}

/* §7.7: SIGINT to the worker for the service's cancellation (it tests the running step's if:
 * again and runs always() steps), SIGTERM when the runner shuts down (the running step is
 * cancelled whatever it asks for); killed after max(timeout, 60 s) - 15 s. */
static void job_cancel(struct job *j, double timeout_ms, bool shutdown)
{
    j->cancelled = true;
    if (j->worker) {
        worker_process_signal(j->worker, shutdown ? SIGTERM : SIGINT);
        double grace = (timeout_ms > 60000 ? timeout_ms : 60000) - 15000;
        uv_timer_start(&j->kill_timer, on_kill_timer, scaled(grace), 0);
    }
}

/* --- messages (§4.2–4.6) -------------------------------------------------------------- */

static void on_message_deleted(struct http_response *resp, const struct error *err, void *user)
{
    (void)resp;
    struct slot *sl = user;
    if (err)
        log_debug("deleting a message: %s", err->message);
    if (--sl->deleting > 0)
        return;
    bool then_poll = sl->poll_after_delete;
    sl->poll_after_delete = false;
    if (sl->stopping)
        slot_stop(sl, sl->exit_code);
    else if (then_poll)
        poll_start(sl);
}

/* §4.5: the next poll goes out once the message is deleted, so that the service does not
 * send a job message again. */
static void message_delete(struct slot *sl, int64_t id, bool then_poll)
{
    char pool[32], mid[32];
    snprintf(mid, sizeof mid, "%lld", (long long)id);
    const char *route[] = {"poolId", route_pool(sl, pool, sizeof pool), "messageId", mid, NULL};
    cleanup_free char *query = xasprintf("sessionId=%s", sl->session_id);
    struct error err = {0};
    cleanup_free char *url = vss_conn_url(sl->conn, VSS_LOC_MESSAGES, route, query, &err);
    struct vss_call_options o = {.method = "DELETE",
                                 .url = url,
                                 .timeout_ms = 30000,
                                 .retries = 3, /* a lost delete would have the job sent again */
                                 .on_done = on_message_deleted,
                                 .user = sl};
    if (url && vss_call_start(sl->conn, &o, &err)) {
        sl->deleting++;
        sl->poll_after_delete |= then_poll;
        return;
    }
    log_warn("cannot delete message %lld: %s", (long long)id, err.message);
    if (then_poll)
        poll_start(sl);
}

static json_t *message_decrypt(struct slot *sl, json_t *m, struct error *err)
{
    const char *body = json_get_string(m, "body");
    const char *iv64 = json_get_string(m, "iv");
    if (!body)
        return NULL;
    if (!iv64 || !*iv64 || !sl->session_key)
        return json_load_text(body, strlen(body), "message", err);
    size_t iv_len = 0, ct_len = 0, pt_len = 0;
    cleanup_free uint8_t *iv = codec_base64_decode(iv64, &iv_len);
    cleanup_free uint8_t *ct = codec_base64_decode(body, &ct_len);
    uint8_t *pt = NULL;
    if (!iv || !ct) {
        error_set(err, EPROTO, "the message's iv or body is not base64");
        return NULL;
    }
    if (runner_aes_cbc_decrypt(sl->session_key, sl->session_key_len, iv, iv_len, ct, ct_len, &pt,
                               &pt_len, err) < 0)
        return NULL;
    json_t *v = json_load_text((const char *)pt, pt_len, "message", err);
    free(pt);
    return v;
}

static void on_message(struct slot *sl, json_t *m)
{
    int64_t id = 0;
    json_get_int(m, "messageId", &id);
    sl->last_message_id = id;
    const char *type = json_get_string(m, "messageType");
    struct error err = {0};
    json_t *body = message_decrypt(sl, m, &err);
    if (!type || !body) {
        log_error("cannot read message %lld: %s", (long long)id, err.message);
        json_decref(body);
        message_delete(sl, id, true);
        return;
    }
    if (str_eq_nocase(type, "PipelineAgentJobRequest")) {
        if (sl->job || sl->stopping ||
            ((sl->p->o->once || sl->settings.ephemeral) && sl->jobs_taken)) {
            /* Never two jobs in one slot; left undeleted, the service sends it again. */
            json_decref(body);
            poll_start(sl);
            return;
        }
        struct job *j = NULL;
        if (job_new(sl, body, id, &j, &err) < 0) {
            log_error("cannot run the job: %s", err.message);
            message_delete(sl, id, true);
            json_decref(body);
            return;
        }
        sl->job = j;
        sl->jobs_taken++;
        printf("%s: Running job: %s\n",
               sl->settings.agent_name ? sl->settings.agent_name : "runner",
               json_get_string(body, "jobDisplayName") ? json_get_string(body, "jobDisplayName")
                                                       : j->job_id);
        fflush(stdout);
        json_decref(body);
        /* The worker starts after the first renewal succeeded (§7.1); the poll resumes then. */
        renew_now(&j->renew_timer);
        return;
    }
    if (str_eq_nocase(type, "JobCancellation")) {
        const char *job_id = json_get_string(body, "jobId");
        if (sl->job && job_id && str_eq_nocase(job_id, sl->job->job_id)) {
            log_info("the service cancelled job %s", job_id);
            job_cancel(sl->job, 300000, false);
        }
    } else if (strcmp(type, "ForceTokenRefresh") == 0) {
        vss_conn_drop_token(sl->conn);
    } else if (str_eq_nocase(type, "RunnerShutdown")) {
        json_decref(body);
        slot_stop(sl, RUNNER_EXIT_OK);
        return;
    } else {
        log_info("ignoring a message of type %s", type);
    }
    json_decref(body);
    message_delete(sl, id, true);
}

/* --- sessions (§4.1) --------------------------------------------------------------------- */

static void session_start(struct slot *sl);

static void on_session_timer(uv_timer_t *t)
{
    session_start(t->data);
}

/* As the official runner: said on the first failure only, then retried every 30 s until it
 * works ("Retrying until reconnected"); a clock-skew refusal is one of these. */
static void session_retry(struct slot *sl, const char *why)
{
    if (!sl->session_failures++)
        slot_say(sl, "cannot create a session (%s); retrying every 30 s until reconnected\n", why);
    uv_timer_start(&sl->poll_timer, on_session_timer, scaled(30000), 0);
}

static void session_fail(struct slot *sl, int code, const char *message)
{
    slot_say(sl, "%s\n", message);
    slot_stop(sl, code);
}

/* Takes the session and its key from a 200 answer; false when it is unusable. */
static bool session_take(struct slot *sl, struct http_response *resp, struct error *err)
{
    json_t *s = json_load_text(resp->body.data, resp->body.len, "session", err);
    const char *sid = json_get_string(s, "sessionId");
    json_t *ek = json_get(s, "encryptionKey");
    bool fips = false, encrypted = false;
    json_get_bool(s, "useFipsEncryption", &fips);
    json_get_bool(ek, "encrypted", &encrypted);
    const char *value = json_get_string(ek, "value");
    int rc = 0;
    if (!sid)
        rc = error_set(err, EPROTO, "the service answered the session without a sessionId");
    free(sl->session_id);
    free(sl->session_key);
    sl->session_id = sid ? xstrdup(sid) : NULL;
    sl->session_key = NULL;
    sl->session_key_len = 0;
    if (rc == 0 && value && *value) {
        size_t n = 0;
        cleanup_free uint8_t *raw = codec_base64_decode(value, &n);
        if (raw && encrypted)
            rc = runner_key_decrypt(sl->key, raw, n, fips, &sl->session_key, &sl->session_key_len,
                                    err);
        else if (raw)
            sl->session_key = xmemdup(raw, n), sl->session_key_len = n;
    }
    json_decref(s);
    return rc == 0;
}

static void on_session(struct http_response *resp, const struct error *err, void *user)
{
    struct slot *sl = user;
    sl->session_call = NULL;
    if (sl->stopping) {
        if (!err && resp->status == 200) {
            struct error e = {0};
            session_take(sl, resp, &e);
        }
        slot_stop(sl, sl->exit_code);
        return;
    }
    if (err && err->code == VSS_ERROR_REGISTRATION_DELETED) {
        session_fail(sl, RUNNER_EXIT_TERMINATED,
                     "Failed to create a session. The runner registration has been deleted from "
                     "the server, please re-configure.");
        return;
    }
    if (err) {
        session_retry(sl, err->message);
        return;
    }
    if (resp->status == 200) {
        struct error e = {0};
        if (!session_take(sl, resp, &e)) {
            session_fail(sl, RUNNER_EXIT_TERMINATED, e.message);
            return;
        }
        if (sl->session_failures)
            slot_say(sl, "Runner reconnected.\n");
        sl->session_failures = 0;
        if (!sl->connected_once && !sl->p->connected_once)
            printf("√ Connected to GitHub\n\n");
        if (!sl->connected_once)
            printf("%s: Listening for Jobs\n",
                   sl->settings.agent_name ? sl->settings.agent_name : "runner");
        sl->p->connected_once = true;
        fflush(stdout);
        sl->connected_once = true;
        sl->conflict_waited = 0;
        poll_start(sl);
        return;
    }
    cleanup_free char *key = vss_error_type_key(resp);
    if (key && strcmp(key, "TaskAgentSessionConflictException") == 0) {
        if (sl->conflict_waited >= 240000) {
            session_fail(sl, RUNNER_EXIT_SESSION_CONFLICT,
                         "a session for this runner already exists (another 'harrier run' with "
                         "these credentials?); gave up after 4 minutes");
            return;
        }
        if (sl->conflict_waited == 0)
            slot_say(sl, "a session for this runner already exists; retrying "
                         "every 30 s for up to 4 minutes\n");
        sl->conflict_waited += 30000;
        uv_timer_start(&sl->poll_timer, on_session_timer, scaled(30000), 0);
        return;
    }
    if (key && strcmp(key, "TaskAgentNotFoundException") == 0) {
        session_fail(sl, RUNNER_EXIT_TERMINATED,
                     "The runner no longer exists on the server. Please reconfigure the runner.");
        return;
    }
    if ((key && (strcmp(key, "TaskAgentPoolNotFoundException") == 0 ||
                 strcmp(key, "AccessDeniedException") == 0)) ||
        resp->status == 401) {
        char text[160];
        snprintf(text, sizeof text, "the service refused the session (%ld %s)", resp->status,
                 key ? key : "");
        session_fail(sl, RUNNER_EXIT_TERMINATED, text);
        return;
    }
    char why[96];
    snprintf(why, sizeof why, "%ld %s", resp->status, key ? key : "");
    session_retry(sl, why);
}

/* §4.1: POST sessions; conflicts are retried every 30 s for 4 minutes (then exit 5). */
static void session_start(struct slot *sl)
{
    if (sl->stopping)
        return;
    char pool[32];
    const char *route[] = {"poolId", route_pool(sl, pool, sizeof pool), NULL};
    struct error err = {0};
    cleanup_free char *url = vss_conn_url(sl->conn, VSS_LOC_SESSIONS, route, NULL, &err);
    if (!url) {
        session_fail(sl, RUNNER_EXIT_TERMINATED, err.message);
        return;
    }
    char host[256] = "harrier";
    gethostname(host, sizeof host - 1);
    cleanup_free char *owner = xasprintf("%s (PID: %d)", host, (int)getpid());
    json_t *body =
        json_pack("{s:s, s:s, s:{s:I, s:s, s:s, s:s, s:n, s:i, s:n}, s:b}", "sessionId", EMPTY_GUID,
                  "ownerName", owner, "agent", "id", (json_int_t)sl->settings.agent_id, "name",
                  sl->settings.agent_name ? sl->settings.agent_name : "", "version",
                  RUNNER_SERVICE_VERSION, "osDescription", "Linux (harrier)", "ephemeral", "status",
                  0, "provisioningState", "useFipsEncryption", 0);
    struct vss_call_options o = {
        .method = "POST", .url = url, .json = body, .on_done = on_session, .user = sl};
    sl->session_call = vss_call_start(sl->conn, &o, &err);
    json_decref(body);
    if (!sl->session_call)
        session_retry(sl, err.message);
}

static void on_session_deleted(struct http_response *resp, const struct error *err, void *user)
{
    (void)resp;
    (void)err;
    struct slot *sl = user;
    free(sl->session_id);
    sl->session_id = NULL;
    slot_stop(sl, sl->exit_code);
}

static void listener_close(struct listener *p)
{
    if (p->closed)
        return;
    p->closed = true;
    uv_close((uv_handle_t *)&p->sigint, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    sandbox_job_free(p->procs);
    p->procs = NULL;
}

/* The process ends when its last slot has closed. */
static void slot_close(struct slot *sl)
{
    if (sl->closed)
        return;
    sl->closed = true;
    uv_close((uv_handle_t *)&sl->poll_timer, NULL);
    for (int i = 0; i < sl->p->slot_count; i++)
        if (!sl->p->slots[i].closed)
            return;
    listener_close(sl->p);
}

/* Stops taking jobs; once the running job is done, deletes the session and closes. */
static void slot_stop(struct slot *sl, int code)
{
    if (!sl->stopping || sl->exit_code == 0)
        sl->exit_code = code;
    sl->stopping = true;
    if (sl->poll || sl->session_call) {
        if (sl->poll)
            vss_call_cancel(sl->poll);
        if (sl->session_call)
            vss_call_cancel(sl->session_call);
        return;
    }
    uv_timer_stop(&sl->poll_timer);
    if (sl->job || sl->deleting)
        return;
    if (sl->session_id && code != -1) {
        char pool[32];
        const char *route[] = {"poolId", route_pool(sl, pool, sizeof pool), "sessionId",
                               sl->session_id, NULL};
        struct error err = {0};
        cleanup_free char *url = vss_conn_url(sl->conn, VSS_LOC_SESSIONS, route, NULL, &err);
        struct vss_call_options o = {.method = "DELETE",
                                     .url = url,
                                     .timeout_ms = 30000,
                                     .on_done = on_session_deleted,
                                     .user = sl};
        if (url && vss_call_start(sl->conn, &o, &err))
            return;
        free(sl->session_id);
        sl->session_id = NULL;
    }
    slot_close(sl);
}

/* --- the long-poll (§4.2) --------------------------------------------------------------- */

static void on_poll_timer(uv_timer_t *t)
{
    poll_start(t->data);
}

static void poll_retry_later(struct slot *sl, const char *why)
{
    sl->poll_errors++;
    if (sl->poll_errors == 1)
        slot_say(sl, "Runner connect error: %s. Retrying until reconnected.\n", why);
    double wait =
        sl->poll_errors <= 5 ? random_between(15000, 30000) : random_between(30000, 60000);
    uv_timer_start(&sl->poll_timer, on_poll_timer, scaled(wait), 0);
}

static void on_poll(struct http_response *resp, const struct error *err, void *user)
{
    struct slot *sl = user;
    sl->poll = NULL;
    if (sl->stopping) {
        slot_stop(sl, sl->exit_code);
        return;
    }
    if (err && err->code == -ECANCELED) {
        poll_start(sl); /* the status changed: poll again with the new one */
        return;
    }
    if (err && err->code == VSS_ERROR_REGISTRATION_DELETED) {
        slot_say(sl, "%s\n", err->message);
        slot_stop(sl, RUNNER_EXIT_TERMINATED);
        return;
    }
    if (err) {
        poll_retry_later(sl, err->message);
        return;
    }
    if (resp->status == 204 || (resp->status == 200 && resp->body.len == 0)) {
        if (sl->poll_errors)
            slot_say(sl, "Runner reconnected.\n");
        sl->poll_errors = 0;
        uint64_t took = uv_now(&sl->p->loop) - sl->poll_started;
        /* Polls that come back at once, many times over: slow down (§4.2). */
        if (took < 1000 && ++sl->empty_polls > 50)
            uv_timer_start(&sl->poll_timer, on_poll_timer, scaled(random_between(15000, 30000)), 0);
        else
            poll_start(sl);
        if (took >= 1000)
            sl->empty_polls = 0;
        return;
    }
    if (resp->status == 200) {
        if (sl->poll_errors)
            slot_say(sl, "Runner reconnected.\n");
        sl->poll_errors = 0;
        sl->empty_polls = 0;
        json_t *m = json_load_text(resp->body.data, resp->body.len, "message", NULL);
        if (!m) {
            poll_retry_later(sl, "the service sent a message that is not JSON");
            return;
        }
        on_message(sl, m);
        json_decref(m);
        return;
    }
    cleanup_free char *key = vss_error_type_key(resp);
    if (key && strcmp(key, "TaskAgentSessionExpiredException") == 0) {
        free(sl->session_id);
        sl->session_id = NULL;
        session_start(sl);
        return;
    }
    if (key && (strcmp(key, "TaskAgentNotFoundException") == 0 ||
                strcmp(key, "RunnerNotFoundException") == 0)) {
        slot_say(sl, "the runner was deleted on the server; its local "
                     "configuration is removed\n");
        struct error e = {0};
        config_store_remove(sl->dir, &e);
        free(sl->session_id);
        sl->session_id = NULL;
        slot_stop(sl, RUNNER_EXIT_OK);
        return;
    }
    if (key && strcmp(key, "AccessDeniedException") == 0) {
        bool too_old = vss_error_code(resp) == 1;
        const char *env = getenv("ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE");
        slot_say(sl, "the service refused the runner%s\n",
                 too_old ? ": its version is too old" : "");
        slot_stop(sl, too_old && env && strcmp(env, "1") == 0 ? RUNNER_EXIT_VERSION_DEPRECATED
                                                              : RUNNER_EXIT_TERMINATED);
        return;
    }
    if (resp->status == 401) {
        slot_say(sl, "the service refused the runner's credentials (401)\n");
        slot_stop(sl, RUNNER_EXIT_TERMINATED);
        return;
    }
    char why[64];
    snprintf(why, sizeof why, "%ld%s%s", resp->status, key ? " " : "", key ? key : "");
    poll_retry_later(sl, why);
}

static void poll_start(struct slot *sl)
{
    if (sl->stopping || sl->poll)
        return;
    if (sl->deleting) {
        sl->poll_after_delete = true; /* never poll past an undeleted message (§4.5) */
        return;
    }
    uv_timer_stop(&sl->poll_timer);
    char pool[32];
    const char *route[] = {"poolId", route_pool(sl, pool, sizeof pool), NULL};
    bool busy = sl->job != NULL;
    struct buf q = BUF_INIT;
    buf_printf(&q, "sessionId=%s", sl->session_id);
    if (sl->last_message_id)
        buf_printf(&q, "&lastMessageId=%lld", (long long)sl->last_message_id);
    buf_printf(&q, "&status=%s&runnerVersion=%s&os=Linux&architecture=X64&disableUpdate=%s",
               busy ? "Busy" : "Online", RUNNER_SERVICE_VERSION,
               sl->settings.disable_update ? "true" : "false");
    struct error err = {0};
    cleanup_free char *url = vss_conn_url(sl->conn, VSS_LOC_MESSAGES, route, buf_cstr(&q), &err);
    buf_free(&q);
    struct vss_call_options o = {.url = url, .timeout_ms = 60000, .on_done = on_poll, .user = sl};
    sl->poll_started = uv_now(&sl->p->loop);
    sl->poll_busy_status = busy;
    sl->poll = url ? vss_call_start(sl->conn, &o, &err) : NULL;
    if (!sl->poll)
        poll_retry_later(sl, err.message);
}

/* --- signals ---------------------------------------------------------------------------- */

/* As the official runner: the first signal stops taking jobs and cancels the running ones
 * (with --finish-jobs, lets them finish); a second one cancels them, a third ends them. */
static void on_signal(uv_signal_t *sig, int signum)
{
    (void)signum;
    struct listener *p = sig->data;
    p->signals++;
    bool cancel = p->signals == 2 || (p->signals == 1 && !p->o->finish_jobs);
    int running = 0;
    for (int i = 0; i < p->slot_count; i++)
        running += p->slots[i].job != NULL;
    if (p->signals == 1)
        fprintf(stderr, "harrier run: stopping%s\n",
                !running       ? ""
                : cancel       ? "; cancelling the running job"
                : running == 1 ? "; the running job finishes first (a second Ctrl-C cancels it)"
                               : "; the running jobs finish first (a second Ctrl-C cancels them)");
    for (int i = 0; i < p->slot_count; i++) {
        struct slot *sl = &p->slots[i];
        if (cancel && sl->job && !sl->job->cancelled)
            job_cancel(sl->job, 60000, true);
        else if (p->signals > 2 && sl->job)
            worker_process_end(sl->job->worker);
        slot_stop(sl, RUNNER_EXIT_OK);
    }
}

/* --- start ------------------------------------------------------------------------------ */

static int slot_open(struct slot *sl, struct error *err)
{
    if (config_store_load(sl->dir, &sl->settings, &sl->credentials, &sl->key, err) < 0)
        return RUNNER_EXIT_TERMINATED;
    if (sl->settings.use_v2_flow)
        slot_say(sl, "this runner is registered for the broker flow, which "
                     "harrier does not speak yet; trying the classic message queue\n");
    if (!sl->settings.server_url)
        return error_set(err, EINVAL, "%s/.runner has no serverUrl", sl->dir),
               RUNNER_EXIT_TERMINATED;
    const char *work_folder = sl->settings.work_folder ? sl->settings.work_folder : "_work";
    cleanup_free char *root = realpath(sl->p->o->dir, NULL);
    cleanup_free char *base = work_folder[0] == '/'
                                  ? xstrdup(work_folder)
                                  : path_join(root ? root : sl->p->o->dir, work_folder);
    /* Slot 1 keeps the official layout; the others work beside it; all share the actions. */
    char name[32];
    snprintf(name, sizeof name, "_slot%d", sl->index);
    sl->work = sl->index == 1 ? xstrdup(base) : path_join(base, name);
    if (!sl->p->actions_cache)
        sl->p->actions_cache = path_join(base, "_actions");
    sl->conn = vss_conn_new(&sl->p->loop, sl->p->http, sl->settings.server_url);
    vss_conn_set_oauth(sl->conn, sl->key, sl->credentials.client_id,
                       sl->credentials.oauth_endpoint_url ? sl->credentials.oauth_endpoint_url
                                                          : sl->credentials.authorization_url,
                       sl->credentials.require_fips);
    return 0;
}

/* Discovery (connectionData, §1.3) on the loop; a service out of reach is waited for, as the
 * official runner (with run.sh) does: "Retrying until reconnected". */
static void slot_connect(struct slot *sl);

static void on_connect_timer(uv_timer_t *t)
{
    slot_connect(t->data);
}

static void on_slot_connected(int rc, const struct error *err, void *user)
{
    struct slot *sl = user;
    if (sl->stopping) {
        slot_stop(sl, sl->exit_code);
        return;
    }
    if (rc < 0) {
        if (!sl->connect_failures++)
            slot_say(sl,
                     "cannot reach the runner service at %s (network down?): %s; retrying "
                     "every 30 s\n",
                     sl->settings.server_url, err ? err->message : "");
        uv_timer_start(&sl->poll_timer, on_connect_timer, scaled(30000), 0);
        return;
    }
    if (sl->connect_failures)
        slot_say(sl, "Runner reconnected.\n");
    sl->connect_failures = 0;
    session_start(sl);
}

static void slot_connect(struct slot *sl)
{
    struct error err = {0};
    if (vss_conn_connect_start(sl->conn, on_slot_connected, sl, &err) < 0)
        on_slot_connected(-1, &err, sl);
}

/* The official runner's .env (KEY=VALUE lines) and .path (the PATH for jobs) beside the
 * configuration, read at start into the environment every worker inherits. */
static void load_runner_environment(const char *dir)
{
    struct error err = {0};
    cleanup_free char *env_path = path_join(dir, ".env");
    size_t len = 0;
    cleanup_free char *text = path_read_file(env_path, &len, &err);
    if (text) {
        json_t *vars = json_object();
        if (dotenv_parse(text, env_path, vars, &err) == 0) {
            const char *k;
            json_t *v;
            json_object_foreach(vars, k, v)
            {
                setenv(k, json_string_value(v), 1);
            }
        } else {
            fprintf(stderr, "harrier run: ignoring %s: %s\n", env_path, err.message);
        }
        json_decref(vars);
    }
    cleanup_free char *path_path = path_join(dir, ".path");
    cleanup_free char *path = path_read_file(path_path, &len, &err);
    if (path) {
        path[strcspn(path, "\r\n")] = 0;
        if (*path)
            setenv("PATH", path, 1);
    }
}

static void slot_free(struct slot *sl)
{
    vss_conn_free(sl->conn);
    runner_key_free(sl->key);
    runner_settings_free(&sl->settings);
    runner_credentials_free(&sl->credentials);
    free(sl->session_id);
    free(sl->session_key);
    free(sl->dir);
    free(sl->work);
}

int listener_run(const struct listener_options *options)
{
    const char *scale = getenv("HARRIER_TEST_TIMER_SCALE");
    if (scale && atof(scale) > 0)
        timer_scale = atof(scale);
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    load_runner_environment(options->dir);
    struct listener p = {.o = options};
    uv_loop_init(&p.loop);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    p.self_exe = self;
    uv_signal_init(&p.loop, &p.sigint);
    uv_signal_init(&p.loop, &p.sigterm);
    p.sigint.data = p.sigterm.data = &p;
    uv_signal_start(&p.sigint, on_signal, SIGINT);
    uv_signal_start(&p.sigterm, on_signal, SIGTERM);
    p.http = http_client_new(&p.loop);
    p.slot_count = options->slots > 0 ? options->slots : 1;
    p.slots = xcalloc((size_t)p.slot_count, sizeof *p.slots);
    for (int i = 0; i < p.slot_count; i++) {
        struct slot *sl = &p.slots[i];
        sl->p = &p;
        sl->index = i + 1;
        sl->dir = config_store_slot_dir(options->dir, i + 1);
        uv_timer_init(&p.loop, &sl->poll_timer);
        sl->poll_timer.data = sl;
    }
    struct error err = {0};
    struct sandbox_job_options so = {.level = SANDBOX_NONE};
    int code = sandbox_job_new(&p.loop, &so, &p.procs, &err) < 0 ? RUNNER_EXIT_TERMINATED : 0;
    for (int i = 0; code == 0 && i < p.slot_count; i++)
        code = slot_open(&p.slots[i], &err);
    if (code != 0) {
        char text[ERROR_MESSAGE_MAX + ERROR_WHERE_MAX + 32];
        if (err.message[0])
            fprintf(stderr, "harrier run: %s\n", error_format(&err, text, sizeof text));
        for (int i = 0; i < p.slot_count; i++) {
            p.slots[i].exit_code = code;
            slot_close(&p.slots[i]);
        }
    } else {
        for (int i = 0; i < p.slot_count; i++)
            slot_connect(&p.slots[i]);
    }
    uv_run(&p.loop, UV_RUN_DEFAULT);
    http_client_free(p.http);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    uv_loop_close(&p.loop);
    /* The first slot that failed gives the exit code (§2.1); all stopping cleanly is 0. */
    int exit_code = 0;
    for (int i = 0; i < p.slot_count; i++) {
        if (!exit_code)
            exit_code = p.slots[i].exit_code;
        slot_free(&p.slots[i]);
    }
    free(p.slots);
    free(p.actions_cache);
    return exit_code;
}
