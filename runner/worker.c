#include "runner/worker.h"

#include "actions/action.h"
#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/path.h"
#include "protocol/runner_service.h"
#include "runner/action_steps.h"
#include "runner/events.h"
#include "runner/file_commands.h"
#include "runner/masker.h"
#include "runner/shell.h"
#include "runner/step_commands.h"
#include "runner/worker_hooks_internal.h"
#include "runner/worker_internal.h"
#include "workflow/status.h"
#include "workflow/template.h"

#include <ctype.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static const struct {
    const char *env;
    const char *prefix;
} file_command_files[FC_COUNT] = {
    [FC_OUTPUT] = {"GITHUB_OUTPUT", "set_output"},
    [FC_ENV] = {"GITHUB_ENV", "set_env"},
    [FC_PATH] = {"GITHUB_PATH", "add_path"},
    [FC_STATE] = {"GITHUB_STATE", "save_state"},
    [FC_SUMMARY] = {"GITHUB_STEP_SUMMARY", "step_summary"},
};

/* The names steps may refer to in ${{ }} (GitHub's step-level contexts). */
static const char *const step_named_values[] = {"github", "env",      "vars",  "secrets",
                                                "matrix", "strategy", "needs", "inputs",
                                                "job",    "runner",   "steps", NULL};

static struct worker *current_worker;

/* --- small helpers ------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *status_name(enum job_status s)
{
    static const char *const names[] = {"success", "failure", "cancelled"};
    return names[s];
}

/* --- status functions for if: -------------------------------------------------------- */

/* How the job stands for success(), failure() and cancelled() (workflow/status.h). As the
 * official SuccessFunction and FailureFunction: a composite action's main steps read
 * github.action_status, the result so far of the composite they sit in (not the job's: after
 * a failed step of the job, an always() composite's steps still run under success()); the job's
 * steps, and pre and post steps at any depth, read job.status. cancelled() is the job's. */
static void worker_status_now(const struct status_source *source, struct status_now *now)
{
    const struct worker *w =
        (const struct worker *)((const char *)source - offsetof(struct worker, status_source));
    const struct frame *f = w->frame;
    if (f->owner && f->stage == EVENTS_STAGE_MAIN) {
        now->succeeded = !f->failed;
        now->failed = f->failed;
    } else {
        now->succeeded = w->status == JOB_SUCCEEDED;
        now->failed = w->status == JOB_FAILED;
    }
    now->cancelled = w->cancel_requested;
}

static const struct expr_parse_options step_parse_options = {step_named_values, status_functions};

void worker_template_context(struct worker *w, struct expr_context *ec, struct template_context *tc)
{
    *ec = (struct expr_context){
        .contexts = w->contexts, .functions = status_functions, .host = &w->status_source};
    *tc = (struct template_context){.expr = ec,
                                    .parse = &step_parse_options,
                                    .file_table = w->msg->file_table,
                                    .file_count = w->msg->file_count};
}

/* --- events ---------------------------------------------------------------------------- */

void worker_log_line(struct worker *w, const struct running_step *rs, const char *line)
{
    events_log(w->events, rs ? rs->number : 0, line, strlen(line), NULL);
}

void worker_log_warning(struct worker *w, const struct running_step *rs, const char *message)
{
    cleanup_free char *line = xasprintf("##[warning]%s", message);
    worker_log_line(w, rs, line);
    struct step_annotation a = {.level = ANNOTATION_WARNING, .message = message};
    events_annotation(w->events, rs ? rs->number : 0, &a, NULL);
}

/* outputs (an object of strings) as events.h takes them; the array borrows the strings. */
static struct events_output *output_list(json_t *outputs, size_t *count)
{
    struct events_output *list = xcalloc(json_object_size(outputs) + 1, sizeof *list);
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(outputs, k, v)
    {
        if (json_is_string(v))
            list[n++] = (struct events_output){k, json_string_value(v)};
    }
    *count = n;
    return list;
}

static void emit_step_finished(struct worker *w, int number, enum events_result outcome,
                               enum events_result conclusion, json_t *outputs)
{
    size_t n;
    cleanup_free struct events_output *list = output_list(outputs, &n);
    events_step_finished(w->events, number, outcome, conclusion, list, n, NULL);
}

static void log_error_annotation(struct worker *w, const struct running_step *rs,
                                 const char *message)
{
    cleanup_free char *line = xasprintf("##[error]%s", message);
    worker_log_line(w, rs, line);
    struct step_annotation a = {.level = ANNOTATION_ERROR, .message = message};
    events_annotation(w->events, rs ? rs->number : 0, &a, NULL);
}

/* A setup or evaluation error: shown as GitHub shows it, the step (or job) then fails. */
void worker_report_error(struct worker *w, const struct running_step *rs, const struct error *err)
{
    char text[ERROR_MESSAGE_MAX + ERROR_WHERE_MAX + 64];
    if (err->where[0] && err->line > 0)
        snprintf(text, sizeof text, "%s (Line: %d, Col: %d): %s", err->where, err->line, err->col,
                 err->message);
    else
        error_format(err, text, sizeof text);
    log_error_annotation(w, rs, text);
}

/* --- job set-up ---------------------------------------------------------------------- */

static const char *github_string(struct worker *w, const char *key)
{
    return json_get_string(json_get(w->contexts, "github"), key);
}

static int make_folders(struct worker *w, struct error *err)
{
    const char *repo = github_string(w, "repository");
    const char *name = repo && strchr(repo, '/') ? strchr(repo, '/') + 1 : "workspace";
    cleanup_free char *repo_dir = path_join(w->opt->work_root, name);
    w->workspace = path_join(repo_dir, name);
    w->temp = path_join(w->opt->work_root, "_temp");
    w->tool_cache = path_join(w->opt->work_root, "_tool");
    w->file_commands_dir = path_join(w->temp, "_runner_file_commands");
    cleanup_free char *event_dir = path_join(w->temp, "_github_workflow");
    w->event_path = path_join(event_dir, "event.json");
    /* The temp folder is the job's: cleaned at start, as the official runner does. */
    if (path_remove_all(w->temp, err) < 0)
        return err->code;
    const char *folders[] = {w->workspace, w->temp, w->tool_cache, w->file_commands_dir, event_dir};
    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++)
        if (path_mkdir_all(folders[i], 0755, err) < 0)
            return err->code;
    json_t *event = json_get(json_get(w->contexts, "github"), "event");
    cleanup_free char *text = event ? json_dumps(event, JSON_INDENT(2)) : xstrdup("{}");
    return path_write_file(w->event_path, text, strlen(text), 0644, err);
}

