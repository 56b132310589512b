/* events: the JSON-lines stream a worker writes to its parent (format: runner/EVENTS.md).
 * The writer owns no secrets but is bound to the job's masker: every string handed to it
 * (names, log lines, messages, output names and values) is masked before it is encoded, and
 * there is no way to write an event around it. The decoder is what the parent reads with. */
#ifndef HARRIER_RUNNER_EVENTS_H
#define HARRIER_RUNNER_EVENTS_H

#include "lib/error.h"
#include "runner/masker.h"
#include "runner/step_commands.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum events_kind {
    EVENTS_JOB_STARTED,
    EVENTS_STEP_STARTED,
    EVENTS_LOG,
    EVENTS_ANNOTATION,
    EVENTS_STEP_SUMMARY,
    EVENTS_STEP_FINISHED,
    EVENTS_JOB_FINISHED,
};

enum events_stage { EVENTS_STAGE_PRE, EVENTS_STAGE_MAIN, EVENTS_STAGE_POST };

/* GitHub's step outcome/conclusion and job result values. */
enum events_result {
    EVENTS_SUCCESS,
    EVENTS_FAILURE,
    EVENTS_CANCELLED,
    EVENTS_SKIPPED,
};

const char *events_result_name(enum events_result result); /* "success", "failure", … */

/* An event's "time": UTC, RFC 3339 with milliseconds ("2026-11-24T05:30:12.345Z"). */
enum { EVENTS_TIME_SIZE = 40 };
void events_time_now(char *out, size_t size);

struct events_output {
    const char *name;
    const char *value;
};

/* Where encoded lines go: called once per event with one line ending in '\n'. Returns 0, or
 * negative with err set. */
typedef int events_sink(void *context, const char *line, size_t len, struct error *err);

struct events_writer;

/* masker must not be NULL and must outlive the writer. */
struct events_writer *events_writer_new(struct masker *masker, events_sink *sink, void *context);
/* A writer whose sink writes whole lines to fd (blocking, retried on EINTR). */
struct events_writer *events_writer_new_fd(struct masker *masker, int fd);
void events_writer_free(struct events_writer *writer); /* flushes what is held first */
/* An fd writer that holds whole lines until events_writer_flush() (or 64 KiB of them): a writer
 * on an event loop flushes once per loop iteration, so a burst of events costs the reader one
 * wake-up. Turning it off flushes. */
void events_writer_set_buffered(struct events_writer *writer, bool buffered);
int events_writer_flush(struct events_writer *writer, struct error *err);

/* Steps are numbered from 1 in the order they run (pre, main, then post steps); step 0 is the
 * job itself (its set-up and tear-down lines). Each returns 0 or the sink's error. */
int events_job_started(struct events_writer *writer, const char *job_id, const char *name,
                       struct error *err);
int events_step_started(struct events_writer *writer, int step, const char *id, const char *name,
                        enum events_stage stage, struct error *err);
/* One line of log, without its line ending; invalid UTF-8 becomes U+FFFD, as the official
 * runner's decoder does. */
int events_log(struct events_writer *writer, int step, const char *line, size_t len,
               struct error *err);
/* The message is masked, then cut to 4096 characters, as the official runner's AddIssue; past
 * 10 annotations of a level in a step, nothing is written (GitHub keeps no more). */
int events_annotation(struct events_writer *writer, int step,
                      const struct step_annotation *annotation, struct error *err);
/* What a line of step output became (step_commands_process): its log lines and annotations, in
 * order. The other actions are the executor's to apply. */
int events_step_command_result(struct events_writer *writer, int step,
                               const struct step_command_result *result, struct error *err);
int events_step_summary(struct events_writer *writer, int step, const char *markdown, size_t len,
                        struct error *err);
int events_step_finished(struct events_writer *writer, int step, enum events_result outcome,
                         enum events_result conclusion, const struct events_output *outputs,
                         size_t output_count, struct error *err);
int events_job_finished(struct events_writer *writer, enum events_result result,
                        const struct events_output *outputs, size_t output_count,
                        struct error *err);

/* A decoded event. Strings are borrowed from `root` and live until events_event_free; those an
 * event kind does not have are NULL, numbers 0. */
struct events_event {
    enum events_kind kind;
    const char *time;
    int step;
    const char *job_id;                     /* job_started */
    const char *id;                         /* step_started */
    const char *name;                       /* job_started, step_started */
    enum events_stage stage;                /* step_started */
    const char *line;                       /* log */
    struct step_annotation annotation;      /* annotation */
    const char *markdown;                   /* step_summary */
    enum events_result outcome, conclusion; /* step_finished */
    enum events_result result;              /* job_finished */
    json_t *outputs; /* step_finished, job_finished: object of strings (borrowed from root) */
    json_t *root;
};

/* Decodes one line (its '\n' optional). Unknown members are ignored, so newer workers can add
 * some; an unknown event name or a missing required member is an error. */
int events_decode(const char *line, size_t len, struct events_event *event, struct error *err);
void events_event_free(struct events_event *event);

#endif
