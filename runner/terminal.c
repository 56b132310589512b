#include "runner/terminal.h"

#include "lib/buf.h"
#include "lib/mem.h"
#include "lib/path.h"

#include <stdlib.h>
#include <string.h>

struct terminal_step {
    int number;
    char *name;
    bool in_header; /* inside the step's own "Run …" group, shown folded */
    bool seen_line;
    FILE *log;
};

struct terminal_job {
    char *label;
    char *result;
    uint64_t duration_ms;
    struct terminal_step step; /* the current step */
    int group_depth;
    struct buf summaries;
};

struct terminal {
    FILE *out;
    struct terminal_options options;
    struct terminal_job *jobs;
    size_t count, cap;
    struct buf annotations;
    size_t label_width;
};

/* Job prefixes cycle through these, as act does. */
static const char *const palette[] = {"\033[36m", "\033[33m", "\033[35m", "\033[32m",
                                      "\033[34m", "\033[96m", "\033[93m", "\033[95m"};
#define RESET "\033[0m"
#define BOLD "\033[1m"
#define DIM "\033[2m"
#define RED "\033[31m"
#define GREEN "\033[32m"
#define YELLOW "\033[33m"

struct terminal *terminal_new(FILE *out, const struct terminal_options *options)
{
    struct terminal *t = xcalloc(1, sizeof *t);
    t->out = out;
    t->options = *options;
    return t;
}

void terminal_free(struct terminal *t)
{
    for (size_t i = 0; i < t->count; i++) {
        struct terminal_job *j = &t->jobs[i];
        free(j->label);
        free(j->result);
        free(j->step.name);
        if (j->step.log)
            fclose(j->step.log);
        buf_free(&j->summaries);
    }
    free(t->jobs);
    buf_free(&t->annotations);
    free(t);
}

int terminal_job_add(struct terminal *t, const char *label)
{
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->jobs = xrealloc(t->jobs, t->cap * sizeof *t->jobs);
    }
    struct terminal_job *j = &t->jobs[t->count];
    memset(j, 0, sizeof *j);
    j->label = xstrdup(label);
    if (strlen(label) > t->label_width)
        t->label_width = strlen(label);
    return (int)t->count++;
}

static const char *color(const struct terminal *t, const char *code)
{
    return t->options.color ? code : "";
}

/* A log line without its ANSI colour codes, for a terminal or file that has no colours. */
static char *without_colors(const char *line)
{
    struct buf b = BUF_INIT;
    for (const char *p = line; *p; p++) {
        if (p[0] == '\x1b' && p[1] == '[') {
            const char *end = p + 2 + strspn(p + 2, "0123456789;");
            if (*end == 'm') {
                p = end;
                continue;
            }
        }
        buf_putc(&b, *p);
    }
    return buf_steal(&b);
}

static void prefix(struct terminal *t, int job)
{
    fprintf(t->out, "%s[%s]%s ", color(t, palette[job % 8]), t->jobs[job].label, color(t, RESET));
}

/* A file-system-safe version of a name for --logs-dir. */
static char *safe_name(const char *name)
{
    char *s = xstrdup(name);
    for (char *p = s; *p; p++)
        if (*p == '/' || *p == '\\' || *p == ' ' || *p == ':' || (unsigned char)*p < 32)
            *p = '_';
    return s;
}

static void open_step_log(struct terminal *t, struct terminal_job *j)
{
    if (!t->options.logs_dir)
        return;
    cleanup_free char *job_dir_name = safe_name(j->label);
    cleanup_free char *dir = path_join(t->options.logs_dir, job_dir_name);
    struct error err = {0};
    if (path_mkdir_all(dir, 0755, &err) < 0)
        return;
    cleanup_free char *step_name = safe_name(j->step.name ? j->step.name : "job");
    cleanup_free char *file = xasprintf("%s/%02d_%s.log", dir, j->step.number, step_name);
    j->step.log = fopen(file, "w");
}