static void add_secrets(struct worker *w)
{
    json_t *secrets = json_object();
    const char *name;
    json_t *v;
    json_object_foreach(w->msg->variables, name, v)
    {
        bool is_secret = false;
        const char *value = json_get_string(v, "value");
        json_get_bool(v, "isSecret", &is_secret);
        if (!is_secret || !value)
            continue;
        masker_add_secret(w->masker, value, strlen(value), true);
        /* As the official runner: the secrets context has every secret variable but the
         * system tokens; github_token appears as GITHUB_TOKEN. */
        if (str_eq_nocase(name, "system.github.token") || str_eq_nocase(name, "system.accessToken"))
            continue;
        json_object_set_new(secrets, str_eq_nocase(name, "github_token") ? "GITHUB_TOKEN" : name,
                            json_string(value));
    }
    if (w->msg->access_token)
        masker_add_secret(w->masker, w->msg->access_token, strlen(w->msg->access_token), true);
    for (size_t i = 0; json_is_array(w->msg->mask) && i < json_array_size(w->msg->mask); i++) {
        const char *value = json_get_string(json_array_get(w->msg->mask, i), "value");
        if (value)
            masker_add_secret(w->masker, value, strlen(value), false);
    }
    json_object_set_new(w->contexts, "secrets", secrets);
}

static void set_runner_context(struct worker *w)
{
    json_t *github = json_get(w->contexts, "github");
    if (!json_is_object(github)) {
        github = json_object();
        json_object_set_new(w->contexts, "github", github);
    }
    const char *token = job_message_variable(w->msg, "system.github.token", NULL);
    json_object_set_new(github, "token", json_string(token ? token : ""));
    json_object_set_new(github, "workspace", json_string(w->workspace));
    json_object_set_new(github, "event_path", json_string(w->event_path));
    const char *job = job_message_variable(w->msg, "system.github.job", NULL);
    if (job)
        json_object_set_new(github, "job", json_string(job));
    json_object_set_new(github, "action", json_string(""));
    json_object_set_new(github, "action_path", json_string(""));
    json_object_set_new(github, "action_ref", json_string(""));
    json_object_set_new(github, "action_repository", json_string(""));

    const char *environment = job_message_variable(w->msg, "system.runnerEnvironment", NULL);
    json_t *runner =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "os", "Linux", "arch", "X64", "name",
                  w->opt->runner_name ? w->opt->runner_name : "harrier", "tool_cache",
                  w->tool_cache, "temp", w->temp, "workspace", w->opt->work_root, "environment",
                  environment ? environment : "self-hosted");
    json_object_set_new(w->contexts, "runner", runner);
    if (!json_is_object(json_get(w->contexts, "job")))
        json_object_set_new(w->contexts, "job", json_object());
    json_object_set_new(json_get(w->contexts, "job"), "status", json_string("success"));
    json_object_set_new(w->contexts, "steps", json_object());
    static const char *const defaults[] = {"vars", "inputs", "needs", "strategy", "matrix"};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (!json_get(w->contexts, defaults[i]))
            json_object_set_new(w->contexts, defaults[i],
                                strcmp(defaults[i], "matrix") == 0 ? json_null() : json_object());
}

/* Workflow env, then job env, each evaluated with the env built so far. */
static int evaluate_job_env(struct worker *w, struct error *err)
{
    w->job_env = json_object();
    json_object_set(w->contexts, "env", w->job_env);
    struct expr_context ec;
    struct template_context tc;
    worker_template_context(w, &ec, &tc);
    for (size_t i = 0; i < w->msg->environment_count; i++) {
        json_t *env = template_evaluate_string_map(w->msg->environment[i], &tc, err);
        if (!env)
            return err->code;
        json_object_update(w->job_env, env);
        json_decref(env);
    }
    return 0;
}

/* defaults.run.shell and working-directory: job defaults win over the workflow's. */
static int evaluate_defaults(struct worker *w, struct error *err)
{
    struct expr_context ec;
    struct template_context tc;
    worker_template_context(w, &ec, &tc);
    for (size_t i = 0; i < w->msg->defaults_count; i++) {
        json_t *d = template_evaluate(w->msg->defaults[i], &tc, err);
        if (!d)
            return err->code;
        json_t *run = json_get(d, "run");
        const char *shell = json_get_string(run, "shell");
        const char *wd = json_get_string(run, "working-directory");
        if (shell) {
            free(w->defaults_shell);
            w->defaults_shell = xstrdup(shell);
        }
        if (wd) {
            free(w->defaults_working_directory);
            w->defaults_working_directory = xstrdup(wd);
        }
        json_decref(d);
    }
    return 0;
}

/* --- the process environment of a step ------------------------------------------------ */

/* The github context members exported as GITHUB_<KEY> (PROTOCOL.md §7.11). */
static const char *const github_exported[] = {"action",
                                              "action_path",
                                              "action_ref",
                                              "action_repository",
                                              "actor",
                                              "actor_id",
                                              "api_url",
                                              "base_ref",
                                              "event_name",
                                              "event_path",
                                              "graphql_url",
                                              "head_ref",
                                              "job",
                                              "ref_name",
                                              "ref_protected",
                                              "ref_type",
                                              "ref",
                                              "repository",
                                              "repository_id",
                                              "repository_owner",
                                              "repository_owner_id",
                                              "retention_days",
                                              "run_attempt",
                                              "run_id",
                                              "run_number",
                                              "server_url",
                                              "sha",
                                              "triggering_actor",
                                              "workflow",
                                              "workflow_ref",
                                              "workflow_sha",
                                              "workspace",
                                              NULL};

static void env_set(json_t *env, const char *key, const char *value)
{
    json_object_set_new(env, key, json_string(value));
}

/* INPUT_<NAME> as the official runner names them: spaces become '_', letters upper case. */
static char *input_env_name(const char *name)
{
    char *env = xasprintf("INPUT_%s", name);
    for (char *p = env; *p; p++)
        *p = *p == ' ' ? '_' : (char)toupper((unsigned char)*p);
    return env;
}

/* The job service's endpoints for the @actions packages, from SystemVssConnection (PROTOCOL.md
 * §6.2, §7.11): node (and container) actions only. */
static void add_runtime_env(struct worker *w, json_t *env)
{
    const char *pipelines = json_get_string(w->msg->connection_data, "PipelinesServiceUrl");
    const char *runtime = pipelines && *pipelines ? pipelines : w->msg->connection_url;
    if (runtime)
        env_set(env, "ACTIONS_RUNTIME_URL", runtime);
    if (w->msg->access_token)
        env_set(env, "ACTIONS_RUNTIME_TOKEN", w->msg->access_token);
    static const char *const urls[][2] = {{"CacheServerUrl", "ACTIONS_CACHE_URL"},
                                          {"ResultsServiceUrl", "ACTIONS_RESULTS_URL"}};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        const char *url = json_get_string(w->msg->connection_data, urls[i][0]);
        if (url && *url)
            env_set(env, urls[i][1], url);
    }
    const char *v2 = job_message_variable(w->msg, "actions_uses_cache_service_v2", NULL);
    if (v2 && str_eq_nocase(v2, "true"))
        env_set(env, "ACTIONS_CACHE_SERVICE_V2", "True");
    const char *mode = job_message_variable(w->msg, "actions_cache_mode", NULL);
    if (mode && *mode)
        env_set(env, "ACTIONS_CACHE_MODE", mode);
}

/* OIDC for every step, scripts too, when the job may ask for an id token (id-token: write
 * gives the connection a GenerateIdTokenUrl), as the official ScriptHandler and NodeHandler. */
