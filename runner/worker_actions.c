/* uses: steps for the worker: actions found in the workspace or the action cache (downloaded
 * at set-up), JavaScript actions run on node with their inputs and state, composite actions
 * pushed as frames of steps, and local mode's checkout copy. */
#include "runner/worker_internal.h"

#include "lib/codec.h"
#include "lib/json.h"
#include "lib/path.h"
#include "runner/action_steps.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- uses: steps ------------------------------------------------------------------------- */

static bool is_checkout(const struct job_step *s)
{
    return s->repository_name && str_eq_nocase(s->repository_name, "actions/checkout") &&
           !*s->repository_path;
}

/* A remote action from the cache, downloaded when missing. */
static int resolve_remote(struct worker *w, const struct job_step *s, struct resolved_action *r,
                          struct error *err)
{
    const char *name = s->repository_name ? s->repository_name : "";
    const char *slash = strchr(name, '/');
    if (!slash || !s->repository_ref || !*s->repository_ref)
        return error_set(err, EINVAL, "Expected format {owner}/{repo}[/path]@ref. Actual '%s@%s'",
                         name, s->repository_ref ? s->repository_ref : "");
    cleanup_free char *owner = xstrndup(name, (size_t)(slash - name));
    const char *token = json_get_string(json_get(w->contexts, "secrets"), "GITHUB_TOKEN");
    struct action_cache_options o = {
        .cache_dir = w->actions_cache,
        .base_url = w->opt->actions_url,
        .token = token && *token ? token : NULL,
        .offline = w->opt->offline,
    };
    cleanup_free char *root = NULL;
    bool downloaded = false;
    r->repository = xstrdup(name);
    r->ref = xstrdup(s->repository_ref);
    if (action_cache_get(&o, owner, slash + 1, s->repository_ref, &root, &downloaded, err) < 0) {
        /* As act: in local mode, checking out the repository being run is copying it. */
        if (!is_checkout(s) || !w->opt->checkout_dir || w->opt->no_checkout_copy)
            return err->code;
        cleanup_free char *m =
            xasprintf("%s@%s could not be fetched (%s): the step copies %s "
                      "instead (--no-checkout-copy turns this off)",
                      name, s->repository_ref, err->message, w->opt->checkout_dir);
        worker_log_line(w, NULL, m);
        error_clear(err);
        r->checkout_copy = true;
        return 0;
    }
    if (downloaded) {
        cleanup_free char *m = xasprintf("Download action repository '%s@%s'", name, r->ref);
        worker_log_line(w, NULL, m);
    }
    r->dir = path_join(root, s->repository_path);
    return action_load(r->dir, &r->action, err);
}

/* Finds what a uses: step runs (once per step). */
int worker_resolve_step(struct worker *w, const struct job_step *s, struct resolved_action **out,
                        struct error *err)
{
    for (struct resolved_action *r = w->resolved; r; r = r->next) {
        if (r->step == s) {
            *out = r;
            return 0;
        }
    }
    if (s->kind == JOB_STEP_CONTAINER)
        return error_set(err, ENOTSUP,
                         "'docker://%s' is a container action: harrier cannot run container "
                         "actions yet (it has no OCI image runtime); use a run: step, or a "
                         "JavaScript or composite action",
                         s->image);
    struct resolved_action *r = xcalloc(1, sizeof *r);
    r->step = s;
    r->state = json_object();
    int rc;
    if (s->repository_type && str_eq_nocase(s->repository_type, "self")) {
        cleanup_free char *joined = path_join(w->workspace, s->repository_path);
        r->dir = path_normalize(joined);
        r->repository = xstrdup("");
        r->ref = xstrdup("");
        rc = action_load(r->dir, &r->action, err);
    } else {
        rc = resolve_remote(w, s, r, err);
    }
    r->next = w->resolved;
    w->resolved = r; /* freed with the job, whatever happened */
    *out = r;
    return rc;
}