static void show_log_line(struct terminal *t, int job, int step, const char *line)
{
    struct terminal_job *j = &t->jobs[job];
    if (j->step.log)
        fprintf(j->step.log, "%s\n", line);
    cleanup_free char *plain =
        t->options.color || !strchr(line, '\x1b') ? NULL : without_colors(line);
    if (plain)
        line = plain;
    /* The job's own bookkeeping lines, which GitHub shows in "Set up job" and "Complete job":
     * here with -v only. Its other lines (downloads, errors) always. */
    static const char *const bookkeeping[] = {
        "Current runner version: ",     "Runner name: ", "Machine name: ",
        "Evaluate and set job outputs", "Set output '",  "Cleaning up orphan processes"};
    for (size_t i = 0;
         step <= 0 && !t->options.verbose && i < sizeof bookkeeping / sizeof *bookkeeping; i++)
        if (str_starts_with(line, bookkeeping[i]))
            return;
    /* The worker opens each step with a group showing the script: folded here. */
    if (str_starts_with(line, "##[group]") && !j->step.seen_line && j->step.number > 0) {
        j->step.in_header = true;
        j->step.seen_line = true;
        return;
    }
    j->step.seen_line = true;
    if (j->step.in_header) {
        if (str_starts_with(line, "##[endgroup]"))
            j->step.in_header = false;
        if (!t->options.verbose)
            return;
    }
    const char *indent = j->group_depth ? "  " : "";
    if (str_starts_with(line, "##[group]")) {
        prefix(t, job);
        fprintf(t->out, "  %s▸ %s%s\n", color(t, BOLD), line + 9, color(t, RESET));
        j->group_depth++;
    } else if (str_starts_with(line, "##[endgroup]")) {
        if (j->group_depth)
            j->group_depth--;
    } else if (str_starts_with(line, "##[error]")) {
        prefix(t, job);
        fprintf(t->out, "  %s%s%sError: %s%s\n", indent, color(t, RED), color(t, BOLD), line + 9,
                color(t, RESET));
    } else if (str_starts_with(line, "##[warning]")) {
        prefix(t, job);
        fprintf(t->out, "  %s%sWarning: %s%s\n", indent, color(t, YELLOW), line + 11,
                color(t, RESET));
    } else if (str_starts_with(line, "##[notice]")) {
        prefix(t, job);
        fprintf(t->out, "  %sNotice: %s\n", indent, line + 10);
    } else if (str_starts_with(line, "##[debug]")) {
        if (t->options.verbose) {
            prefix(t, job);
            fprintf(t->out, "  %s%sDebug: %s%s\n", indent, color(t, DIM), line + 9,
                    color(t, RESET));
        }
    } else {
        prefix(t, job);
        fprintf(t->out, "  %s| %s\n", indent, line);
    }
}

static void add_annotation(struct terminal *t, int job, const struct step_annotation *a)
{
    static const char *const levels[] = {"error", "warning", "notice"};
    buf_printf(&t->annotations, "  %s%s%s", color(t, a->level == ANNOTATION_ERROR ? RED : YELLOW),
               levels[a->level], color(t, RESET));
    if (a->file) {
        buf_printf(&t->annotations, " %s", a->file);
        if (a->line)
            buf_printf(&t->annotations, ":%d", a->line);
        if (a->col)
            buf_printf(&t->annotations, ":%d", a->col);
    }
    buf_printf(&t->annotations, " [%s]", t->jobs[job].label);
    if (a->title)
        buf_printf(&t->annotations, " %s:", a->title);
    buf_printf(&t->annotations, " %s\n", a->message ? a->message : "");
}

static void json_event(struct terminal *t, int job, const struct events_event *ev)
{
    json_t *copy = json_deep_copy(ev->root);
    json_object_set_new(copy, "job", json_string(t->jobs[job].label));
    char *line = json_dumps(copy, JSON_COMPACT);
    fprintf(t->out, "%s\n", line);
    free(line);
    json_decref(copy);
}

static void step_finished(struct terminal *t, int job, const struct events_event *ev)
{
    struct terminal_job *j = &t->jobs[job];
    const char *name = j->step.name ? j->step.name : "";
    prefix(t, job);
    switch (ev->conclusion) {
    case EVENTS_SUCCESS:
        if (ev->outcome == EVENTS_FAILURE)
            fprintf(t->out, "%s✓ %s (failed, continue-on-error)%s\n", color(t, YELLOW), name,
                    color(t, RESET));
        else
            fprintf(t->out, "%s✓%s %s\n", color(t, GREEN), color(t, RESET), name);
        break;
    case EVENTS_FAILURE:
        fprintf(t->out, "%s✗ %s%s\n", color(t, RED), name, color(t, RESET));
        break;
    case EVENTS_CANCELLED:
        fprintf(t->out, "%s⊘ %s (cancelled)%s\n", color(t, YELLOW), name, color(t, RESET));
        break;
    case EVENTS_SKIPPED:
        fprintf(t->out, "%s- %s (skipped)%s\n", color(t, DIM), name, color(t, RESET));
        break;
    }
    if (j->step.log) {
        fclose(j->step.log);
        j->step.log = NULL;
    }
}