static void add_id_token_env(struct worker *w, json_t *env)
{
    const char *url = json_get_string(w->msg->connection_data, "GenerateIdTokenUrl");
    if (!url || !*url || !w->msg->access_token)
        return;
    env_set(env, "ACTIONS_ID_TOKEN_REQUEST_URL", url);
    env_set(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN", w->msg->access_token);
}

/* What a JavaScript action's process gets beyond a script's: its inputs, the state its
 * earlier stages saved, and the runtime endpoints the @actions packages call. */
static void add_node_env(struct running_step *rs, json_t *env)
{
    struct worker *w = rs->w;
    const char *k;
    json_t *v;
    json_object_foreach(rs->input_values, k, v)
    {
        cleanup_free char *name = input_env_name(k);
        env_set(env, name, json_string_value(v));
    }
    json_object_foreach(rs->resolved->state, k, v)
    {
        cleanup_free char *name = xasprintf("STATE_%s", k);
        env_set(env, name, json_string_value(v));
    }
    add_runtime_env(w, env);
}

/* Builds "K=V" strings: the worker's own environment (less the runner's inputs), the runner
 * and github variables, the job's and step's env, the file-command paths, PATH. */
static char **step_process_env(struct running_step *rs)
{
    struct worker *w = rs->w;
    json_t *env = json_object();
    extern char **environ;
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || str_starts_with_nocase(*e, "ACTIONS_RUNNER_INPUT_"))
            continue;
        cleanup_free char *k = xstrndup(*e, (size_t)(eq - *e));
        env_set(env, k, eq + 1);
    }
    env_set(env, "CI", "true");
    env_set(env, "GITHUB_ACTIONS", "true");
    json_t *github = json_get(w->contexts, "github");
    for (const char *const *k = github_exported; *k; k++) {
        json_t *v = json_get(github, *k);
        cleanup_free char *s = v ? template_scalar_to_string(v) : NULL;
        if (!s)
            continue;
        cleanup_free char *name = xasprintf("GITHUB_%s", *k);
        env_set(env, str_upper(name), s);
    }
    for (int i = 0; i < FC_COUNT; i++)
        env_set(env, file_command_files[i].env, rs->files[i]);
    json_t *runner = json_get(w->contexts, "runner");
    static const char *const runner_exported[] = {"os",   "arch",      "name",        "tool_cache",
                                                  "temp", "workspace", "environment", NULL};
    for (const char *const *k = runner_exported; *k; k++) {
        const char *s = json_get_string(runner, *k);
        cleanup_free char *name = xasprintf("RUNNER_%s", *k);
        if (s)
            env_set(env, str_upper(name), s);
    }
    json_object_update(env, rs->env);
    if (rs->resolved && rs->resolved->action && rs->resolved->action->kind == ACTION_NODE)
        add_node_env(rs, env);
    add_id_token_env(w, env);
    const char *path = json_get_string(env, "PATH");
    cleanup_free char *joined = file_commands_path_join(&w->path, path ? path : "");
    env_set(env, "PATH", joined);
    char **list = xcalloc(json_object_size(env) + 1, sizeof *list);
    size_t n = 0;
    const char *key;
    json_t *value;
    json_object_foreach(env, key, value) list[n++] =
        xasprintf("%s=%s", key, json_string_value(value));
    json_decref(env);
    return list;
}

/* --- running one step ----------------------------------------------------------------- */

static void start_next_step(struct worker *w);

static void on_advance(uv_timer_t *t)
{
    start_next_step(t->data);
}

void worker_advance(struct worker *w)
{
    uv_timer_start(&w->advance, on_advance, 0, 0);
}

static void step_maybe_done(struct running_step *rs);

static void on_output_line(struct running_step *rs, const char *line, size_t len)
{
    if (len && line[len - 1] == '\r')
        len--;
    struct step_command_result r = step_commands_process(rs->commands, line, len);
    for (size_t i = 0; i < r.count; i++) {
        const struct step_action *a = &r.actions[i];
        switch (a->kind) {
        case STEP_ACTION_LOG:
            worker_log_line(rs->w, rs, a->text);
            break;
        case STEP_ACTION_ANNOTATION:
            events_annotation(rs->w->events, rs->number, &a->annotation, NULL);
            break;
        case STEP_ACTION_SET_OUTPUT:
            json_object_set_new(rs->outputs, a->name, json_string(a->text));
            break;
        case STEP_ACTION_SET_ENV:
            json_object_set_new(rs->w->job_env, a->name, json_string(a->text));
            break;
        case STEP_ACTION_ADD_PATH:
            file_commands_path_add(&rs->w->path, a->text);
            break;
        case STEP_ACTION_FAIL_STEP:
            rs->failed_by_command = true;
            break;
        case STEP_ACTION_SAVE_STATE:
            if (rs->resolved)
                json_object_set_new(rs->resolved->state, a->name, json_string(a->text));
            break;
        default:
            break; /* groups are log lines already; state and matchers: actions' concerns */
        }
    }
}

static void on_output_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = xmalloc(suggested);
    buf->len = suggested;
}

static void split_lines(struct running_step *rs, const char *data, size_t len)
{
    buf_append(&rs->partial, data, len);
    size_t start = 0;
    for (size_t i = 0; i < rs->partial.len; i++) {
        if (rs->partial.data[i] == '\n') {
            on_output_line(rs, rs->partial.data + start, i - start);
            start = i + 1;
        }
    }
    buf_consume(&rs->partial, start);
}

static void close_output(struct running_step *rs);

static void on_output_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct running_step *rs = s->data;
    if (n > 0)
        split_lines(rs, buf->base, (size_t)n);
    free(buf->base);
    if (n < 0) {
        close_output(rs);
        step_maybe_done(rs);
    }
}

static void on_output_closed(uv_handle_t *h)
{
    struct running_step *rs = h->data;
    rs->out_closing = false;
    step_maybe_done(rs);
}

static void close_output(struct running_step *rs)
{
    if (!rs->out_open)
        return;
    rs->out_open = false;
    uv_read_stop((uv_stream_t *)&rs->out);
    if (rs->partial.len) {
        on_output_line(rs, rs->partial.data, rs->partial.len);
        buf_reset(&rs->partial);
    }
    rs->out_closing = true;
    uv_close((uv_handle_t *)&rs->out, on_output_closed);
}

/* Output written before the step exited is in the pipe already; a background process that
 * keeps the pipe open must not hold the step (as on GitHub, `server &` ends the step). */
static void drain_output(struct running_step *rs)
{
    if (!rs->out_open)
        return;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&rs->out, &fd) == 0) {
        char chunk[65536];
        ssize_t n;
        while ((n = read(fd, chunk, sizeof chunk)) > 0)
            split_lines(rs, chunk, (size_t)n);
    }
    close_output(rs);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct running_step *rs = h->data;
    rs->timer_closing = false;
    step_maybe_done(rs);
}

static void on_step_exit(struct sandbox_step *step, const struct sandbox_step_result *r, void *data)
{
    (void)step;
    struct running_step *rs = data;
    rs->exited = true;
    rs->handle = NULL;
    rs->result = *r;
    if (rs->timer_open) {
        rs->timer_open = false;
        rs->timer_closing = true;
        uv_close((uv_handle_t *)&rs->timer, on_timer_closed);
    }
    drain_output(rs);
    step_maybe_done(rs);
}

