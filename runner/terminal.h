/* terminal: local mode's view of a run for a person. Each job's events (runner/events.h)
 * become lines with a coloured job prefix, steps with their result and timing, `::group::`
 * sections as headers, errors and warnings highlighted; at the end a table of jobs with
 * their results and durations, the annotations with file:line, and the step summaries.
 * Optionally every step's log to a file (--logs-dir) or the raw events (--json). */
#ifndef HARRIER_RUNNER_TERMINAL_H
#define HARRIER_RUNNER_TERMINAL_H

#include "runner/events.h"

#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct terminal_options {
    bool color;
    bool json;            /* print the events themselves (with a "job" member) instead */
    bool verbose;         /* show the step header groups and ##[debug] lines */
    const char *logs_dir; /* a file per step below it; NULL = none */
};

struct terminal;

struct terminal *terminal_new(FILE *out, const struct terminal_options *options);
void terminal_free(struct terminal *t);

/* A job (one matrix configuration) that will report events; returns its number. */
int terminal_job_add(struct terminal *t, const char *label);
void terminal_job_event(struct terminal *t, int job, const struct events_event *event);
/* A line from harrier about the job (skipped, could not start…). */
void terminal_job_note(struct terminal *t, int job, const char *text);
/* The job's end as harrier saw it: result ("success", "failure", "cancelled", "skipped")
 * and how long it ran. */
void terminal_job_done(struct terminal *t, int job, const char *result, uint64_t duration_ms);

/* A workflow job (all its matrix configurations, or none when it did not run) ended, as
 * the jobs that need it see it: result, outputs (object) and, when harrier decided it
 * without running it, why. --json prints it as a "workflow_job_finished" line; the text
 * view has already shown it. */
void terminal_workflow_job_done(struct terminal *t, const char *job_id, const char *result,
                                const json_t *outputs, const char *note);

/* Prints the table of jobs, the annotations and the step summaries. cancelled: the run was
 * cancelled (Ctrl-C). */
void terminal_summary(struct terminal *t, bool cancelled);

#endif