void terminal_job_event(struct terminal *t, int job, const struct events_event *ev)
{
    struct terminal_job *j = &t->jobs[job];
    if (t->options.json) {
        json_event(t, job, ev);
    }
    switch (ev->kind) {
    case EVENTS_STEP_STARTED:
        if (j->step.log)
            fclose(j->step.log);
        free(j->step.name);
        j->step = (struct terminal_step){.number = ev->step, .name = xstrdup(ev->name)};
        j->group_depth = 0;
        open_step_log(t, j);
        if (!t->options.json) {
            prefix(t, job);
            fprintf(t->out, "%s▶ %s%s\n", color(t, BOLD), ev->name, color(t, RESET));
        }
        break;
    case EVENTS_LOG:
        if (!t->options.json)
            show_log_line(t, job, ev->step, ev->line);
        else if (j->step.log)
            fprintf(j->step.log, "%s\n", ev->line);
        break;
    case EVENTS_ANNOTATION:
        add_annotation(t, job, &ev->annotation);
        break;
    case EVENTS_STEP_SUMMARY:
        buf_printf(&j->summaries, "%s%s", ev->markdown,
                   str_ends_with(ev->markdown, "\n") ? "" : "\n");
        break;
    case EVENTS_STEP_FINISHED:
        if (!t->options.json)
            step_finished(t, job, ev);
        break;
    case EVENTS_JOB_STARTED:
    case EVENTS_JOB_FINISHED:
        break;
    }
    fflush(t->out);
}

void terminal_job_note(struct terminal *t, int job, const char *text)
{
    if (t->options.json)
        return;
    prefix(t, job);
    fprintf(t->out, "%s\n", text);
    fflush(t->out);
}

void terminal_job_done(struct terminal *t, int job, const char *result, uint64_t duration_ms)
{
    struct terminal_job *j = &t->jobs[job];
    free(j->result);
    j->result = xstrdup(result);
    j->duration_ms = duration_ms;
    if (j->step.log) {
        fclose(j->step.log);
        j->step.log = NULL;
    }
    if (t->options.json)
        return;
    prefix(t, job);
    const char *c = strcmp(result, "success") == 0     ? GREEN
                    : strcmp(result, "skipped") == 0   ? DIM
                    : strcmp(result, "cancelled") == 0 ? YELLOW
                                                       : RED;
    fprintf(t->out, "%sJob %s%s (%.1fs)\n", color(t, c), result, color(t, RESET),
            (double)duration_ms / 1000.0);
    fflush(t->out);
}

void terminal_workflow_job_done(struct terminal *t, const char *job_id, const char *result,
                                const json_t *outputs, const char *note)
{
    if (!t->options.json)
        return;
    char stamp[EVENTS_TIME_SIZE];
    events_time_now(stamp, sizeof stamp);
    json_t *line = json_pack("{s:s, s:s, s:s, s:s, s:O}", "event", "workflow_job_finished", "time",
                             stamp, "job_id", job_id, "result", result, "outputs", outputs);
    if (note)
        json_object_set_new(line, "note", json_string(note));
    char *text = json_dumps(line, JSON_COMPACT);
    fprintf(t->out, "%s\n", text);
    fflush(t->out);
    free(text);
    json_decref(line);
}

void terminal_summary(struct terminal *t, bool cancelled)
{
    if (t->options.json)
        return;
    int width = (int)(t->label_width > 3 ? t->label_width : 3);
    fprintf(t->out, "\n%s%-*s  %-9s  %s%s\n", color(t, BOLD), width, "Job", "Result", "Duration",
            color(t, RESET));
    for (size_t i = 0; i < t->count; i++) {
        struct terminal_job *j = &t->jobs[i];
        const char *result = j->result ? j->result : "not run";
        const char *c = strcmp(result, "success") == 0     ? GREEN
                        : strcmp(result, "failure") == 0   ? RED
                        : strcmp(result, "cancelled") == 0 ? YELLOW
                                                           : DIM;
        fprintf(t->out, "%-*s  %s%-9s%s  %.1fs\n", width, j->label, color(t, c), result,
                color(t, RESET), (double)j->duration_ms / 1000.0);
    }
    if (cancelled)
        fprintf(t->out, "%sThe run was cancelled.%s\n", color(t, YELLOW), color(t, RESET));
    if (t->annotations.len)
        fprintf(t->out, "\n%sAnnotations%s\n%s", color(t, BOLD), color(t, RESET),
                t->annotations.data);
    for (size_t i = 0; i < t->count; i++) {
        struct terminal_job *j = &t->jobs[i];
        if (j->summaries.len)
            fprintf(t->out, "\n%sSummary of %s%s\n%s", color(t, BOLD), j->label, color(t, RESET),
                    j->summaries.data);
    }
    fflush(t->out);
}