static void on_step_timeout(uv_timer_t *t)
{
    struct running_step *rs = t->data;
    rs->timed_out = true;
    if (rs->handle)
        sandbox_step_cancel(rs->handle);
}

static char *read_small_file(const char *path, size_t *len)
{
    struct error ignored = {0};
    char *text = path_read_file(path, len, &ignored);
    return text;
}

/* GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH, GITHUB_STEP_SUMMARY after the step. */
static void apply_file_commands(struct running_step *rs)
{
    struct worker *w = rs->w;
    size_t len;
    struct error err = {0};
    cleanup_free char *outputs = read_small_file(rs->files[FC_OUTPUT], &len);
    struct file_command_pairs pairs = {0};
    if (outputs && file_commands_parse_pairs(outputs, len, &pairs, &err) == 0) {
        for (size_t i = 0; i < pairs.count; i++)
            json_object_set_new(rs->outputs, pairs.items[i].name,
                                json_stringn(pairs.items[i].value, pairs.items[i].value_len));
    } else if (outputs) {
        worker_report_error(w, rs, &err);
        rs->failed_by_command = true;
    }
    file_command_pairs_free(&pairs);
    cleanup_free char *env = read_small_file(rs->files[FC_ENV], &len);
    if (env && file_commands_parse_pairs(env, len, &pairs, &err) == 0) {
        for (size_t i = 0; i < pairs.count; i++) {
            const char *refusal = file_commands_env_refusal(pairs.items[i].name);
            if (refusal) {
                log_error_annotation(w, rs, refusal);
                continue;
            }
            json_object_set_new(w->job_env, pairs.items[i].name,
                                json_stringn(pairs.items[i].value, pairs.items[i].value_len));
        }
    } else if (env) {
        worker_report_error(w, rs, &err);
        rs->failed_by_command = true;
    }
    file_command_pairs_free(&pairs);
    cleanup_free char *state = read_small_file(rs->files[FC_STATE], &len);
    if (state && rs->resolved && file_commands_parse_pairs(state, len, &pairs, &err) == 0) {
        for (size_t i = 0; i < pairs.count; i++)
            json_object_set_new(rs->resolved->state, pairs.items[i].name,
                                json_stringn(pairs.items[i].value, pairs.items[i].value_len));
    } else if (state && rs->resolved) {
        worker_report_error(w, rs, &err);
        rs->failed_by_command = true;
    }
    file_command_pairs_free(&pairs);
    cleanup_free char *paths = read_small_file(rs->files[FC_PATH], &len);
    if (paths) {
        size_t count;
        char **dirs = file_commands_parse_path(paths, len, &count);
        for (size_t i = 0; i < count; i++)
            file_commands_path_add(&w->path, dirs[i]);
        str_list_free(dirs);
    }
    struct stat st;
    if (stat(rs->files[FC_SUMMARY], &st) == 0 && st.st_size > 0) {
        if (file_commands_check_summary((uint64_t)st.st_size, &err) < 0) {
            worker_report_error(w, rs, &err);
        } else {
            cleanup_free char *summary = read_small_file(rs->files[FC_SUMMARY], &len);
            if (summary)
                events_step_summary(w->events, rs->number, summary, len, NULL);
        }
    }
}

void worker_running_step_free(struct running_step *rs)
{
    for (int i = 0; i < FC_COUNT; i++) {
        if (rs->files[i])
            unlink(rs->files[i]);
        free(rs->files[i]);
    }
    if (rs->script_path)
        unlink(rs->script_path);
    free(rs->script_path);
    free(rs->display_name);
    buf_free(&rs->partial);
    if (rs->commands)
        step_commands_free(rs->commands);
    json_decref(rs->env);
    json_decref(rs->outputs);
    json_decref(rs->input_values);
    free(rs);
}

/* Records the step in the steps context and the job status, and reports it. */
void worker_finish_step(struct running_step *rs, enum events_result outcome)
{
    struct worker *w = rs->w;
    enum events_result conclusion = outcome;
    if (outcome == EVENTS_FAILURE && rs->continue_on_error)
        conclusion = EVENTS_SUCCESS;
    if (conclusion == EVENTS_FAILURE && rs->inner)
        rs->frame->failed = true; /* the composite's step fails when it ends */
    else if (conclusion == EVENTS_FAILURE && w->status == JOB_SUCCEEDED)
        w->status = JOB_FAILED;
    if (outcome == EVENTS_CANCELLED)
        w->status = JOB_CANCELLED;
    /* Pre and post steps have no entry in the steps context, as on GitHub. */
    if (rs->stage == EVENTS_STAGE_MAIN && rs->step->context_name) {
        json_t *entry =
            json_pack("{s:O, s:s, s:s}", "outputs", rs->outputs, "outcome",
                      events_result_name(outcome), "conclusion", events_result_name(conclusion));
        json_object_set_new(rs->frame->steps_context, rs->step->context_name, entry);
    }
    json_object_set_new(json_get(w->contexts, "job"), "status",
                        json_string(status_name(w->status)));
    if (!rs->inner)
        emit_step_finished(w, rs->number, outcome, conclusion, rs->outputs);
}

static void step_maybe_done(struct running_step *rs)
{
    if (!rs->exited || rs->out_open || rs->out_closing || rs->timer_open || rs->timer_closing)
        return;
    struct worker *w = rs->w;
    apply_file_commands(rs);
    enum events_result outcome = EVENTS_SUCCESS;
    if (rs->timed_out) {
        cleanup_free char *m = xasprintf("The action '%s' has timed out after %g minutes.",
                                         rs->display_name, rs->timeout_minutes);
        log_error_annotation(w, rs, m);
        outcome = EVENTS_FAILURE;
    } else if (rs->timed_out_by_composite) {
        /* The composite around it ran out of time (CompositeActionHandler's message). */
        log_error_annotation(w, rs, "The action has timed out.");
        outcome = EVENTS_FAILURE;
    } else if (rs->result.canceled || (w->cancel_requested && rs->result.term_signal)) {
        worker_log_line(w, rs, "##[error]The operation was canceled.");
        outcome = EVENTS_CANCELLED;
    } else if (rs->result.term_signal || rs->result.exit_code != 0) {
        cleanup_free char *m =
            rs->result.term_signal
                ? xasprintf("Process completed with exit code %d.", 128 + rs->result.term_signal)
                : xasprintf("Process completed with exit code %d.", rs->result.exit_code);
        log_error_annotation(w, rs, m);
        outcome = EVENTS_FAILURE;
    } else if (rs->failed_by_command) {
        outcome = EVENTS_FAILURE;
    }
    worker_finish_step(rs, outcome);
    w->current = NULL;
    worker_running_step_free(rs);
    worker_advance(w);
}

int worker_create_file_command_files(struct running_step *rs, struct error *err)
{
    for (int i = 0; i < FC_COUNT; i++) {
        cleanup_free char *guid = codec_uuid4();
        cleanup_free char *name = xasprintf("%s_%s", file_command_files[i].prefix, guid);
        rs->files[i] = path_join(rs->w->file_commands_dir, name);
        if (path_write_file(rs->files[i], "", 0, 0666, err) < 0)
            return err->code;
    }
    return 0;
}

