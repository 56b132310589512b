#include "runner/exec.h"

#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/path.h"
#include "runner/events.h"
#include "runner/gitinfo.h"
#include "runner/local_context.h"
#include "runner/planner.h"
#include "runner/terminal.h"
#include "runner/worker_process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

enum job_state { JOB_WAITING, JOB_RUNNING, JOB_DONE };

struct exec_state;
struct exec_workflow;

struct exec_job {
    struct exec_state *s;
    struct exec_workflow *owner;
    const struct workflow_job *job;
    const char *id;
    enum job_state state;
    bool selected;
    const char *result; /* success, failure, cancelled, skipped */
    json_t *outputs;
    struct matrix matrix;
    size_t *configs; /* indexes into matrix.items that --matrix kept */
    size_t config_count, next_config, running, finished;
    bool fail_fast_tripped;
};

struct exec_workflow {
    struct plan_workflow *wf;
    struct exec_job *jobs;
    size_t count;
};

struct exec_run {
    struct exec_run *next, *prev; /* the state's list of live runs */
    struct exec_job *job;
    size_t config;
    int term; /* the terminal's job number */
    char *work, *message_path;
    struct worker_process *worker; /* NULL once it is done */
    int exit_code;
    bool reported; /* a job_finished event arrived */
    enum events_result result;
    json_t *outputs;
    uint64_t started_ms;
};

struct exec_state {
    uv_loop_t loop;
    const struct exec_options *o;
    struct gitinfo git;
    json_t *github;
    struct plan_contexts ctx;
    struct terminal *term;
    struct sandbox_job *procs;
    struct exec_workflow *workflows;
    size_t workflow_count;
    struct exec_run *runs;
    int running, max_jobs;
    bool cancel, any_failed, closing;
    char *run_id, *run_dir;
    char *actions_cache; /* <work>/_actions: downloaded actions, shared by runs */
    uv_signal_t sigint, sigterm;
    uv_timer_t tick; /* schedules from a fresh loop turn, never from a worker's callbacks */
    int interrupts;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void say_error(const char *what, const struct error *err)
{
    char text[ERROR_MESSAGE_MAX + ERROR_WHERE_MAX + 64];
    /* GitHub's workflow messages name their file and position themselves. */
    const char *shown = err->where[0] && str_starts_with(err->message, err->where)
                            ? err->message
                            : error_format(err, text, sizeof text);
    fprintf(stderr, "harrier exec: %s%s%s\n", what ? what : "", what ? ": " : "", shown);
}

/* --- finding and loading workflows ------------------------------------------------------- */

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The .yml and .yaml files of dir (names only), sorted. */
static char **list_workflow_files(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    *count = 0;
    char **files = xcalloc(1, sizeof *files);
    if (!d)
        return files;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' ||
            !(str_ends_with(e->d_name, ".yml") || str_ends_with(e->d_name, ".yaml")))
            continue;
        files = xrealloc(files, (*count + 2) * sizeof *files);
        files[(*count)++] = xstrdup(e->d_name);
        files[*count] = NULL;
    }
    closedir(d);
    qsort(files, *count, sizeof *files, compare_strings);
    return files;
}

static void add_workflow(struct exec_state *s, struct plan_workflow *wf)
{
    s->workflows = xrealloc(s->workflows, (s->workflow_count + 1) * sizeof *s->workflows);
    struct exec_workflow *ew = &s->workflows[s->workflow_count++];
    ew->wf = wf;
    ew->count = wf->template->jobs_count;
    ew->jobs = xcalloc(ew->count + 1, sizeof *ew->jobs);
    for (size_t i = 0; i < ew->count; i++)
        ew->jobs[i] = (struct exec_job){.s = s,
                                        .job = &wf->template->jobs[i],
                                        .id = planner_job_id(&wf->template->jobs[i]),
                                        .selected = true};
    for (size_t i = 0; i < ew->count; i++)
        ew->jobs[i].owner = ew;
}

/* Every workflow file of folder (not recursing) that the event triggers; prefix is how
 * messages name the files. */
static int load_folder(struct exec_state *s, json_t *payload, const char *folder,
                       const char *prefix)
{
    struct error err = {0};
    size_t n;
    char **files = list_workflow_files(folder, &n);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        cleanup_free char *path = path_join(folder, files[i]);
        cleanup_free char *name = xasprintf("%s%s", prefix, files[i]);
        struct plan_workflow *wf;
        if (planner_load(path, name, &wf, &err) < 0) {
            say_error(NULL, &err);
            rc = -1;
        } else if (planner_matches_event(wf, s->o->event_name, payload, &s->git)) {
            add_workflow(s, wf);
        } else {
            planner_workflow_free(wf);
        }
    }
    str_list_free(files);
    if (rc == 0 && n == 0)
        fprintf(stderr, "harrier exec: no workflow files in %s; name one with -W\n", folder);
    return n == 0 ? -1 : rc;
}