void worker_resolved_action_free(struct resolved_action *r)
{
    action_free(r->action);
    free(r->dir);
    free(r->repository);
    free(r->ref);
    json_decref(r->state);
    free(r);
}

/* github.action* for the step: its context name and, for actions, where the action is (a step
 * inside a composite action sees the composite's). */
void worker_set_action_context(struct running_step *rs)
{
    json_t *github = json_get(rs->w->contexts, "github");
    const struct resolved_action *r = rs->resolved;
    if ((!r || !r->action) && rs->frame->resolved)
        r = rs->frame->resolved;
    json_object_set_new(github, "action",
                        json_string(rs->step->context_name ? rs->step->context_name : ""));
    json_object_set_new(github, "action_path", json_string(r && r->dir ? r->dir : ""));
    json_object_set_new(github, "action_repository",
                        json_string(r && r->repository ? r->repository : ""));
    json_object_set_new(github, "action_ref", json_string(r && r->ref ? r->ref : ""));
}

/* The action's inputs: with: values, then defaults (which may be expressions) for the rest;
 * with: keys the action does not declare are passed on with a warning, as GitHub does. */
static json_t *action_input_values(struct running_step *rs, json_t *with,
                                   const struct template_context *tc, struct error *err)
{
    const struct action *a = rs->resolved->action;
    struct template_context atc = *tc;
    atc.file_table = a->file_table;
    atc.file_count = a->file_count;
    json_t *values = json_object();
    for (size_t i = 0; i < a->input_count; i++) {
        const struct action_input *in = &a->inputs[i];
        json_t *given = json_get(with, in->name);
        if (given) {
            json_object_set(values, in->name, given);
            if (in->deprecation_message) {
                cleanup_free char *m = xasprintf("Input '%s' has been deprecated with message: %s",
                                                 in->name, in->deprecation_message);
                worker_log_warning(rs->w, rs, m);
            }
            continue;
        }
        if (!in->default_value)
            continue;
        char *value = template_evaluate_string(in->default_value, &atc, err);
        if (!value) {
            json_decref(values);
            return NULL;
        }
        json_object_set_new(values, in->name, json_string(value));
        free(value);
    }
    struct buf unexpected = BUF_INIT;
    const char *k;
    json_t *v;
    json_object_foreach(with, k, v)
    {
        if (json_get(values, k))
            continue;
        json_object_set(values, k, v);
        buf_printf(&unexpected, "%s'%s'", unexpected.len ? ", " : "", k);
    }
    if (unexpected.len && a->kind != ACTION_DOCKER) {
        struct buf valid = BUF_INIT;
        for (size_t i = 0; i < a->input_count; i++)
            buf_printf(&valid, "%s'%s'", i ? ", " : "", a->inputs[i].name);
        cleanup_free char *m = xasprintf("Unexpected input(s) %s, valid inputs are [%s]",
                                         unexpected.data, valid.len ? valid.data : "");
        worker_log_warning(rs->w, rs, m);
        buf_free(&valid);
    }
    buf_free(&unexpected);
    return values;
}

/* "Run owner/repo@ref" with its inputs, as the official runner's group shows them. */
static void log_action_header(struct running_step *rs)
{
    struct worker *w = rs->w;
    cleanup_free char *group = xasprintf("##[group]%s", rs->display_name);
    worker_log_line(w, rs, group);
    if (json_object_size(rs->input_values)) {
        worker_log_line(w, rs, "with:");
        const char *k;
        json_t *v;
        json_object_foreach(rs->input_values, k, v)
        {
            cleanup_free char *line = xasprintf("  %s: %s", k, json_string_value(v));
            worker_log_line(w, rs, line);
        }
    }
    worker_log_line(w, rs, "##[endgroup]");
}

static const char *action_label(const struct running_step *rs)
{
    const struct job_step *s = rs->step;
    return s->repository_name ? s->repository_name : s->repository_path;
}

static int node_major(const char *version)
{
    return version ? atoi(version + (version[0] == 'v')) : 0;
}