static char *first_line(const char *text)
{
    while (*text == '\n' || *text == '\r' || *text == ' ' || *text == '\t')
        text++;
    return xstrndup(text, strcspn(text, "\r\n"));
}

/* The step's display name: its name: token, else "Run <first line of the script>". */
static char *step_display_name(const struct job_step *s, const struct template_context *tc,
                               const char *script)
{
    if (s->display_name_token) {
        struct error err = {0};
        char *name = template_evaluate_string(s->display_name_token, tc, &err);
        if (name)
            return name;
    }
    if (s->display_name)
        return xstrdup(s->display_name);
    if (script) {
        cleanup_free char *line = first_line(script);
        return xasprintf("Run %s", line);
    }
    if (s->kind == JOB_STEP_CONTAINER)
        return xasprintf("Run docker://%s", s->image);
    if (s->repository_name)
        return xasprintf("Run %s%s%s@%s", s->repository_name, *s->repository_path ? "/" : "",
                         s->repository_path, s->repository_ref ? s->repository_ref : "");
    return xasprintf("Run %s", s->repository_path);
}

static json_t *evaluate_step_env(struct running_step *rs, const struct template_context *tc,
                                 struct error *err)
{
    json_t *env = json_deep_copy(rs->w->job_env);
    json_object_update(env, rs->frame->env_overlay);
    json_t *step_env = template_evaluate_string_map(rs->step->environment, tc, err);
    if (!step_env) {
        json_decref(env);
        return NULL;
    }
    json_object_update(env, step_env);
    json_decref(step_env);
    return env;
}

static const char *input_string(json_t *inputs, const char *key)
{
    return json_get_string(inputs, key);
}

static int write_script(struct running_step *rs, const char *script, const char *extension,
                        struct error *err)
{
    cleanup_free char *guid = codec_uuid4();
    cleanup_free char *name = xasprintf("%s%s", guid, extension);
    rs->script_path = path_join(rs->w->temp, name);
    return path_write_file(rs->script_path, script, strlen(script), 0755, err);
}

/* Shows what runs, as the official runner's "Run …" group does. */
static void log_step_header(struct running_step *rs, const char *script, const char *shell,
                            json_t *step_env)
{
    struct worker *w = rs->w;
    cleanup_free char *group = xasprintf("##[group]%s", rs->display_name);
    worker_log_line(w, rs, group);
    /* As the official ScriptHandler: the script without its trailing newlines, each line in
     * bright cyan (GitHub's log viewer shows the colour). */
    struct buf text = BUF_INIT;
    for (const char *p = script; *p; p++)
        if (!(p[0] == '\r' && p[1] == '\n'))
            buf_putc(&text, *p);
    while (text.len && text.data[text.len - 1] == '\n')
        text.len--;
    size_t n;
    char **lines = str_split(buf_cstr(&text), '\n', &n);
    for (size_t i = 0; i < n; i++) {
        cleanup_free char *line = xasprintf("\x1b[36;1m%s\x1b[0m", lines[i]);
        worker_log_line(w, rs, line);
    }
    str_list_free(lines);
    buf_free(&text);
    if (shell) {
        cleanup_free char *shell_line = xasprintf("shell: %s", shell);
        worker_log_line(w, rs, shell_line);
    }
    if (json_object_size(step_env)) {
        worker_log_line(w, rs, "env:");
        const char *k;
        json_t *v;
        json_object_foreach(step_env, k, v)
        {
            cleanup_free char *line = xasprintf("  %s: %s", k, json_string_value(v));
            worker_log_line(w, rs, line);
        }
    }
    worker_log_line(w, rs, "##[endgroup]");
}

static char *shell_display(const struct shell_command *cmd, const char *script_path)
{
    struct buf b = BUF_INIT;
    for (char **a = cmd->argv; *a; a++) {
        if (a != cmd->argv)
            buf_putc(&b, ' ');
        buf_puts(&b, strcmp(*a, script_path) == 0 ? "{0}" : *a);
    }
    return buf_steal(&b);
}

/* Starts argv in the job's sandbox, its output read into the step's log. */
int worker_spawn_process(struct running_step *rs, const char *const *argv, const char *cwd,
                         struct error *err)
{
    struct worker *w = rs->w;
    struct stat st;
    if (stat(cwd, &st) < 0 || !S_ISDIR(st.st_mode))
        return error_set(err, ENOENT,
                         "An error occurred trying to start process '%s' with working directory "
                         "'%s'. No such file or directory",
                         argv[0], cwd);
    char **envp = step_process_env(rs);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        str_list_free(envp);
        return error_set_errno(err, errno, "cannot create the step's output pipe");
    }
    struct sandbox_spawn_options so = {
        .argv = argv,
        .env = (const char *const *)envp,
        .cwd = cwd,
        .stdio = {{SANDBOX_STDIO_NULL, -1}, {SANDBOX_STDIO_FD, fds[1]}, {SANDBOX_STDIO_FD, fds[1]}},
        .on_exit = on_step_exit,
        .data = rs,
    };
    int rc = sandbox_spawn(w->sandbox, &so, &rs->handle, err);
    close(fds[1]);
    str_list_free(envp);
    if (rc < 0) {
        close(fds[0]);
        return rc;
    }
    uv_pipe_init(&w->loop, &rs->out, 0);
    rs->out.data = rs;
    uv_pipe_open(&rs->out, fds[0]);
    rs->out_open = true;
    uv_read_start((uv_stream_t *)&rs->out, on_output_alloc, on_output_read);
    if (rs->timeout_minutes > 0) {
        uv_timer_init(&w->loop, &rs->timer);
        rs->timer.data = rs;
        rs->timer_open = true;
        uv_timer_start(&rs->timer, on_step_timeout, (uint64_t)(rs->timeout_minutes * 60000.0), 0);
    }
    /* The composite it runs in is out of time, and its condition still let it start (always(),
     * failure()): as on GitHub, where every step of a composite gets the composite's deadline,
     * its process starts and is cancelled at once ("The action has timed out."). */
    if (rs->frame && worker_frame_timed_out(rs->frame)) {
        rs->timed_out_by_composite = true;
        sandbox_step_cancel(rs->handle);
    }
    return 0;
}

static int spawn_script(struct running_step *rs, json_t *inputs, const struct template_context *tc,
                        struct error *err)
{
    struct worker *w = rs->w;
    const char *script = input_string(inputs, "script");
    if (!script)
        return error_set(err, EINVAL, "the run step has no script");
    const char *shell = input_string(inputs, "shell");
    if ((!shell || !*shell) && !rs->inner)
        shell = w->defaults_shell;
    const char *wd = input_string(inputs, "workingDirectory");
    if ((!wd || !*wd) && !rs->inner)
        wd = w->defaults_working_directory;
    cleanup_free char *cwd = wd && *wd ? (wd[0] == '/' ? xstrdup(wd) : path_join(w->workspace, wd))
                                       : xstrdup(w->workspace);
    if (write_script(rs, script, shell_extension(shell), err) < 0)
        return err->code;
    const char *path = json_get_string(rs->env, "PATH");
    cleanup_free char *search = file_commands_path_join(&w->path, path ? path : getenv("PATH"));
    struct shell_command cmd;
    if (shell_resolve(shell, search, rs->script_path, &cmd, err) < 0)
        return err->code;
    cleanup_free char *shown = shell_display(&cmd, rs->script_path);
    json_t *step_only = template_evaluate_string_map(rs->step->environment, tc, err);
    log_step_header(rs, script, shown, step_only ? step_only : rs->env);
    json_decref(step_only);
    int rc = worker_spawn_process(rs, (const char *const *)cmd.argv, cwd, err);
    shell_command_free(&cmd);
    return rc;
}