/* -W FILE runs that file whatever the event; -W DIR, or the checkout's .github/workflows,
 * the files the event triggers. */
static int load_workflows(struct exec_state *s, json_t *payload)
{
    const struct exec_options *o = s->o;
    struct error err = {0};
    struct stat st;
    if (o->workflow_file && stat(o->workflow_file, &st) == 0 && S_ISDIR(st.st_mode))
        return load_folder(s, payload, o->workflow_file, "");
    if (o->workflow_file) {
        struct plan_workflow *wf;
        if (planner_load(o->workflow_file, o->workflow_file, &wf, &err) < 0) {
            say_error(NULL, &err);
            return -1;
        }
        add_workflow(s, wf);
        return 0;
    }
    cleanup_free char *folder = path_join(s->git.workdir, ".github/workflows");
    return load_folder(s, payload, folder, ".github/workflows/");
}

static struct exec_job *find_job(struct exec_workflow *ew, const char *id)
{
    for (size_t i = 0; i < ew->count; i++)
        if (strcmp(ew->jobs[i].id, id) == 0)
            return &ew->jobs[i];
    return NULL;
}

static const char *need_id(const struct token *t)
{
    return t && t->type == TOKEN_STRING ? t->u.string : "";
}

static void select_with_needs(struct exec_workflow *ew, struct exec_job *j)
{
    if (j->selected)
        return;
    j->selected = true;
    for (size_t i = 0; i < j->job->needs_count; i++) {
        struct exec_job *dep = find_job(ew, need_id(j->job->needs[i]));
        if (dep)
            select_with_needs(ew, dep);
    }
}

/* -j JOB: that job and everything it needs, in every workflow that has it. */
static int select_jobs(struct exec_state *s)
{
    if (!s->o->job)
        return 0;
    bool found = false;
    for (size_t w = 0; w < s->workflow_count; w++) {
        struct exec_workflow *ew = &s->workflows[w];
        for (size_t i = 0; i < ew->count; i++)
            ew->jobs[i].selected = false;
        struct exec_job *j = find_job(ew, s->o->job);
        if (j) {
            select_with_needs(ew, j);
            found = true;
        }
    }
    if (!found)
        fprintf(stderr, "harrier exec: no job '%s' in the workflows for this event (see --list)\n",
                s->o->job);
    return found ? 0 : -1;
}

/* --- --list and --graph ---------------------------------------------------------------- */

static int job_stage(struct exec_workflow *ew, struct exec_job *j, int depth)
{
    int stage = 0;
    for (size_t i = 0; i < j->job->needs_count && depth < 256; i++) {
        struct exec_job *dep = find_job(ew, need_id(j->job->needs[i]));
        if (dep) {
            int st = job_stage(ew, dep, depth + 1) + 1;
            if (st > stage)
                stage = st;
        }
    }
    return stage;
}

static const char *literal_name(const struct exec_job *j)
{
    const struct token *n = j->job->name;
    return n && n->type == TOKEN_STRING ? n->u.string : j->id;
}

static void print_list(struct exec_state *s)
{
    printf("%-6s %-20s %-28s %-20s %s\n", "Stage", "Job ID", "Job name", "Workflow name",
           "Workflow file");
    for (size_t w = 0; w < s->workflow_count; w++) {
        struct exec_workflow *ew = &s->workflows[w];
        for (size_t i = 0; i < ew->count; i++) {
            struct exec_job *j = &ew->jobs[i];
            if (j->selected)
                printf("%-6d %-20s %-28s %-20s %s\n", job_stage(ew, j, 0), j->id, literal_name(j),
                       ew->wf->name, ew->wf->rel_path);
        }
    }
}

static void print_graph(struct exec_state *s)
{
    for (size_t w = 0; w < s->workflow_count; w++) {
        struct exec_workflow *ew = &s->workflows[w];
        printf("%s (%s)\n", ew->wf->name, ew->wf->rel_path);
        int max_stage = 0;
        for (size_t i = 0; i < ew->count; i++) {
            int st = job_stage(ew, &ew->jobs[i], 0);
            if (st > max_stage)
                max_stage = st;
        }
        for (int st = 0; st <= max_stage; st++) {
            printf("  %s stage %d:", st == 0 ? "┌" : st == max_stage ? "└" : "├", st);
            for (size_t i = 0; i < ew->count; i++) {
                struct exec_job *j = &ew->jobs[i];
                if (!j->selected || job_stage(ew, j, 0) != st)
                    continue;
                printf(" %s", j->id);
                if (j->job->needs_count) {
                    printf(" (needs");
                    for (size_t n = 0; n < j->job->needs_count; n++)
                        printf("%s%s", n ? ", " : " ", need_id(j->job->needs[n]));
                    printf(")");
                }
                printf(";");
            }
            printf("\n");
            if (st < max_stage)
                printf("  │      ↓\n");
        }
    }
}

/* --- needs and job results ------------------------------------------------------------- */

