#include "runner/events.h"

#include "lib/buf.h"
#include "lib/json.h"
#include "lib/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum {
    ANNOTATION_MESSAGE_MAX = 4096, /* ExecutionContext._maxIssueMessageLength */
    ANNOTATIONS_PER_LEVEL = 10,    /* ExecutionContext._maxCountPerIssueType */
};

struct events_writer {
    struct masker *masker;
    events_sink *sink;
    void *context;
    int fd;
    bool buffered;
    struct buf pending;       /* whole lines not yet written (buffered) */
    int annotation_step;      /* the step annotation_counts are for */
    int annotation_counts[3]; /* by level */
};

static const char *const kind_names[] = {
    [EVENTS_JOB_STARTED] = "job_started",
    [EVENTS_STEP_STARTED] = "step_started",
    [EVENTS_LOG] = "log",
    [EVENTS_ANNOTATION] = "annotation",
    [EVENTS_STEP_SUMMARY] = "step_summary",
    [EVENTS_STEP_FINISHED] = "step_finished",
    [EVENTS_JOB_FINISHED] = "job_finished",
};

static const char *const stage_names[] = {"pre", "main", "post"};
static const char *const result_names[] = {"success", "failure", "cancelled", "skipped"};
static const char *const level_names[] = {"error", "warning", "notice"};

const char *events_result_name(enum events_result result)
{
    return result_names[result];
}

/* ---- writing ---- */

static int write_all(int fd, const char *line, size_t len, struct error *err)
{
    while (len > 0) {
        ssize_t n = write(fd, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return error_set_errno(err, errno, "writing an event");
        line += n;
        len -= (size_t)n;
    }
    return 0;
}

enum { EVENTS_BUFFER_MAX = 64 * 1024 };

static int fd_sink(void *context, const char *line, size_t len, struct error *err)
{
    struct events_writer *writer = context;
    if (!writer->buffered)
        return write_all(writer->fd, line, len, err);
    buf_append(&writer->pending, line, len);
    return writer->pending.len >= EVENTS_BUFFER_MAX ? events_writer_flush(writer, err) : 0;
}

void events_writer_set_buffered(struct events_writer *writer, bool buffered)
{
    if (!buffered) {
        struct error ignored = {0};
        events_writer_flush(writer, &ignored);
    }
    writer->buffered = buffered;
}

int events_writer_flush(struct events_writer *writer, struct error *err)
{
    if (!writer->pending.len)
        return 0;
    int rc = write_all(writer->fd, writer->pending.data, writer->pending.len, err);
    buf_reset(&writer->pending);
    return rc;
}

struct events_writer *events_writer_new(struct masker *masker, events_sink *sink, void *context)
{
    if (!masker || !sink)
        abort(); /* a writer without a masker would be a way around it */
    struct events_writer *writer = xcalloc(1, sizeof(*writer));
    writer->masker = masker;
    writer->sink = sink;
    writer->context = context;
    writer->fd = -1;
    return writer;
}

struct events_writer *events_writer_new_fd(struct masker *masker, int fd)
{
    struct events_writer *writer = events_writer_new(masker, fd_sink, NULL);
    writer->context = writer;
    writer->fd = fd;
    return writer;
}

void events_writer_free(struct events_writer *writer)
{
    struct error ignored = {0};
    events_writer_flush(writer, &ignored);
    buf_free(&writer->pending);
    free(writer);
}

/* Valid UTF-8 for JSON: each byte that does not start a well-formed sequence becomes U+FFFD. */
static void utf8_sanitize(const char *s, size_t len, struct buf *out)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        size_t n = c < 0x80                   ? 1
                   : (c >= 0xC2 && c <= 0xDF) ? 2
                   : (c >= 0xE0 && c <= 0xEF) ? 3
                   : (c >= 0xF0 && c <= 0xF4) ? 4
                                              : 0;
        bool ok = n > 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++)
            ok = (u[i + k] & 0xC0) == 0x80;
        if (ok && n == 3) /* no overlong forms, no surrogates */
            ok = !(c == 0xE0 && u[i + 1] < 0xA0) && !(c == 0xED && u[i + 1] >= 0xA0);
        if (ok && n == 4)
            ok = !(c == 0xF0 && u[i + 1] < 0x90) && !(c == 0xF4 && u[i + 1] >= 0x90);
        if (ok) {
            buf_append(out, s + i, n);
            i += n;
        } else {
            buf_puts(out, "\xEF\xBF\xBD");
            i++;
        }
    }
}