/* --- starting a step ------------------------------------------------------------------- */

/* Evaluates a condition; false (or an error, reported) skips the step. */
static bool condition_true(struct worker *w, const char *condition, struct error *err)
{
    struct expr_context ec;
    struct template_context tc;
    worker_template_context(w, &ec, &tc);
    struct expr_value v = {0};
    enum expr_stage stage;
    if (expr_evaluate_text(condition, &step_parse_options, &ec, &v, &stage, err) < 0)
        return false;
    bool run = expr_value_truthy(&v);
    expr_value_clear(&v);
    return run;
}

/* The env context before a step's own env: the job's, under the env: of the uses: steps of
 * the composite actions it sits in (their steps see it; the job's later steps do not). */
static void set_env_context(struct worker *w, const struct frame *f)
{
    if (!json_object_size(f->env_overlay)) {
        json_object_set(w->contexts, "env", w->job_env);
        return;
    }
    json_t *env = json_deep_copy(w->job_env);
    json_object_update(env, f->env_overlay);
    json_object_set_new(w->contexts, "env", env);
}

/* A skipped step is shown under the name it would have run under (the official runner names
 * every step when the job starts): its name:, else "Run " and its script as written. */
static char *skipped_step_name(struct worker *w, const struct job_step *s)
{
    struct expr_context ec;
    struct template_context tc;
    worker_template_context(w, &ec, &tc);
    const struct token *script =
        s->kind == JOB_STEP_SCRIPT ? token_mapping_get(s->inputs, "script", false) : NULL;
    struct arena arena;
    arena_init(&arena, 0);
    const char *text = script ? token_to_display_string(&arena, script) : NULL;
    char *name = step_display_name(s, &tc, text);
    arena_free(&arena);
    return name;
}

static void skip_step(struct worker *w, const struct job_step *s, int number, bool inner)
{
    json_t *entry =
        json_pack("{s:{}, s:s, s:s}", "outputs", "outcome", "skipped", "conclusion", "skipped");
    json_object_set_new(w->frame->steps_context, s->context_name, entry);
    if (!inner)
        events_step_finished(w->events, number, EVENTS_SKIPPED, EVENTS_SKIPPED, NULL, 0, NULL);
}

static void post_step_free(struct post_step *p)
{
    if (!p)
        return;
    free(p->display_name);
    free(p);
}

static char *stage_display_name(struct running_step *rs, const struct template_context *tc,
                                const struct post_step *item, const char *script)
{
    if (rs->stage == EVENTS_STAGE_POST && item)
        return xstrdup(item->display_name);
    char *name = step_display_name(rs->step, tc, script);
    if (rs->stage != EVENTS_STAGE_PRE)
        return name;
    char *pre = xasprintf("Pre %s", name);
    free(name);
    return pre;
}

static enum step_start start_step(struct worker *w, const struct job_step *s,
                                  enum events_stage stage, struct post_step *item)
{
    struct running_step *rs = xcalloc(1, sizeof *rs);
    rs->w = w;
    rs->step = s;
    rs->stage = stage;
    rs->frame = item ? item->frame : w->frame;
    rs->inner = !item && rs->frame->owner; /* a composite's step, in its main or pre stage */
    rs->number = rs->inner ? rs->frame->owner->number : ++w->step_counter;
    rs->outputs = json_object();
    rs->started_ms = now_ms();
    rs->resolved = item ? item->resolved : NULL;
    struct expr_context ec;
    struct template_context tc;
    worker_template_context(w, &ec, &tc);
    struct error err = {0};
    json_t *inputs = NULL;
    set_env_context(w, rs->frame);
    int rc = 0;
    if (s->kind != JOB_STEP_SCRIPT && !rs->resolved)
        rc = worker_resolve_step(w, s, &rs->resolved, &err);
    worker_set_action_context(rs);
    if (rc == 0) {
        rs->env = evaluate_step_env(rs, &tc, &err);
        if (rs->env) {
            json_object_set(w->contexts, "env", rs->env);
            inputs = template_evaluate_string_map(s->inputs, &tc, &err);
        }
        rc = inputs ? 0 : err.code;
    }
    const char *script = inputs ? input_string(inputs, "script") : NULL;
    rs->display_name =
        stage_display_name(rs, &tc, item, s->kind == JOB_STEP_SCRIPT ? script : NULL);
    if (!rs->inner)
        events_step_started(w->events, rs->number, s->id, rs->display_name, stage, NULL);
    if (rc == 0)
        rc = template_evaluate_bool(s->continue_on_error, &tc, false, &rs->continue_on_error, &err);
    if (rc == 0)
        rc = template_evaluate_number(s->timeout_minutes, &tc, 0, &rs->timeout_minutes, &err);
    if (rc == 0) {
        struct step_commands_options sco = {
            .enhanced_annotations = true,
            .step_context_name = s->context_name,
            .workspace = w->workspace,
            .repository = github_string(w, "repository"),
            .allow_unsecure_commands = step_commands_unsecure_commands_allowed(
                getenv("ACTIONS_ALLOW_UNSECURE_COMMANDS"),
                json_get_string(rs->env, "ACTIONS_ALLOW_UNSECURE_COMMANDS")),
        };
        rs->commands = step_commands_new(w->masker, &sco);
        rc = worker_create_file_command_files(rs, &err);
    }
    enum step_start started = STEP_FINISHED;
    if (rc == 0) {
        if (s->kind == JOB_STEP_SCRIPT) {
            rc = spawn_script(rs, inputs, &tc, &err);
            started = STEP_RUNNING;
        } else {
            rc = worker_start_action(rs, inputs, &tc, &started, &err);
        }
    }
    json_decref(inputs);
    if (rc == 0 && (started == STEP_RUNNING || started == STEP_WAITING)) {
        w->current = rs;
        return STEP_RUNNING;
    }
    if (rc == 0 && started == STEP_ENTERED)
        return STEP_ENTERED; /* rs lives on as the frame's owner */
    if (rc < 0)
        worker_report_error(w, rs, &err);
    worker_finish_step(rs, rc < 0 ? EVENTS_FAILURE : EVENTS_SUCCESS);
    worker_running_step_free(rs);
    return STEP_FINISHED;
}

static void finish_job(struct worker *w);

/* The condition of a pre or post step: pre-if / post-if, always() when absent. */
static const char *stage_condition(struct worker *w, const struct post_step *item,
                                   enum events_stage stage)
{
    const struct action *a = item->resolved->action;
    const struct token *t = stage == EVENTS_STAGE_PRE ? a->pre_if : a->post_if;
    return action_steps_condition(&w->frame->arena, t, "always()");
}

/* The next step to run: pre steps, the current frame's steps (a composite's, then the job's),
 * then post steps, last registered first. */