static json_t *needs_context(struct exec_job *j, struct plan_needs *needs)
{
    json_t *ctx = json_object();
    *needs = (struct plan_needs){
        .context = ctx, .all_succeeded = true, .cancel_requested = j->s->cancel};
    for (size_t i = 0; i < j->job->needs_count; i++) {
        struct exec_job *dep = find_job(j->owner, need_id(j->job->needs[i]));
        if (!dep)
            continue;
        json_object_set_new(ctx, dep->id,
                            json_pack("{s:s, s:O}", "result", dep->result ? dep->result : "",
                                      "outputs", dep->outputs ? dep->outputs : json_object()));
        if (!dep->result || strcmp(dep->result, "success") != 0)
            needs->all_succeeded = false;
        if (dep->result && strcmp(dep->result, "failure") == 0)
            needs->any_failed = true;
        if (dep->result && strcmp(dep->result, "cancelled") == 0)
            needs->any_cancelled = true;
    }
    return ctx;
}

static bool needs_done(struct exec_job *j)
{
    for (size_t i = 0; i < j->job->needs_count; i++) {
        struct exec_job *dep = find_job(j->owner, need_id(j->job->needs[i]));
        if (dep && dep->state != JOB_DONE)
            return false;
    }
    return true;
}

static void schedule(struct exec_state *s);

static void on_tick(uv_timer_t *t)
{
    schedule(t->data);
}

static void job_done(struct exec_job *j, const char *result, const char *note)
{
    j->state = JOB_DONE;
    j->result = result;
    if (!j->outputs)
        j->outputs = json_object();
    if (strcmp(result, "failure") == 0 || strcmp(result, "cancelled") == 0)
        j->s->any_failed = true;
    if (note) {
        int t = terminal_job_add(j->s->term, literal_name(j));
        terminal_job_note(j->s->term, t, note);
        terminal_job_done(j->s->term, t, result, 0);
    }
    terminal_workflow_job_done(j->s->term, j->id, result, j->outputs, note);
}

/* --- running a configuration in a worker --------------------------------------------------- */

static void run_free(struct exec_run *r)
{
    struct exec_state *s = r->job->s;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->runs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    struct error err = {0};
    if (r->work)
        path_remove_all(r->work, &err);
    free(r->work);
    free(r->message_path);
    json_decref(r->outputs);
    free(r);
}

/* One line of the worker's event stream. */
static void on_event_line(void *data, const char *line, size_t len)
{
    struct exec_run *r = data;
    struct events_event ev;
    struct error err = {0};
    if (events_decode(line, len, &ev, &err) < 0) {
        log_debug("ignoring a worker line that is not an event: %s", err.message);
        return;
    }
    terminal_job_event(r->job->s->term, r->term, &ev);
    if (ev.kind == EVENTS_JOB_FINISHED) {
        r->reported = true;
        r->result = ev.result;
        json_decref(r->outputs);
        r->outputs = ev.outputs ? json_deep_copy(ev.outputs) : json_object();
    }
    events_event_free(&ev);
}

static void run_done(struct exec_run *r);

static void on_worker_exit(void *data, int exit_code)
{
    struct exec_run *r = data;
    r->worker = NULL;
    r->exit_code = exit_code;
    run_done(r);
}

static const char *result_name(enum events_result r)
{
    return events_result_name(r);
}

static void cancel_job_runs(struct exec_job *j);

/* A configuration's outputs join the job's as GitHub joins them: the runner leaves empty
 * values out of JobCompleted (§7.10), so across a matrix the last non-empty value of each
 * output wins and one configuration's empty value never erases another's. */
static void merge_outputs(struct exec_job *j, json_t *outputs)
{
    if (!j->outputs)
        j->outputs = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(outputs, k, v)
    {
        if (json_is_string(v) && *json_string_value(v))
            json_object_set(j->outputs, k, v);
    }
}

/* The worker is gone and every event it wrote was read. */
static void run_done(struct exec_run *r)
{
    struct exec_job *j = r->job;
    struct exec_state *s = j->s;
    const char *result;
    if (r->reported) {
        result = result_name(r->result);
    } else {
        cleanup_free char *note = xasprintf(
            "The worker ended (exit code %d) before it reported the job's end", r->exit_code);
        terminal_job_note(s->term, r->term, note);
        result = "failure";
    }
    terminal_job_done(s->term, r->term, result, now_ms() - r->started_ms);
    if (r->outputs)
        merge_outputs(j, r->outputs);
    /* A matrix job's result: failure wins, then cancelled, then success. */
    if (!j->result || strcmp(j->result, "success") == 0 || strcmp(result, "failure") == 0)
        j->result = strcmp(result, "failure") == 0     ? "failure"
                    : strcmp(result, "cancelled") == 0 ? "cancelled"
                    : j->result                        ? j->result
                                                       : "success";
    if (strcmp(result, "failure") == 0 && j->matrix.fail_fast && j->matrix.has_matrix &&
        !j->fail_fast_tripped) {
        j->fail_fast_tripped = true;
        cancel_job_runs(j);
    }
    j->running--;
    j->finished++;
    s->running--;
    if (j->finished == j->config_count) {
        const char *final = j->result ? j->result : "success";
        job_done(j, final, NULL);
    }
    run_free(r);
    uv_timer_start(&s->tick, on_tick, 0, 0);
}

