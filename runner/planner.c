#include "runner/planner.h"

#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/json.h"
#include "lib/path.h"
#include "workflow/context_data.h"
#include "workflow/pattern.h"
#include "workflow/status.h"
#include "workflow/template.h"

#include <errno.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

/* --- loading -------------------------------------------------------------------------- */

int planner_load(const char *path, const char *rel_path, struct plan_workflow **out,
                 struct error *err)
{
    size_t len;
    cleanup_free char *text = path_read_file(path, &len, err);
    if (!text)
        return err->code;
    struct plan_workflow *wf = xcalloc(1, sizeof *wf);
    arena_init(&wf->arena, 0);
    schema_context_init(&wf->schema, &wf->arena, &schema_workflow);
    wf->rel_path = xstrdup(rel_path);
    wf->root = schema_read_workflow(&wf->schema, rel_path, text, len, NULL);
    int rc = schema_context_check(&wf->schema, err);
    if (rc == 0 && !wf->root)
        rc = error_set(err, EINVAL, "%s: the workflow could not be read", rel_path);
    if (rc == 0) {
        workflow_context_init(&wf->context, &wf->schema, &wf->options);
        if (workflow_convert(&wf->context, wf->root, &wf->template) < 0 || !wf->template) {
            rc = schema_context_check(&wf->schema, err);
            if (rc == 0)
                rc = error_set(err, EINVAL, "%s: the workflow is not valid", rel_path);
        }
    }
    if (rc < 0) {
        planner_workflow_free(wf);
        return rc;
    }
    struct token *on = token_mapping_get(wf->root, "on", false);
    wf->events = on ? workflow_events_to_json(&wf->context, on) : json_object();
    struct token *name = token_mapping_get(wf->root, "name", false);
    wf->name = xstrdup(name && name->type == TOKEN_STRING ? name->u.string : rel_path);
    *out = wf;
    return 0;
}

void planner_workflow_free(struct plan_workflow *wf)
{
    if (!wf)
        return;
    json_decref(wf->events);
    schema_context_free(&wf->schema);
    arena_free(&wf->arena);
    free(wf->rel_path);
    free(wf->name);
    free(wf);
}

/* --- on: and its filters --------------------------------------------------------------- */

/* Collects a JSON array of strings as a NULL-terminated list (borrowed strings). */
static const char **string_list(const json_t *array, size_t *count)
{
    *count = json_array_size(array);
    const char **list = xcalloc(*count + 1, sizeof *list);
    for (size_t i = 0; i < *count; i++) {
        const char *s = json_string_value(json_array_get(array, i));
        list[i] = s ? s : "";
    }
    return list;
}

/* One filter pair (e.g. branches / branches-ignore) against inputs. Returns true when the
 * workflow may run as far as this pair is concerned. */
static bool filter_allows(const json_t *config, const char *key, const char *const *inputs,
                          size_t n)
{
    cleanup_free char *ignore_key = xasprintf("%s-ignore", key);
    const json_t *positive = json_get(config, key), *ignore = json_get(config, ignore_key);
    struct error err = {0};
    bool allows = true;
    size_t count;
    if (json_is_array(positive)) {
        cleanup_free const char **patterns = string_list(positive, &count);
        struct pattern_list list = {0};
        if (pattern_list_compile(&list, patterns, count, &err) < 0 ||
            pattern_list_skips(&list, inputs, n))
            allows = false;
        pattern_list_free(&list);
    }
    if (allows && json_is_array(ignore)) {
        cleanup_free const char **patterns = string_list(ignore, &count);
        struct pattern_list list = {0};
        if (pattern_list_compile(&list, patterns, count, &err) < 0 ||
            pattern_list_ignores(&list, inputs, n))
            allows = false;
        pattern_list_free(&list);
    }
    return allows;
}

static bool has_filter(const json_t *config, const char *key)
{
    cleanup_free char *ignore_key = xasprintf("%s-ignore", key);
    return json_get(config, key) || json_get(config, ignore_key);
}

/* GitHub's default activity types where a workflow names none. */
static const char *const pull_request_default_types[] = {"opened", "synchronize", "reopened", NULL};

static bool types_allow(const json_t *config, const char *event_name, const json_t *payload)
{
    const char *action = json_get_string(payload, "action");
    const json_t *types = json_get(config, "types");
    if (!action)
        return true;
    if (json_is_array(types)) {
        for (size_t i = 0; i < json_array_size(types); i++)
            if (json_is_string(json_array_get(types, i)) &&
                strcmp(json_string_value(json_array_get(types, i)), action) == 0)
                return true;
        return false;
    }
    if (strcmp(event_name, "pull_request") == 0 || strcmp(event_name, "pull_request_target") == 0) {
        for (const char *const *t = pull_request_default_types; *t; t++)
            if (strcmp(*t, action) == 0)
                return true;
        return false;
    }
    return true;
}