/* The only way a string gets into an event: made valid UTF-8, then masked. */
static json_t *masked_string(struct events_writer *writer, const char *s, size_t len)
{
    struct buf valid = BUF_INIT, masked = BUF_INIT;
    utf8_sanitize(s, len, &valid);
    masker_mask_into(writer->masker, buf_cstr(&valid), valid.len, &masked);
    json_t *value = json_stringn(buf_cstr(&masked), masked.len);
    if (!value) { /* cannot happen with valid secrets; never let a string through unencoded */
        buf_reset(&valid);
        utf8_sanitize(buf_cstr(&masked), masked.len, &valid);
        value = json_stringn(buf_cstr(&valid), valid.len);
    }
    buf_free(&valid);
    buf_free(&masked);
    return value;
}

static void set_masked(struct events_writer *writer, json_t *object, const char *key,
                       const char *value)
{
    if (value)
        json_object_set_new(object, key, masked_string(writer, value, strlen(value)));
}

void events_time_now(char *out, size_t size)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

static json_t *event_new(enum events_kind kind)
{
    char time[EVENTS_TIME_SIZE];
    events_time_now(time, sizeof time);
    return json_pack("{s:s, s:s}", "event", kind_names[kind], "time", time);
}

static int event_write(struct events_writer *writer, json_t *event, struct error *err)
{
    char *text = json_dumps(event, JSON_COMPACT);
    json_decref(event);
    if (!text)
        return error_set(err, ENOMEM, "encoding an event");
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len++] = '\n';
    text[len] = '\0';
    int rc = writer->sink(writer->context, text, len, err);
    free(text);
    return rc;
}

static json_t *outputs_object(struct events_writer *writer, const struct events_output *outputs,
                              size_t count)
{
    json_t *object = json_object();
    for (size_t i = 0; i < count; i++) {
        json_t *name = masked_string(writer, outputs[i].name, strlen(outputs[i].name));
        json_object_set_new(object, json_string_value(name),
                            masked_string(writer, outputs[i].value, strlen(outputs[i].value)));
        json_decref(name);
    }
    return object;
}

int events_job_started(struct events_writer *writer, const char *job_id, const char *name,
                       struct error *err)
{
    json_t *event = event_new(EVENTS_JOB_STARTED);
    set_masked(writer, event, "job_id", job_id ? job_id : "");
    set_masked(writer, event, "name", name ? name : "");
    return event_write(writer, event, err);
}

int events_step_started(struct events_writer *writer, int step, const char *id, const char *name,
                        enum events_stage stage, struct error *err)
{
    json_t *event = event_new(EVENTS_STEP_STARTED);
    json_object_set_new(event, "step", json_integer(step));
    set_masked(writer, event, "id", id ? id : "");
    set_masked(writer, event, "name", name ? name : "");
    json_object_set_new(event, "stage", json_string(stage_names[stage]));
    return event_write(writer, event, err);
}

int events_log(struct events_writer *writer, int step, const char *line, size_t len,
               struct error *err)
{
    json_t *event = event_new(EVENTS_LOG);
    json_object_set_new(event, "step", json_integer(step));
    json_object_set_new(event, "line", masked_string(writer, line, len));
    return event_write(writer, event, err);
}

/* The first max UTF-16 code units of a valid UTF-8 string, as .NET's message[..max]. */
static size_t utf16_prefix_bytes(const char *s, size_t len, size_t max)
{
    size_t units = 0, i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        size_t u = n == 4 ? 2 : 1;
        if (units + u > max)
            break;
        units += u;
        i += n;
    }
    return i;
}