/* The job's token: JWT-shaped as GitHub's (the official runner parses it), unsigned. */
static char *job_token(const char *run_id, const char *job_id)
{
    const char *header = "{\"typ\":\"JWT\",\"alg\":\"none\"}";
    cleanup_free char *claims =
        xasprintf("{\"orch_id\":\"%s.%s\",\"scp\":\"Actions.Results\"}", run_id, job_id);
    cleanup_free char *h = codec_base64url_encode(header, strlen(header));
    cleanup_free char *c = codec_base64url_encode(claims, strlen(claims));
    return xasprintf("%s.%s.", h, c);
}

static bool config_selected(const struct exec_options *o, const struct matrix_configuration *c)
{
    const char *k;
    json_t *want;
    json_object_foreach(o->matrix_filter, k, want)
    {
        json_t *have = c->matrix ? json_get(c->matrix, k) : NULL;
        if (!have)
            continue; /* as act: a filter only narrows matrices that have its key */
        cleanup_free char *text = NULL;
        if (json_is_string(have))
            text = xstrdup(json_string_value(have));
        else if (json_is_number(have))
            text = xasprintf("%g", json_number_value(have));
        else if (json_is_boolean(have))
            text = xstrdup(json_is_true(have) ? "true" : "false");
        if (!text || strcmp(text, json_string_value(want)) != 0)
            return false;
    }
    return true;
}

/* The job message of one configuration (new reference, or NULL with err set), planned with
 * what the job's needs left; *display gets its display name (caller frees). */
static json_t *config_message(struct exec_job *j, size_t index, char **display, struct error *err)
{
    struct exec_state *s = j->s;
    const struct matrix_configuration *config = &j->matrix.items[index];
    struct plan_needs needs;
    json_t *needs_ctx = needs_context(j, &needs);
    *display = planner_job_display_name(j->owner->wf, j->job, &s->ctx, &needs, config);
    cleanup_free char *token = job_token(s->run_id, j->id);
    struct plan_message_options mo = {.display_name = *display, .token = token};
    json_t *message = planner_job_message(j->owner->wf, j->job, &s->ctx, &needs, config, &mo, err);
    json_decref(needs_ctx);
    return message;
}

/* --messages-dir: <dir>/<job>-<configuration>.json, mode 0600 (it holds the secrets).
 * Returns the path (caller frees), or NULL with err set. */
static char *save_message_copy(struct exec_job *j, size_t index, const char *text,
                               struct error *err)
{
    const char *dir = j->s->o->messages_dir;
    char *copy = xasprintf("%s/%s-%zu.json", dir, j->id, index);
    if (path_mkdir_all(dir, 0755, err) < 0 ||
        path_write_file_atomic(copy, text, strlen(text), 0600, err) < 0) {
        free(copy);
        return NULL;
    }
    return copy;
}

static int write_message(struct exec_run *r, json_t *message, struct error *err)
{
    if (path_mkdir_all(r->work, 0755, err) < 0)
        return err->code;
    r->message_path = path_join(r->work, "job-message.json");
    cleanup_free char *text = json_dumps(message, JSON_INDENT(2));
    if (r->job->s->o->messages_dir) {
        cleanup_free char *copy = save_message_copy(r->job, r->config, text, err);
        if (!copy)
            return err->code;
    }
    return path_write_file_atomic(r->message_path, text, strlen(text), 0600, err);
}

static int spawn_worker(struct exec_run *r, struct error *err)
{
    struct exec_state *s = r->job->s;
    cleanup_free char *work_root = path_join(r->work, "_work");
    const char *argv[24] = {s->o->self_exe, "worker",  "--message", r->message_path,
                            "--work",       work_root, "--name",    "harrier"};
    size_t n = 8;
    argv[n++] = "--actions-cache";
    argv[n++] = s->actions_cache;
    argv[n++] = "--checkout";
    argv[n++] = s->git.workdir;
    const char *flags[][2] = {{"--actions-url", s->o->actions_url},
                              {"--node", s->o->node},
                              {"--offline", s->o->offline ? "" : NULL},
                              {"--no-checkout-copy", s->o->no_checkout_copy ? "" : NULL}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (!flags[i][1])
            continue;
        argv[n++] = flags[i][0];
        if (*flags[i][1])
            argv[n++] = flags[i][1];
    }
    if (!s->o->sandbox_fallback) {
        argv[n++] = "--sandbox";
        argv[n++] = sandbox_level_name(s->o->sandbox_level);
    }
    argv[n] = NULL;
    struct worker_process_options wo = {argv, on_event_line, on_worker_exit, r};
    return worker_process_start(&s->loop, s->procs, &wo, &r->worker, err);
}