bool planner_matches_event(const struct plan_workflow *wf, const char *event_name,
                           const json_t *payload, const struct gitinfo *git)
{
    const json_t *config = json_get(wf->events, event_name);
    if (!config)
        return false;
    if (!types_allow(config, event_name, payload))
        return false;
    const char *const changed_none[] = {NULL};
    const char *const *changed =
        git->changed_files ? (const char *const *)git->changed_files : changed_none;
    if (strcmp(event_name, "push") == 0) {
        bool is_tag = strcmp(git->ref_type, "tag") == 0;
        const char *const name[] = {git->ref_name, NULL};
        /* As GitHub: with only tag filters, branch pushes do not run, and the reverse. */
        if (is_tag ? (has_filter(config, "branches") && !has_filter(config, "tags"))
                   : (has_filter(config, "tags") && !has_filter(config, "branches")))
            return false;
        if (!filter_allows(config, is_tag ? "tags" : "branches", name, 1))
            return false;
        /* Tag pushes ignore paths filters, as GitHub does. */
        return is_tag || filter_allows(config, "paths", changed, git->changed_count);
    }
    if (str_starts_with(event_name, "pull_request")) {
        const char *base =
            json_get_string(json_get(json_get(payload, "pull_request"), "base"), "ref");
        const char *const name[] = {base ? base : "", NULL};
        return filter_allows(config, "branches", name, 1) &&
               filter_allows(config, "paths", changed, git->changed_count);
    }
    return true;
}

/* --- job-level evaluation ----------------------------------------------------------------- */

const char *planner_job_id(const struct workflow_job *job)
{
    return job->id && job->id->type == TOKEN_STRING ? job->id->u.string : "";
}

/* The host of success(), failure()… in a job's if: how its needed jobs stand. */
struct needs_status {
    struct status_source source;
    const struct plan_needs *needs;
};

static void needs_status_now(const struct status_source *source, struct status_now *now)
{
    const struct plan_needs *needs = ((const struct needs_status *)source)->needs;
    now->succeeded = needs->all_succeeded;
    now->failed = needs->any_failed;
    now->cancelled = needs->cancel_requested;
}

static const char *const job_named_values[] = {"github", "needs",    "vars", "inputs",
                                               "matrix", "strategy", NULL};
static const struct expr_parse_options job_parse_options = {job_named_values, status_functions};

/* The contexts a job-level expression sees; matrix/strategy when config is given. */
static json_t *job_contexts(const struct workflow_job *job, const struct plan_contexts *ctx,
                            const struct plan_needs *needs,
                            const struct matrix_configuration *config)
{
    json_t *github = json_deep_copy(ctx->github);
    json_object_set_new(github, "job", json_string(planner_job_id(job)));
    json_t *all = json_pack("{s:o, s:O, s:O, s:O}", "github", github, "needs",
                            needs->context ? needs->context : json_object(), "vars",
                            ctx->vars ? ctx->vars : json_object(), "inputs",
                            ctx->inputs ? ctx->inputs : json_object());
    json_object_set_new(all, "matrix",
                        config && config->matrix ? json_incref(config->matrix) : json_null());
    json_object_set_new(all, "strategy",
                        config && config->strategy ? json_incref(config->strategy) : json_object());
    return all;
}

struct job_eval {
    json_t *contexts;
    struct needs_status status;
    struct expr_context expr;
    struct template_context template;
};

static void job_eval_init(struct job_eval *e, struct plan_workflow *wf,
                          const struct workflow_job *job, const struct plan_contexts *ctx,
                          const struct plan_needs *needs, const struct matrix_configuration *config)
{
    e->contexts = job_contexts(job, ctx, needs, config);
    e->status = (struct needs_status){{needs_status_now}, needs};
    e->expr = (struct expr_context){
        .contexts = e->contexts, .functions = status_functions, .host = &e->status.source};
    e->template = (struct template_context){.expr = &e->expr,
                                            .parse = &job_parse_options,
                                            .file_table = (const char *const *)wf->schema.files,
                                            .file_count = wf->schema.nfiles};
}

int planner_job_condition(struct plan_workflow *wf, const struct workflow_job *job,
                          const struct plan_contexts *ctx, const struct plan_needs *needs,
                          bool *run, struct error *err)
{
    *run = true;
    if (!job->if_condition)
        return 0;
    struct job_eval e;
    job_eval_init(&e, wf, job, ctx, needs, NULL);
    int rc = template_evaluate_bool(job->if_condition, &e.template, true, run, err);
    json_decref(e.contexts);
    return rc;
}

struct matrix_errors {
    struct plan_workflow *wf;
    struct buf text;
    const struct token *first;
};