int events_annotation(struct events_writer *writer, int step,
                      const struct step_annotation *annotation, struct error *err)
{
    if (step != writer->annotation_step) {
        writer->annotation_step = step;
        memset(writer->annotation_counts, 0, sizeof(writer->annotation_counts));
    }
    if (writer->annotation_counts[annotation->level]++ >= ANNOTATIONS_PER_LEVEL)
        return 0; /* its log line was written; GitHub keeps no more annotations */
    json_t *event = event_new(EVENTS_ANNOTATION);
    json_object_set_new(event, "step", json_integer(step));
    json_object_set_new(event, "level", json_string(level_names[annotation->level]));
    const char *message = annotation->message ? annotation->message : "";
    json_t *masked = masked_string(writer, message, strlen(message));
    size_t cut = utf16_prefix_bytes(json_string_value(masked), json_string_length(masked),
                                    ANNOTATION_MESSAGE_MAX);
    json_object_set_new(event, "message", json_stringn(json_string_value(masked), cut));
    json_decref(masked);
    set_masked(writer, event, "file", annotation->file);
    set_masked(writer, event, "title", annotation->title);
    set_masked(writer, event, "repo", annotation->repo);
    const struct {
        const char *key;
        int value;
    } numbers[] = {{"line", annotation->line},
                   {"end_line", annotation->end_line},
                   {"col", annotation->col},
                   {"end_column", annotation->end_column}};
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
        if (numbers[i].value)
            json_object_set_new(event, numbers[i].key, json_integer(numbers[i].value));
    return event_write(writer, event, err);
}