static void start_run(struct exec_job *j)
{
    struct exec_state *s = j->s;
    size_t index = j->configs[j->next_config++];
    struct error err = {0};
    cleanup_free char *display = NULL;
    json_t *message = config_message(j, index, &display, &err);
    struct exec_run *r = xcalloc(1, sizeof *r);
    r->next = s->runs;
    if (s->runs)
        s->runs->prev = r;
    s->runs = r;
    r->job = j;
    r->config = index;
    r->term = terminal_job_add(s->term, display);
    r->started_ms = now_ms();
    r->work = xasprintf("%s/%s-%zu", s->run_dir, j->id, index);
    int rc = message ? write_message(r, message, &err) : err.code;
    json_decref(message);
    j->running++;
    s->running++;
    if (rc == 0)
        rc = spawn_worker(r, &err);
    if (rc < 0) {
        char text[ERROR_MESSAGE_MAX + ERROR_WHERE_MAX + 32];
        terminal_job_note(s->term, r->term, error_format(&err, text, sizeof text));
        r->exit_code = -1;
        run_done(r);
    }
}

/* Evaluates a ready job's `if` and strategy, as GitHub does once its needs are done. Returns
 * 0 with *skipped saying why it does not run, or NULL and j->configs holding the
 * configurations to run; negative with err set when the job fails before it starts. */
static int evaluate_job(struct exec_job *j, const char **skipped, struct error *err)
{
    struct exec_state *s = j->s;
    struct plan_needs needs;
    json_t *needs_ctx = needs_context(j, &needs);
    bool run = true;
    *skipped = NULL;
    int rc = planner_job_condition(j->owner->wf, j->job, &s->ctx, &needs, &run, err);
    if (rc == 0 && run)
        rc = planner_job_matrix(j->owner->wf, j->job, &s->ctx, &needs, &j->matrix, err);
    json_decref(needs_ctx);
    if (rc < 0)
        return rc;
    if (!run) {
        *skipped = "Skipped: the job's `if` is false";
        return 0;
    }
    j->configs = xcalloc(j->matrix.count + 1, sizeof *j->configs);
    for (size_t i = 0; i < j->matrix.count; i++)
        if (config_selected(s->o, &j->matrix.items[i]))
            j->configs[j->config_count++] = i;
    if (j->config_count == 0)
        *skipped = "Skipped: no matrix configuration is left to run";
    return 0;
}

/* Evaluates a ready job; returns false when it finished at once. */
static bool prepare_job(struct exec_job *j)
{
    struct error err = {0};
    const char *skipped;
    if (evaluate_job(j, &skipped, &err) < 0) {
        char text[ERROR_MESSAGE_MAX + ERROR_WHERE_MAX + 32];
        job_done(j, "failure", error_format(&err, text, sizeof text));
        return false;
    }
    if (skipped) {
        job_done(j, "skipped", skipped);
        return false;
    }
    j->state = JOB_RUNNING;
    return true;
}

static bool job_can_start_run(struct exec_job *j)
{
    if (j->state != JOB_RUNNING || j->next_config >= j->config_count)
        return false;
    if (j->s->running >= j->s->max_jobs)
        return false;
    return j->matrix.max_parallel <= 0 || (int)j->running < j->matrix.max_parallel;
}

/* Configurations that fail-fast or a cancel keeps from starting end as cancelled. */
static void drop_pending_runs(struct exec_job *j)
{
    while (j->next_config < j->config_count) {
        size_t index = j->configs[j->next_config++];
        int t = terminal_job_add(j->s->term,
                                 j->matrix.items[index].name ? j->matrix.items[index].name : j->id);
        terminal_job_done(j->s->term, t, "cancelled", 0);
        j->finished++;
        j->result = j->result && strcmp(j->result, "failure") == 0 ? "failure" : "cancelled";
    }
    if (j->finished == j->config_count && j->state == JOB_RUNNING)
        job_done(j, j->result ? j->result : "cancelled", NULL);
}

static void close_handles(struct exec_state *s)
{
    if (s->closing)
        return;
    s->closing = true;
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->tick, NULL);
    sandbox_job_free(s->procs);
    s->procs = NULL;
}

static void schedule(struct exec_state *s)
{
    bool progress = true;
    while (progress) {
        progress = false;
        for (size_t w = 0; w < s->workflow_count; w++) {
            struct exec_workflow *ew = &s->workflows[w];
            for (size_t i = 0; i < ew->count; i++) {
                struct exec_job *j = &ew->jobs[i];
                if (j->selected && j->state == JOB_WAITING && needs_done(j)) {
                    prepare_job(j);
                    progress = true;
                }
                if (j->state == JOB_RUNNING && (j->fail_fast_tripped || s->cancel))
                    drop_pending_runs(j);
                while (job_can_start_run(j)) {
                    start_run(j);
                    progress = true;
                }
            }
        }
    }
    if (s->running == 0)
        close_handles(s);
}