static void collect_matrix_error(void *data, const struct token *at, const char *message)
{
    struct matrix_errors *m = data;
    if (m->text.len)
        buf_putc(&m->text, '\n');
    const char *file = at ? schema_context_file_name(&m->wf->schema, at->file) : NULL;
    if (file && at->line)
        buf_printf(&m->text, "%s (Line: %d, Col: %d): ", file, at->line, at->col);
    buf_puts(&m->text, message);
    if (!m->first)
        m->first = at;
}

int planner_job_matrix(struct plan_workflow *wf, const struct workflow_job *job,
                       const struct plan_contexts *ctx, const struct plan_needs *needs,
                       struct matrix *out, struct error *err)
{
    memset(out, 0, sizeof *out);
    const struct token *strategy = NULL;
    struct job_eval e;
    job_eval_init(&e, wf, job, ctx, needs, NULL);
    if (job->strategy) {
        strategy = template_evaluate_token(&wf->arena, job->strategy, &e.template, err);
        if (!strategy) {
            json_decref(e.contexts);
            return err->code;
        }
    }
    json_decref(e.contexts);
    struct token *name = job->name;
    struct matrix_options mo = {
        .job_name = name && name->type == TOKEN_STRING ? name->u.string : planner_job_id(job),
        .job_id = planner_job_id(job),
    };
    struct matrix_errors errors = {wf, BUF_INIT, NULL};
    int rc = matrix_expand(strategy, &mo, out, collect_matrix_error, &errors);
    if (rc < 0) {
        error_set(err, EINVAL, "%s", errors.text.len ? errors.text.data : "invalid strategy");
        matrix_free(out);
    }
    buf_free(&errors.text);
    return rc < 0 ? err->code : 0;
}

char *planner_job_display_name(struct plan_workflow *wf, const struct workflow_job *job,
                               const struct plan_contexts *ctx, const struct plan_needs *needs,
                               const struct matrix_configuration *config)
{
    if (job->name && job->name->type != TOKEN_STRING) {
        struct job_eval e;
        job_eval_init(&e, wf, job, ctx, needs, config);
        struct error err = {0};
        char *name = template_evaluate_string(job->name, &e.template, &err);
        json_decref(e.contexts);
        if (name)
            return name;
    }
    if (config && config->name)
        return xstrdup(config->name);
    return xstrdup(planner_job_id(job));
}

/* --- the job message ---------------------------------------------------------------------- */

static void set_token(json_t *obj, const char *key, const struct token *t)
{
    if (t)
        json_object_set_new(obj, key, token_to_json(t, TOKEN_JSON_JOB_MESSAGE));
}

/* The step's `if` as the service sends it: an expression string. */
static const char *condition_text(const struct token *t)
{
    if (!t)
        return "success()";
    switch (t->type) {
    case TOKEN_EXPRESSION:
        return t->u.expression;
    case TOKEN_BOOLEAN:
        return t->u.boolean ? "true" : "false";
    case TOKEN_STRING:
        return *t->u.string ? t->u.string : "success()";
    default:
        return "success()";
    }
}

/* uses: docker://image, ./local/path, owner/repo[/path]@ref → the step's reference. */
static json_t *uses_reference(const char *uses)
{
    if (str_starts_with(uses, "docker://"))
        return json_pack("{s:s, s:s}", "type", "containerRegistry", "image", uses + 9);
    if (str_starts_with(uses, "./") || str_starts_with(uses, "../"))
        return json_pack("{s:s, s:s, s:s}", "type", "repository", "repositoryType", "self", "path",
                         uses);
    const char *at = strrchr(uses, '@');
    cleanup_free char *spec = xstrndup(uses, at ? (size_t)(at - uses) : strlen(uses));
    char *slash = strchr(spec, '/');
    char *second = slash ? strchr(slash + 1, '/') : NULL;
    const char *path = "";
    if (second) {
        *second = '\0';
        path = second + 1;
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "repository", "repositoryType", "GitHub",
                     "name", spec, "ref", at ? at + 1 : "", "path", path);
}

static json_t *step_json(struct plan_workflow *wf, const struct workflow_step *s)
{
    cleanup_free char *guid = codec_uuid4();
    json_t *step =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "action", "id", guid, "name", s->id,
                  "contextName", s->id, "condition", condition_text(s->if_condition));
    if (s->run) {
        struct token *inputs = token_new_mapping(&wf->arena);
        static const char *const keys[] = {"script", "shell", "workingDirectory"};
        struct token *values[] = {s->run, s->shell, s->working_directory};
        for (size_t i = 0; i < 3; i++)
            if (values[i])
                token_mapping_add(&wf->arena, inputs, token_new_string(&wf->arena, keys[i]),
                                  values[i]);
        json_object_set_new(step, "reference", json_pack("{s:s}", "type", "script"));
        set_token(step, "inputs", inputs);
    } else {
        const char *uses = s->uses && s->uses->type == TOKEN_STRING ? s->uses->u.string : "";
        json_object_set_new(step, "reference", uses_reference(uses));
        set_token(step, "inputs", s->with);
    }
    set_token(step, "environment", s->env);
    set_token(step, "continueOnError", s->continue_on_error);
    set_token(step, "timeoutInMinutes", s->timeout_minutes);
    set_token(step, "displayNameToken", s->name);
    return step;
}