int events_step_command_result(struct events_writer *writer, int step,
                               const struct step_command_result *result, struct error *err)
{
    for (size_t i = 0; i < result->count; i++) {
        const struct step_action *action = &result->actions[i];
        int rc = 0;
        if (action->kind == STEP_ACTION_LOG)
            rc = events_log(writer, step, action->text, strlen(action->text), err);
        else if (action->kind == STEP_ACTION_ANNOTATION)
            rc = events_annotation(writer, step, &action->annotation, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int events_step_summary(struct events_writer *writer, int step, const char *markdown, size_t len,
                        struct error *err)
{
    json_t *event = event_new(EVENTS_STEP_SUMMARY);
    json_object_set_new(event, "step", json_integer(step));
    json_object_set_new(event, "markdown", masked_string(writer, markdown, len));
    return event_write(writer, event, err);
}

int events_step_finished(struct events_writer *writer, int step, enum events_result outcome,
                         enum events_result conclusion, const struct events_output *outputs,
                         size_t output_count, struct error *err)
{
    json_t *event = event_new(EVENTS_STEP_FINISHED);
    json_object_set_new(event, "step", json_integer(step));
    json_object_set_new(event, "outcome", json_string(result_names[outcome]));
    json_object_set_new(event, "conclusion", json_string(result_names[conclusion]));
    json_object_set_new(event, "outputs", outputs_object(writer, outputs, output_count));
    return event_write(writer, event, err);
}

int events_job_finished(struct events_writer *writer, enum events_result result,
                        const struct events_output *outputs, size_t output_count, struct error *err)
{
    json_t *event = event_new(EVENTS_JOB_FINISHED);
    json_object_set_new(event, "result", json_string(result_names[result]));
    json_object_set_new(event, "outputs", outputs_object(writer, outputs, output_count));
    return event_write(writer, event, err);
}

/* ---- reading ---- */

static int name_index(const char *name, const char *const *names, size_t count)
{
    for (size_t i = 0; name && i < count; i++)
        if (strcmp(name, names[i]) == 0)
            return (int)i;
    return -1;
}

static int require_string(const json_t *root, const char *key, const char **out, struct error *err)
{
    *out = json_get_string(root, key);
    if (!*out)
        return error_set(err, EINVAL, "event: member '%s' is missing or not a string", key);
    return 0;
}

static int require_name(const json_t *root, const char *key, const char *const *names, size_t count,
                        int *out, struct error *err)
{
    const char *value;
    if (require_string(root, key, &value, err) < 0)
        return err->code;
    *out = name_index(value, names, count);
    if (*out < 0)
        return error_set(err, EINVAL, "event: unknown %s '%s'", key, value);
    return 0;
}

static int require_step(const json_t *root, int *step, struct error *err)
{
    int64_t value;
    if (!json_get_int(root, "step", &value) || value < 0 || value > 1000000)
        return error_set(err, EINVAL, "event: member 'step' is missing or not a step number");
    *step = (int)value;
    return 0;
}

static int optional_int(const json_t *root, const char *key)
{
    int64_t value;
    return json_get_int(root, key, &value) ? (int)value : 0;
}

static int require_outputs(const json_t *root, struct events_event *event, struct error *err)
{
    event->outputs = json_get(root, "outputs"); /* NULL: none */
    if (event->outputs && !json_is_object(event->outputs))
        return error_set(err, EINVAL, "event: member 'outputs' is not an object");
    const char *key;
    json_t *value;
    json_object_foreach(event->outputs, key, value)
    {
        if (!json_is_string(value))
            return error_set(err, EINVAL, "event: output '%s' is not a string", key);
    }
    return 0;
}

static int decode_members(const json_t *root, struct events_event *event, struct error *err)
{
    int stage, level, outcome, conclusion, result;
    switch (event->kind) {
    case EVENTS_JOB_STARTED:
        event->job_id = json_get_string(root, "job_id");
        event->name = json_get_string(root, "name");
        return 0;
    case EVENTS_STEP_STARTED:
        if (require_step(root, &event->step, err) < 0 ||
            require_name(root, "stage", stage_names, 3, &stage, err) < 0)
            return err->code;
        event->stage = (enum events_stage)stage;
        event->id = json_get_string(root, "id");
        event->name = json_get_string(root, "name");
        return 0;
    case EVENTS_LOG:
        if (require_step(root, &event->step, err) < 0)
            return err->code;
        return require_string(root, "line", &event->line, err);
    case EVENTS_ANNOTATION:
        if (require_step(root, &event->step, err) < 0 ||
            require_name(root, "level", level_names, 3, &level, err) < 0 ||
            require_string(root, "message", &event->annotation.message, err) < 0)
            return err->code;
        event->annotation.level = (enum annotation_level)level;
        event->annotation.file = json_get_string(root, "file");
        event->annotation.title = json_get_string(root, "title");
        event->annotation.repo = json_get_string(root, "repo");
        event->annotation.line = optional_int(root, "line");
        event->annotation.end_line = optional_int(root, "end_line");
        event->annotation.col = optional_int(root, "col");
        event->annotation.end_column = optional_int(root, "end_column");
        return 0;
    case EVENTS_STEP_SUMMARY:
        if (require_step(root, &event->step, err) < 0)
            return err->code;
        return require_string(root, "markdown", &event->markdown, err);
    case EVENTS_STEP_FINISHED:
        if (require_step(root, &event->step, err) < 0 ||
            require_name(root, "outcome", result_names, 4, &outcome, err) < 0 ||
            require_name(root, "conclusion", result_names, 4, &conclusion, err) < 0)
            return err->code;
        event->outcome = (enum events_result)outcome;
        event->conclusion = (enum events_result)conclusion;
        return require_outputs(root, event, err);
    case EVENTS_JOB_FINISHED:
        if (require_name(root, "result", result_names, 4, &result, err) < 0)
            return err->code;
        event->result = (enum events_result)result;
        return require_outputs(root, event, err);
    }
    return error_set(err, EINVAL, "event: unknown kind");
}

int events_decode(const char *line, size_t len, struct events_event *event, struct error *err)
{
    memset(event, 0, sizeof(*event));
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    json_t *root = json_load_text(line, len, "event", err);
    if (!root)
        return err->code;
    event->root = root;
    int kind;
    if (!json_is_object(root)) {
        error_set(err, EINVAL, "event: not a JSON object");
    } else if (require_name(root, "event", kind_names, sizeof(kind_names) / sizeof(kind_names[0]),
                            &kind, err) == 0) {
        event->kind = (enum events_kind)kind;
        event->time = json_get_string(root, "time");
        if (decode_members(root, event, err) == 0)
            return 0;
    }
    events_event_free(event);
    return err->code;
}

void events_event_free(struct events_event *event)
{
    json_decref(event->root);
    memset(event, 0, sizeof(*event));
}