/* --- cancellation --------------------------------------------------------------------- */

/* Asks the job's running workers to cancel: as GitHub's cancel, the worker stops the step
 * and still runs the steps that ask for always() or cancelled(). */
static void cancel_workers(struct exec_state *s, struct exec_job *only)
{
    for (struct exec_run *r = s->runs; r; r = r->next)
        if (!only || r->job == only)
            worker_process_signal(r->worker, SIGINT);
}

static void cancel_job_runs(struct exec_job *j)
{
    cancel_workers(j->s, j);
}

static void on_interrupt(uv_signal_t *sig, int signum)
{
    (void)signum;
    struct exec_state *s = sig->data;
    s->interrupts++;
    if (s->interrupts == 1) {
        fprintf(stderr, "\nharrier exec: cancelling the run (Ctrl-C again to stop at once)\n");
        s->cancel = true;
        cancel_workers(s, NULL);
        schedule(s);
    } else {
        /* The second time: end every worker's whole tree now. */
        for (struct exec_run *r = s->runs; r; r = r->next)
            worker_process_end(r->worker);
    }
}

/* --- jobs done elsewhere (--needs) ----------------------------------------------------- */

static const char *const job_results[] = {"success", "failure", "cancelled", "skipped", NULL};

static const char *known_result(const char *text)
{
    for (const char *const *r = job_results; text && *r; r++)
        if (strcmp(*r, text) == 0)
            return *r;
    return NULL;
}

/* Marks one job of every workflow that has it as done with result and outputs; returns how
 * many workflows had it. */
static int mark_done(struct exec_state *s, const char *id, const char *result, json_t *outputs)
{
    int found = 0;
    for (size_t w = 0; w < s->workflow_count; w++) {
        struct exec_job *j = find_job(&s->workflows[w], id);
        if (!j)
            continue;
        found++;
        j->state = JOB_DONE;
        j->result = result;
        json_decref(j->outputs);
        j->outputs = json_object();
        merge_outputs(j, outputs);
    }
    return found;
}

/* Whether outputs is absent or an object of strings, as job outputs always are. */
static bool string_outputs(json_t *outputs)
{
    if (!outputs)
        return true;
    if (!json_is_object(outputs))
        return false;
    const char *key;
    json_t *value;
    json_object_foreach(outputs, key, value)
    {
        if (!json_is_string(value))
            return false;
    }
    return true;
}

/* --needs FILE: jobs that finished elsewhere, {"<job id>": {"result": …, "outputs": {…}}}.
 * They do not run here; the jobs that need them see these results and outputs, as the jobs
 * of a re-run see the jobs it keeps. A planner that feeds harrier's jobs one at a time
 * (`--dry-run --json`) gives here what the earlier ones ended with. */
static int load_needs(struct exec_state *s)
{
    const char *path = s->o->needs_path;
    if (!path)
        return 0;
    struct error err = {0};
    json_t *done = json_load_path(path, &err);
    if (!done) {
        say_error("--needs", &err);
        return -1;
    }
    int rc = json_is_object(done) ? 0 : -1;
    if (rc < 0)
        fprintf(stderr, "harrier exec: --needs %s: not a JSON object of jobs\n", path);
    const char *id;
    json_t *entry;
    json_object_foreach(done, id, entry)
    {
        const char *result = known_result(json_get_string(entry, "result"));
        json_t *outputs = json_get(entry, "outputs");
        if (!result || !string_outputs(outputs)) {
            fprintf(stderr,
                    "harrier exec: --needs %s: job '%s' needs a result (success, failure, "
                    "cancelled or skipped) and outputs as an object of strings\n",
                    path, id);
            rc = -1;
        } else if (mark_done(s, id, result, outputs) == 0) {
            fprintf(stderr, "harrier exec: --needs %s: no job '%s' in the workflows (see --list)\n",
                    path, id);
            rc = -1;
        }
        if (rc < 0)
            break;
    }
    json_decref(done);
    return rc;
}

/* --- dry run ----------------------------------------------------------------------------- */

static void set_error(json_t *job, const struct error *err)
{
    char text[ERROR_MESSAGE_MAX + ERROR_WHERE_MAX + 32];
    json_object_set_new(job, "state", json_string("failed"));
    json_object_set_new(job, "error", json_string(error_format(err, text, sizeof text)));
}

/* One ready job's configurations, each with its display name, matrix and (--messages-dir)
 * the file its job message went to. */