static json_t *token_list(const struct token *a, const struct token *b)
{
    json_t *list = json_array();
    if (a)
        json_array_append_new(list, token_to_json(a, TOKEN_JSON_JOB_MESSAGE));
    if (b)
        json_array_append_new(list, token_to_json(b, TOKEN_JSON_JOB_MESSAGE));
    return list;
}

static json_t *variables_json(const struct workflow_job *job, const struct plan_contexts *ctx)
{
    const char *token = json_get_string(ctx->secrets, "GITHUB_TOKEN");
    json_t *vars =
        json_pack("{s:{s:s, s:b}, s:{s:s, s:b}, s:{s:s}, s:{s:s}}", "system.github.token", "value",
                  token ? token : "", "isSecret", 1, "github_token", "value", token ? token : "",
                  "isSecret", 1, "system.github.job", "value", planner_job_id(job),
                  "system.runnerEnvironment", "value", "self-hosted");
    const char *name;
    json_t *value;
    json_object_foreach(ctx->secrets, name, value)
    {
        if (str_eq_nocase(name, "GITHUB_TOKEN") || !json_is_string(value))
            continue;
        json_object_set_new(vars, name, json_pack("{s:O, s:b}", "value", value, "isSecret", 1));
    }
    return vars;
}

json_t *planner_job_message(struct plan_workflow *wf, const struct workflow_job *job,
                            const struct plan_contexts *ctx, const struct plan_needs *needs,
                            const struct matrix_configuration *config,
                            const struct plan_message_options *options, struct error *err)
{
    if (job->reusable) {
        error_set(err, ENOTSUP,
                  "job '%s' calls a reusable workflow, which harrier's local mode cannot run "
                  "yet",
                  planner_job_id(job));
        return NULL;
    }
    json_t *contexts = job_contexts(job, ctx, needs, config);
    json_t *context_data = json_object();
    const char *name;
    json_t *value;
    json_object_foreach(contexts, name, value)
    {
        json_object_set_new(context_data, name, context_data_encode(value, NULL));
    }
    json_decref(contexts);
    cleanup_free char *job_guid = codec_uuid4();
    cleanup_free char *plan_guid = codec_uuid4();
    cleanup_free char *timeline_guid = codec_uuid4();
    json_t *files = json_array();
    for (size_t i = 0; i < wf->schema.nfiles; i++)
        json_array_append_new(files, json_string(wf->schema.files[i]));
    json_t *steps = json_array();
    for (size_t i = 0; i < job->steps_count; i++)
        json_array_append_new(steps, step_json(wf, &job->steps[i]));
    json_t *message = json_pack(
        "{s:s, s:{s:s, s:s, s:i, s:s}, s:{s:s, s:i}, s:s, s:s, s:s, s:i, "
        "s:{s:[{s:s, s:s, s:s, s:{s:s, s:{s:s}}, s:{}, s:b, s:b}]}, s:o, s:o, s:[], s:o, "
        "s:o, s:o, s:o}",
        "messageType", "PipelineAgentJobRequest", "plan", "scopeIdentifier", plan_guid, "planType",
        "free", "version", 12, "planId", plan_guid, "timeline", "id", timeline_guid, "changeId", 1,
        "jobId", job_guid, "jobDisplayName", options->display_name, "jobName", planner_job_id(job),
        "requestId", 1, "resources", "endpoints", "name", "SystemVssConnection", "type",
        "ExternalTfs", "url", options->system_url ? options->system_url : "", "authorization",
        "scheme", "OAuth", "parameters", "AccessToken", options->token ? options->token : "",
        "data", "isShared", 0, "isReady", 1, "variables", variables_json(job, ctx), "contextData",
        context_data, "mask", "fileTable", files, "steps", steps, "environmentVariables",
        token_list(wf->template->env, job->env), "defaults",
        token_list(wf->template->defaults, job->defaults));
    if (!message) {
        error_set(err, EINVAL, "cannot build the job message for '%s'", planner_job_id(job));
        return NULL;
    }
    set_token(message, "jobOutputs", job->outputs);
    set_token(message, "jobContainer", job->container);
    set_token(message, "jobServiceContainers", job->services);
    json_object_set_new(message, "workspace", json_object());
    return message;
}