static const char *node_program(const struct worker *w)
{
    return w->opt->node ? w->opt->node : "node";
}

static int spawn_node(struct running_step *rs, struct error *err)
{
    struct worker *w = rs->w;
    const struct action *a = rs->resolved->action;
    const char *entry = rs->stage == EVENTS_STAGE_PRE    ? a->pre
                        : rs->stage == EVENTS_STAGE_POST ? a->post
                                                         : a->main;
    cleanup_free char *script = path_join(rs->resolved->dir, entry);
    if (!path_is_inside(rs->resolved->dir, script))
        return error_set(err, EINVAL, "%s: '%s' is outside the action's folder", a->file, entry);
    if (!w->node_version)
        return error_set(err, ENOENT,
                         "%s is a JavaScript action and no node was found: install Node.js or "
                         "give one with --node PATH",
                         action_label(rs));
    if (node_major(w->node_version) != a->node_version) {
        cleanup_free char *m = xasprintf("%s declares 'using: %s'; running it with node %s",
                                         action_label(rs), a->using, w->node_version);
        worker_log_warning(w, rs, m);
    }
    const char *argv[] = {node_program(w), script, NULL};
    return worker_spawn_process(rs, argv, w->workspace, err);
}

/* --- the checkout copy (local mode) ---------------------------------------------------- */

static int copy_file(const char *from, const char *to, mode_t mode, struct error *err)
{
    cleanup_fd int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return error_set_errno(err, errno, "cannot read %s", from);
    cleanup_fd int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
    if (out < 0)
        return error_set_errno(err, errno, "cannot write %s", to);
    char chunk[65536];
    ssize_t n;
    while ((n = read(in, chunk, sizeof chunk)) > 0)
        if (write(out, chunk, (size_t)n) != n)
            return error_set_errno(err, errno, "cannot write %s", to);
    return n < 0 ? error_set_errno(err, errno, "cannot read %s", from) : 0;
}

/* Copies the tree from into to (files, folders, symbolic links as they are), leaving out
 * `skip` (the work folder, when it sits inside the checkout). */
static int copy_tree(const char *from, const char *to, const char *skip, struct error *err)
{
    if (path_mkdir_all(to, 0755, err) < 0)
        return err->code;
    DIR *dir = opendir(from);
    if (!dir)
        return error_set_errno(err, errno, "cannot read %s", from);
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(dir))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        cleanup_free char *src = path_join(from, e->d_name);
        cleanup_free char *dst = path_join(to, e->d_name);
        struct stat st;
        if (strcmp(src, skip) == 0 || lstat(src, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            rc = copy_tree(src, dst, skip, err);
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t n = readlink(src, target, sizeof target - 1);
            if (n >= 0) {
                target[n] = '\0';
                unlink(dst);
                if (symlink(target, dst) < 0)
                    rc = error_set_errno(err, errno, "cannot create %s", dst);
            }
        } else if (S_ISREG(st.st_mode)) {
            rc = copy_file(src, dst, st.st_mode, err);
        }
    }
    closedir(dir);
    return rc;
}

static int run_checkout_copy(struct running_step *rs, struct error *err)
{
    struct worker *w = rs->w;
    cleanup_free char *m =
        xasprintf("Copying the working tree %s into %s", w->opt->checkout_dir, w->workspace);
    worker_log_line(w, rs, m);
    return copy_tree(w->opt->checkout_dir, w->workspace, w->opt->work_root, err);
}

/* --- composite actions ----------------------------------------------------------------- */

void worker_frame_free(struct frame *f)
{
    json_decref(f->steps_context);
    json_decref(f->inputs_context);
    json_decref(f->env_overlay);
    arena_free(&f->arena);
    free(f);
}