static void plan_configurations(struct exec_job *j, json_t *job)
{
    json_t *list = json_array();
    json_object_set_new(job, "state", json_string("ready"));
    json_object_set_new(job, "fail_fast", json_boolean(j->matrix.fail_fast));
    json_object_set_new(job, "max_parallel", json_integer(j->matrix.max_parallel));
    json_object_set_new(job, "configurations", list);
    for (size_t k = 0; k < j->config_count; k++) {
        size_t index = j->configs[k];
        struct error err = {0};
        cleanup_free char *display = NULL;
        json_t *message = config_message(j, index, &display, &err);
        if (!message) {
            set_error(job, &err);
            return;
        }
        json_t *m = j->matrix.items[index].matrix;
        json_t *entry = json_pack("{s:I, s:s, s:O}", "index", (json_int_t)index, "name", display,
                                  "matrix", m ? m : json_null());
        json_array_append_new(list, entry);
        if (j->s->o->messages_dir) {
            cleanup_free char *text = json_dumps(message, JSON_INDENT(2));
            cleanup_free char *path = save_message_copy(j, index, text, &err);
            if (!path) {
                json_decref(message);
                set_error(job, &err);
                return;
            }
            json_object_set_new(entry, "message", json_string(path));
        }
        json_decref(message);
    }
}

/* What GitHub would do with the job now: done (--needs), waiting for its needs, skipped,
 * failed before it started, or ready with its configurations planned. */
static json_t *plan_job(struct exec_job *j)
{
    json_t *needs = json_array();
    for (size_t i = 0; i < j->job->needs_count; i++)
        json_array_append_new(needs, json_string(need_id(j->job->needs[i])));
    json_t *job =
        json_pack("{s:s, s:s, s:o}", "id", j->id, "name", literal_name(j), "needs", needs);
    struct error err = {0};
    const char *skipped;
    if (j->state == JOB_DONE) {
        json_object_set_new(job, "state", json_string("done"));
        json_object_set_new(job, "result", json_string(j->result));
    } else if (!needs_done(j)) {
        json_object_set_new(job, "state", json_string("waiting"));
    } else if (evaluate_job(j, &skipped, &err) < 0) {
        set_error(job, &err);
    } else if (skipped) {
        json_object_set_new(job, "state", json_string("skipped"));
        json_object_set_new(job, "reason", json_string(skipped));
    } else {
        plan_configurations(j, job);
    }
    return job;
}

static void print_plan_text(json_t *job)
{
    const char *state = json_get_string(job, "state");
    if (strcmp(state, "ready") != 0) {
        const char *why = json_get_string(job, "reason");
        why = why ? why : json_get_string(job, "error");
        printf("  %s%s%s\n", state, why ? ": " : "", why ? why : "");
        return;
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_get(job, "configurations"), i, c)
    {
        const char *file = json_get_string(c, "message");
        printf("  ready: %s%s%s\n", json_get_string(c, "name"), file ? " -> " : "",
               file ? file : "");
    }
}

/* Lists each job's steps; with --json, --messages-dir or --needs also plans the jobs whose
 * needs are done (their `if`, matrix and job messages), as GitHub does when it queues them:
 * a service that runs harrier's plan job by job calls this again with --needs as jobs end. */
static int dry_run(struct exec_state *s)
{
    const struct exec_options *o = s->o;
    if (load_needs(s) < 0)
        return 2;
    bool plan = o->json || o->messages_dir || o->needs_path;
    json_t *workflows = json_array();
    for (size_t w = 0; w < s->workflow_count; w++) {
        struct exec_workflow *ew = &s->workflows[w];
        json_t *jobs = json_array();
        json_array_append_new(workflows, json_pack("{s:s, s:s, s:o}", "file", ew->wf->rel_path,
                                                   "name", ew->wf->name, "jobs", jobs));
        for (size_t i = 0; i < ew->count; i++) {
            struct exec_job *j = &ew->jobs[i];
            if (!j->selected)
                continue;
            json_t *job = plan ? plan_job(j) : NULL;
            if (job)
                json_array_append_new(jobs, job);
            if (o->json)
                continue;
            printf("%s job %s (stage %d)\n", ew->wf->rel_path, j->id, job_stage(ew, j, 0));
            for (size_t k = 0; k < j->job->steps_count; k++) {
                const struct workflow_step *st = &j->job->steps[k];
                const char *text = st->name && st->name->type == TOKEN_STRING   ? st->name->u.string
                                   : st->run && st->run->type == TOKEN_STRING   ? st->run->u.string
                                   : st->uses && st->uses->type == TOKEN_STRING ? st->uses->u.string
                                                                                : st->id;
                printf("  step %s: %.*s\n", st->id, (int)strcspn(text, "\n"), text);
            }
            if (job)
                print_plan_text(job);
        }
    }
    if (o->json) {
        json_t *out = json_pack("{s:o}", "workflows", workflows);
        cleanup_free char *text = json_dumps(out, JSON_INDENT(2));
        printf("%s\n", text);
        json_decref(out);
    } else {
        json_decref(workflows);
    }
    return 0;
}

/* --- entry ------------------------------------------------------------------------------- */

static json_t *load_payload(const struct exec_options *o)
{
    if (!o->event_path)
        return NULL;
    struct error err = {0};
    json_t *payload = json_load_path(o->event_path, &err);
    if (!payload)
        say_error("--eventpath", &err);
    return payload;
}