static void start_next_step(struct worker *w)
{
    for (;;) {
        struct post_step *item = NULL;
        enum events_stage stage = EVENTS_STAGE_MAIN;
        const struct job_step *s;
        struct frame *f = w->frame;
        enum step_start hook;
        if (worker_hook_start(w, WORKER_HOOK_JOB_STARTED, &hook)) {
            if (hook == STEP_RUNNING)
                return;
            continue;
        }
        if (w->pre_steps && !f->owner) {
            item = w->pre_steps;
            w->pre_steps = item->next;
            stage = EVENTS_STAGE_PRE;
            s = item->step;
        } else if (f->next < f->count) {
            /* A composite's post steps run last registered first: its steps backwards. */
            s = &f->steps[f->stage == EVENTS_STAGE_POST ? f->count - 1 - f->next : f->next];
            f->next++;
            stage = f->stage;
        } else if (f->owner) {
            worker_end_composite(w, f);
            continue;
        } else if (w->post_steps) {
            item = w->post_steps;
            w->post_steps = item->next;
            stage = EVENTS_STAGE_POST;
            s = item->step;
        } else if (worker_hook_start(w, WORKER_HOOK_JOB_COMPLETED, &hook)) {
            if (hook == STEP_RUNNING)
                return;
            continue;
        } else {
            break;
        }
        worker_enter_frame(w, item ? item->frame : f);
        set_env_context(w, item ? item->frame : f);
        struct error err = {0};
        const char *condition = item ? stage_condition(w, item, stage) : s->condition;
        if (!item && stage != EVENTS_STAGE_MAIN && !(condition = worker_stage_condition(w, f, s)))
            continue; /* a composite's pre (post) stage runs only its actions' pre (post) steps */
        bool run = condition_true(w, condition, &err);
        if (err.message[0] || !run) {
            bool inner = !item && f->owner;
            int number = inner ? f->owner->number : ++w->step_counter;
            if (!inner) {
                cleanup_free char *shown =
                    item ? xstrdup(item->display_name) : skipped_step_name(w, s);
                events_step_started(w->events, number, s->id, shown, stage, NULL);
            }
            if (err.message[0]) {
                worker_report_error(w, NULL, &err);
                w->status = JOB_FAILED;
            }
            if (stage == EVENTS_STAGE_MAIN)
                skip_step(w, s, number, inner);
            else if (!inner)
                events_step_finished(w->events, number, EVENTS_SKIPPED, EVENTS_SKIPPED, NULL, 0,
                                     NULL);
            post_step_free(item);
            continue;
        }
        enum step_start r = start_step(w, s, stage, item);
        post_step_free(item);
        if (r == STEP_RUNNING) {
            w->current->condition = condition;
            return;
        }
    }
    finish_job(w);
}

/* --- the job's end --------------------------------------------------------------------- */

static json_t *evaluate_job_outputs(struct worker *w)
{
    json_t *outputs = json_object();
    if (!w->msg->job_outputs)
        return outputs;
    struct expr_context ec;
    struct template_context tc;
    worker_template_context(w, &ec, &tc);
    json_object_set(w->contexts, "env", w->job_env);
    struct error err = {0};
    worker_log_line(w, NULL, "Evaluate and set job outputs");
    json_t *values = template_evaluate_string_map(w->msg->job_outputs, &tc, &err);
    if (!values) {
        worker_report_error(w, NULL, &err);
        return outputs;
    }
    /* As the official runner's FinalizeJob: empty outputs are not set, one that holds a
     * secret is skipped with a warning, each one set is said. */
    const char *k;
    json_t *v;
    json_object_foreach(values, k, v)
    {
        const char *s = json_string_value(v);
        if (!s || !*s) {
            cleanup_free char *line = xasprintf("##[debug]Skip output '%s' since it's empty", k);
            worker_log_line(w, NULL, line);
            continue;
        }
        cleanup_free char *masked = masker_mask(w->masker, s, strlen(s));
        if (strcmp(masked, s) != 0) {
            cleanup_free char *m = xasprintf("Skip output '%s' since it may contain secret.", k);
            worker_log_warning(w, NULL, m);
            continue;
        }
        cleanup_free char *line = xasprintf("Set output '%s'", k);
        worker_log_line(w, NULL, line);
        json_object_set(outputs, k, v);
    }
    json_decref(values);
    return outputs;
}

static void finish_job(struct worker *w)
{
    json_t *outputs = evaluate_job_outputs(w);
    /* The official runner's "Complete job" ends the job's processes; so does ending the job's
     * sandbox below. */
    worker_log_line(w, NULL, "Cleaning up orphan processes");
    enum events_result result = w->cancel_requested          ? EVENTS_CANCELLED
                                : w->status == JOB_SUCCEEDED ? EVENTS_SUCCESS
                                                             : EVENTS_FAILURE;
    size_t n;
    cleanup_free struct events_output *list = output_list(outputs, &n);
    events_job_finished(w->events, result, list, n, NULL);
    struct error ignored = {0};
    events_writer_flush(w->events, &ignored);
    json_decref(outputs);
    if (w->sandbox) {
        sandbox_job_free(w->sandbox);
        w->sandbox = NULL;
    }
    worker_actions_close(w);
    /* The loop ends when the last handle has closed: ours here, the sandbox's on its own. */
    uv_close((uv_handle_t *)&w->sigint, NULL);
    uv_close((uv_handle_t *)&w->sigterm, NULL);
    uv_close((uv_handle_t *)&w->cancel_async, NULL);
    uv_close((uv_handle_t *)&w->advance, NULL);
    uv_close((uv_handle_t *)&w->flush, NULL);
}

/* --- cancellation ---------------------------------------------------------------------- */

/* SIGINT: the job is cancelled (the service's cancel, a job timeout, Ctrl-C in local mode).
 * As the official runner's StepsRunner, the running step's if: is tested again, and a step
 * that asks for always() or cancelled() goes on; the others are cancelled. SIGTERM: the runner
 * is shutting down, and the running step is cancelled whatever it asks for. */
static void cancel_job(struct worker *w, bool shutdown)
{
    bool first = !w->cancel_requested;
    w->cancel_requested = true;
    if (first) {
        w->status = JOB_CANCELLED;
        json_object_set_new(json_get(w->contexts, "job"), "status", json_string("cancelled"));
    }
    worker_actions_cancel(w); /* set-up downloads, or a composite's */
    struct running_step *rs = w->current;
    if (!rs || !rs->handle || worker_hook_outlives_cancel(rs))
        return;
    struct error err = {0};
    if (!shutdown && first && rs->condition && condition_true(w, rs->condition, &err)) {
        worker_log_line(w, rs,
                        "##[debug]The job was cancelled; this step's condition still "
                        "holds, so it goes on.");
        return;
    }
    sandbox_step_cancel(rs->handle);
}

static void on_signal(uv_signal_t *s, int signum)
{
    cancel_job(s->data, signum == SIGTERM);
}

static void on_cancel_async(uv_async_t *a)
{
    cancel_job(a->data, false);
}

void worker_cancel_current(void)
{
    if (current_worker)
        uv_async_send(&current_worker->cancel_async);
}