/* Pushes the composite's steps as a new frame; they run next, then end_composite. */
static int start_composite(struct running_step *rs, const struct template_context *tc,
                           struct error *err)
{
    struct worker *w = rs->w;
    const struct action *a = rs->resolved->action;
    struct frame *f = xcalloc(1, sizeof *f);
    arena_init(&f->arena, 0);
    f->parent = rs->frame;
    f->owner = rs;
    f->resolved = rs->resolved;
    f->steps_context = json_object();
    f->inputs_context = json_deep_copy(rs->input_values);
    f->env_overlay = json_deep_copy(rs->frame->env_overlay);
    json_t *step_env = template_evaluate_string_map(rs->step->environment, tc, err);
    int rc = step_env ? 0 : err->code;
    json_object_update(f->env_overlay, step_env);
    json_decref(step_env);
    int count = rc == 0 ? action_steps_convert(&f->arena, a, f, &f->steps, err) : rc;
    if (count < 0) {
        worker_frame_free(f);
        return count;
    }
    f->count = (size_t)count;
    f->next_all = w->frames;
    w->frames = f;
    w->frame = f;
    return 0;
}

void worker_enter_frame(struct worker *w, struct frame *f)
{
    json_object_set(w->contexts, "steps", f->steps_context);
    json_object_set(w->contexts, "inputs", f->inputs_context);
}

/* The composite's steps have run: its outputs come from theirs, its result from theirs. */
void worker_end_composite(struct worker *w, struct frame *f)
{
    struct running_step *rs = f->owner;
    const struct action *a = rs->resolved->action;
    worker_enter_frame(w, f);
    struct expr_context ec;
    struct template_context tc;
    worker_template_context(w, &ec, &tc);
    tc.file_table = a->file_table;
    tc.file_count = a->file_count;
    for (size_t i = 0; i < a->output_count; i++) {
        struct error err = {0};
        char *value = a->outputs[i].value ? template_evaluate_string(a->outputs[i].value, &tc, &err)
                                          : xstrdup("");
        if (!value) {
            worker_report_error(w, rs, &err);
            f->failed = true;
            continue;
        }
        json_object_set_new(rs->outputs, a->outputs[i].name, json_string(value));
        free(value);
    }
    w->frame = f->parent;
    worker_enter_frame(w, f->parent);
    enum events_result outcome = f->failed ? EVENTS_FAILURE : EVENTS_SUCCESS;
    if (w->cancel_requested && f->failed)
        outcome = EVENTS_CANCELLED;
    worker_finish_step(rs, outcome);
    worker_running_step_free(rs);
}

static void register_post(struct worker *w, struct running_step *rs)
{
    struct post_step *p = xcalloc(1, sizeof *p);
    p->step = rs->step;
    p->resolved = rs->resolved;
    p->frame = rs->frame;
    p->display_name = xasprintf("Post %s", rs->display_name);
    p->next = w->post_steps;
    w->post_steps = p;
}

/* A uses: step: the checkout copy, a JavaScript action's process, or a composite's frame. */
int worker_start_action(struct running_step *rs, json_t *with, const struct template_context *tc,
                        enum step_start *started, struct error *err)
{
    struct worker *w = rs->w;
    struct resolved_action *r = rs->resolved;
    if (r->checkout_copy)
        return run_checkout_copy(rs, err);
    const struct action *a = r->action;
    if (a->kind == ACTION_DOCKER)
        return error_set(err, ENOTSUP,
                         "%s is a Docker container action (runs.using: %s): harrier cannot run "
                         "container actions yet (it has no OCI image runtime)",
                         action_label(rs), a->using);
    rs->input_values = action_input_values(rs, with, tc, err);
    if (!rs->input_values)
        return err->code;
    if (rs->stage == EVENTS_STAGE_MAIN)
        log_action_header(rs);
    if (a->kind == ACTION_COMPOSITE) {
        if (start_composite(rs, tc, err) < 0)
            return err->code;
        *started = STEP_ENTERED;
        return 0;
    }
    if (spawn_node(rs, err) < 0)
        return err->code;
    /* Post steps run at the job's end for actions whose main step ran. */
    if (rs->stage == EVENTS_STAGE_MAIN && a->post)
        register_post(w, rs);
    *started = STEP_RUNNING;
    return 0;
}