static char *default_work_dir(void)
{
    const char *cache = getenv("XDG_CACHE_HOME");
    if (cache && *cache)
        return xasprintf("%s/harrier/work", cache);
    const char *home = getenv("HOME");
    return xasprintf("%s/.cache/harrier/work", home && *home ? home : "/tmp");
}

static int set_up_contexts(struct exec_state *s, json_t *payload)
{
    const struct exec_options *o = s->o;
    struct error err = {0};
    if (gitinfo_read(o->directory ? o->directory : ".", &s->git, &err) < 0) {
        /* Outside a checkout the run still works, with a made-up commit, as act's does. */
        log_warn("%s; the github context will name a zero commit", err.message);
        gitinfo_fallback(o->directory ? o->directory : ".", &s->git);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->run_id = xasprintf("%lld%03ld", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
    const struct plan_workflow *first = s->workflow_count ? s->workflows[0].wf : NULL;
    struct local_context_options lo = {
        .event_name = o->event_name,
        .event = payload,
        .inputs = o->inputs,
        .workflow_name = first ? first->name : "",
        .workflow_path = first ? first->rel_path : "",
        .run_id = s->run_id,
    };
    s->github = local_context_github(&s->git, &lo);
    s->ctx = (struct plan_contexts){
        .github = s->github, .vars = o->vars, .inputs = o->inputs, .secrets = o->secrets};
    return 0;
}

static void free_state(struct exec_state *s)
{
    for (size_t w = 0; w < s->workflow_count; w++) {
        struct exec_workflow *ew = &s->workflows[w];
        for (size_t i = 0; i < ew->count; i++) {
            matrix_free(&ew->jobs[i].matrix);
            free(ew->jobs[i].configs);
            json_decref(ew->jobs[i].outputs);
        }
        free(ew->jobs);
        planner_workflow_free(ew->wf);
    }
    free(s->workflows);
    json_decref(s->github);
    gitinfo_free(&s->git);
    if (s->term)
        terminal_free(s->term);
    if (s->run_dir) {
        struct error err = {0};
        path_remove_all(s->run_dir, &err);
    }
    free(s->run_dir);
    free(s->actions_cache);
    free(s->run_id);
}

static int run_jobs(struct exec_state *s)
{
    const struct exec_options *o = s->o;
    struct terminal_options to = {
        .color = o->color, .json = o->json, .verbose = o->verbose, .logs_dir = o->logs_dir};
    s->term = terminal_new(stdout, &to);
    cleanup_free char *work = o->work_dir ? xstrdup(o->work_dir) : default_work_dir();
    s->run_dir = xasprintf("%s/%s", work, s->run_id);
    s->actions_cache = xasprintf("%s/_actions", work);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    s->max_jobs = o->max_jobs > 0 ? o->max_jobs : (cores > 0 ? (int)cores : 1);
    uv_loop_init(&s->loop);
    struct error err = {0};
    /* Workers are plain children: each makes its own job sandbox for its steps. */
    struct sandbox_job_options so = {.level = SANDBOX_NONE};
    if (sandbox_job_new(&s->loop, &so, &s->procs, &err) < 0) {
        say_error(NULL, &err);
        uv_loop_close(&s->loop);
        return 2;
    }
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uv_signal_start(&s->sigint, on_interrupt, SIGINT);
    uv_signal_start(&s->sigterm, on_interrupt, SIGTERM);
    schedule(s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    terminal_summary(s->term, s->cancel);
    return s->any_failed || s->cancel ? 1 : 0;
}

int exec_run(const struct exec_options *o)
{
    struct exec_state s = {.o = o};
    json_t *payload = load_payload(o);
    int code = 2;
    if (o->event_path && !payload)
        goto done;
    if (set_up_contexts(&s, payload) < 0)
        goto done;
    json_t *event = json_get(s.github, "event");
    if (load_workflows(&s, event) < 0 || select_jobs(&s) < 0)
        goto done;
    /* The workflow name the github context carries is the first selected workflow's. */
    if (s.workflow_count) {
        json_object_set_new(s.github, "workflow", json_string(s.workflows[0].wf->name));
        cleanup_free char *ref =
            xasprintf("%s/%s@%s", s.git.repository, s.workflows[0].wf->rel_path, s.git.ref);
        json_object_set_new(s.github, "workflow_ref", json_string(ref));
    }
    code = 0;
    if (o->list)
        print_list(&s);
    else if (o->graph)
        print_graph(&s);
    else if (o->dry_run)
        code = dry_run(&s);
    else if (s.workflow_count == 0)
        printf("No workflow runs for the '%s' event here (see --list, or name one with -W)\n",
               o->event_name);
    else
        code = load_needs(&s) < 0 ? 2 : run_jobs(&s);
done:
    json_decref(payload);
    free_state(&s);
    return code;
}