/* --- entry ----------------------------------------------------------------------------- */

static void on_flush_events(uv_prepare_t *p)
{
    struct worker *w = p->data;
    struct error err = {0};
    if (events_writer_flush(w->events, &err) < 0)
        log_debug("%s", err.message);
}

/* The first lines of the official runner's "Set up job". */
static void log_set_up_header(struct worker *w)
{
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    const char *lines[][2] = {
        {"Current runner version: '%s'", RUNNER_SERVICE_VERSION " (harrier)"},
        {"Runner name: '%s'", w->opt->runner_name ? w->opt->runner_name : "harrier"},
        {"Machine name: '%s'", host},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        cleanup_free char *line = xasprintf(lines[i][0], lines[i][1]);
        worker_log_line(w, NULL, line);
    }
}

static bool job_uses_actions(const struct job_message *msg)
{
    for (size_t i = 0; i < msg->step_count; i++)
        if (msg->steps[i].kind != JOB_STEP_SCRIPT)
            return true;
    return false;
}

/* The node JavaScript actions run on: asked once, `node --version`, before the first step. */
static void on_node_probe_exit(struct sandbox_step *step, const struct sandbox_step_result *r,
                               void *data)
{
    (void)step;
    struct worker *w = data;
    char text[64] = {0};
    ssize_t n = read(w->probe_fd, text, sizeof text - 1);
    close(w->probe_fd);
    w->probe_fd = -1;
    if (r->exit_code == 0 && !r->term_signal && n > 1 && text[0] == 'v')
        w->node_version = xstrndup(text, strcspn(text, "\r\n"));
    worker_advance(w);
}

static bool probe_node(struct worker *w)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return false;
    extern char **environ;
    const char *argv[] = {w->opt->node ? w->opt->node : "node", "--version", NULL};
    struct sandbox_spawn_options so = {
        .argv = argv,
        .env = (const char *const *)environ,
        .cwd = w->temp,
        .stdio = {{SANDBOX_STDIO_NULL, -1}, {SANDBOX_STDIO_FD, fds[1]}, {SANDBOX_STDIO_NULL, -1}},
        .on_exit = on_node_probe_exit,
        .data = w,
    };
    struct sandbox_step *handle;
    struct error err = {0};
    int rc = sandbox_spawn(w->sandbox, &so, &handle, &err);
    close(fds[1]);
    if (rc < 0) {
        close(fds[0]);
        return false;
    }
    w->probe_fd = fds[0];
    return true;
}

static int set_up(struct worker *w, struct error *err)
{
    w->contexts = json_deep_copy(w->msg->contexts);
    int rc;
    if ((rc = make_folders(w, err)) < 0)
        return rc;
    add_secrets(w);
    set_runner_context(w);
    if ((rc = evaluate_job_env(w, err)) < 0 || (rc = evaluate_defaults(w, err)) < 0)
        return rc;
    struct frame *f = xcalloc(1, sizeof *f);
    arena_init(&f->arena, 0);
    f->steps = w->msg->steps;
    f->count = w->msg->step_count;
    f->steps_context = json_incref(json_get(w->contexts, "steps"));
    f->inputs_context = json_incref(json_get(w->contexts, "inputs"));
    f->env_overlay = json_object();
    f->stage = EVENTS_STAGE_MAIN;
    w->frame = w->frames = f;
    return 0;
}

/* Set-up goes on once the job's actions are downloaded (on the loop, so that a cancellation
 * is heard meanwhile). A set-up that failed or was cancelled runs no step, as on GitHub. */
static void on_actions_ready(struct worker *w, int rc, const struct error *err)
{
    struct error e = {0};
    if (rc == 0 && !w->cancel_requested) {
        struct sandbox_job_options so = {
            .level = w->opt->sandbox_level,
            .allow_fallback = w->opt->sandbox_fallback,
            .hide_paths = w->opt->hide_paths,
            .writable_paths = (const char *const[]){w->opt->work_root, NULL},
        };
        rc = sandbox_job_new(&w->loop, &so, &w->sandbox, &e);
        err = &e;
        if (rc == 0)
            w->hooks = worker_hooks_new(); /* a job that could not be set up runs no hooks */
    }
    if (w->cancel_requested) {
        worker_log_line(w, NULL, "##[error]The operation was canceled.");
        finish_job(w);
        return;
    }
    if (rc < 0) {
        worker_report_error(w, NULL, err);
        w->status = JOB_FAILED;
        finish_job(w);
        return;
    }
    if (!job_uses_actions(w->msg) || !probe_node(w))
        start_next_step(w);
}

int worker_run(struct job_message *message, const struct worker_options *options, bool *succeeded,
               struct error *err)
{
    struct worker *w = xcalloc(1, sizeof *w);
    w->msg = message;
    w->opt = options;
    w->status_source.query = worker_status_now;
    w->masker = masker_new();
    w->events = events_writer_new_fd(w->masker, options->events_fd);
    uv_loop_init(&w->loop);
    uv_signal_init(&w->loop, &w->sigint);
    uv_signal_init(&w->loop, &w->sigterm);
    w->sigint.data = w->sigterm.data = w;
    uv_signal_start(&w->sigint, on_signal, SIGINT);
    uv_signal_start(&w->sigterm, on_signal, SIGTERM);
    uv_async_init(&w->loop, &w->cancel_async, on_cancel_async);
    w->cancel_async.data = w;
    uv_timer_init(&w->loop, &w->advance);
    w->advance.data = w;
    events_writer_set_buffered(w->events, true);
    uv_prepare_init(&w->loop, &w->flush);
    w->flush.data = w;
    uv_prepare_start(&w->flush, on_flush_events);
    current_worker = w;
    events_job_started(w->events, message->job_id, message->job_display_name, NULL);
    log_set_up_header(w);
    int rc = set_up(w, err);
    if (rc < 0) {
        worker_report_error(w, NULL, err);
        w->status = JOB_FAILED;
        finish_job(w); /* nothing runs; the job still reports its end */
    } else {
        worker_prepare_actions(w, on_actions_ready);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    current_worker = NULL;
    *succeeded = w->status == JOB_SUCCEEDED && !w->cancel_requested;
    uv_loop_close(&w->loop);
    events_writer_free(w->events);
    masker_free(w->masker);
    json_decref(w->contexts);
    json_decref(w->job_env);
    file_commands_path_list_free(&w->path);
    free(w->workspace);
    free(w->temp);
    free(w->tool_cache);
    free(w->file_commands_dir);
    free(w->event_path);
    free(w->defaults_shell);
    free(w->defaults_working_directory);
    while (w->resolved) {
        struct resolved_action *r = w->resolved;
        w->resolved = r->next;
        worker_resolved_action_free(r);
    }
    while (w->frames) {
        struct frame *f = w->frames;
        w->frames = f->next_all;
        worker_frame_free(f);
    }
    for (struct post_step *lists[] = {w->pre_steps, w->post_steps}, **l = lists; l < lists + 2; l++)
        while (*l) {
            struct post_step *p = *l;
            *l = p->next;
            post_step_free(p);
        }
    free(w->actions_cache);
    free(w->node_version);
    worker_hooks_free(w->hooks);
    free(w);
    return 0;
}
