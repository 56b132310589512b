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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- where actions come from ------------------------------------------------------------ */

/* As the official runner (Constants.CompositeActionsMaxDepth). */
#define COMPOSITE_MAX_DEPTH 9
/* ActionManager.GetDownloadInfoAsync: three tries, 10-30 s apart. */
#define RESOLVE_ATTEMPTS 3
#define DOWNLOAD_ATTEMPTS 3

static bool is_checkout(const struct job_step *s)
{
    return s->repository_name && str_eq_nocase(s->repository_name, "actions/checkout") &&
           !*s->repository_path;
}

static bool is_local(const struct job_step *s)
{
    return s->repository_type && str_eq_nocase(s->repository_type, "self");
}

static bool is_remote(const struct job_step *s)
{
    return s->kind == JOB_STEP_REPOSITORY && !is_local(s);
}

/* Runner mode: the job came from the service (its SystemVssConnection names a URL; local
 * mode's planner leaves it empty), and no --actions-url says otherwise. */
static bool from_service(const struct worker *w)
{
    const struct job_message *m = w->msg;
    return !w->opt->actions_url && !w->opt->offline && m->connection_url && *m->connection_url &&
           m->access_token && m->plan_id && m->job_id;
}

/* HARRIER_TEST_TIMER_SCALE (test-only, read only when set) shrinks the back-offs, as it
 * shrinks the listener's timers. _GITHUB_ACTION_DOWNLOAD_NO_BACKOFF turns them off, as it does
 * for the official runner. */
static void backoff_range(const struct worker *w, unsigned *lo, unsigned *hi)
{
    /* Local mode: someone is waiting at a terminal; a second or two is enough. */
    double min_ms = from_service(w) ? 10000 : 1000, max_ms = from_service(w) ? 30000 : 2000;
    const char *scale = getenv("HARRIER_TEST_TIMER_SCALE");
    if (scale && atof(scale) > 0) {
        min_ms *= atof(scale);
        max_ms *= atof(scale);
    }
    const char *none = getenv("_GITHUB_ACTION_DOWNLOAD_NO_BACKOFF");
    if (none && *none)
        min_ms = max_ms = 0;
    *lo = (unsigned)min_ms;
    *hi = (unsigned)max_ms;
}

static unsigned backoff_pick(unsigned lo, unsigned hi)
{
    return hi > lo ? lo + (unsigned)((unsigned long)random() % (hi - lo + 1)) : lo;
}

static struct resolved_action *resolved_find(struct worker *w, const struct job_step *s)
{
    for (struct resolved_action *r = w->resolved; r; r = r->next)
        if (r->step == s)
            return r;
    return NULL;
}

static struct resolved_action *resolved_new(struct worker *w, const struct job_step *s,
                                            struct resolved_action *parent)
{
    struct resolved_action *r = xcalloc(1, sizeof *r);
    r->step = s;
    r->parent = parent;
    r->state = json_object();
    arena_init(&r->arena, 0);
    r->next = w->resolved;
    w->resolved = r; /* freed with the job, whatever happens */
    return r;
}

static int resolved_depth(const struct resolved_action *r)
{
    int depth = 0;
    for (; r->parent; r = r->parent)
        depth++;
    return depth;
}

/* A composite's runs.steps as steps, once: their pointers key the actions inside it. */
static int composite_steps(struct resolved_action *r, struct error *err)
{
    if (r->steps_ready)
        return 0;
    int count = action_steps_convert(&r->arena, r->action, r, &r->steps, err);
    if (count < 0)
        return count;
    r->step_count = (size_t)count;
    r->steps_ready = true;
    return 0;
}

/* Whether the action has a pre step: a JavaScript action with runs.pre, or a composite with an
 * action inside that has one (ActionManager registers those under the composite, whose pre
 * stage then runs them). Local actions inside are read only when they start: never counted. */
static bool has_pre(struct worker *w, const struct resolved_action *r)
{
    if (!r || !r->action)
        return false;
    if (r->action->kind == ACTION_NODE)
        return r->action->pre != NULL;
    if (r->action->kind != ACTION_COMPOSITE || !r->steps_ready)
        return false;
    for (size_t i = 0; i < r->step_count; i++)
        if (is_remote(&r->steps[i]) && has_pre(w, resolved_find(w, &r->steps[i])))
            return true;
    return false;
}

/* Whether the action has a post step (HasPost): a JavaScript action with runs.post, a container
 * action with post-entrypoint, or a composite with an action inside that has one. A local
 * action inside a composite counts as having one: ActionManager cannot read it before it runs
 * and assumes so, so such a composite always gets a post step (which may run nothing). */
static bool has_post(struct worker *w, const struct resolved_action *r)
{
    if (!r || !r->action)
        return false;
    if (r->action->kind == ACTION_NODE)
        return r->action->post != NULL;
    if (r->action->kind == ACTION_DOCKER)
        return r->action->post_entrypoint != NULL;
    if (!r->steps_ready)
        return false;
    for (size_t i = 0; i < r->step_count; i++) {
        const struct job_step *s = &r->steps[i];
        if (is_local(s) || (is_remote(s) && has_post(w, resolved_find(w, s))))
            return true;
    }
    return false;
}

/* --- preparing: resolve (runner mode), download, read; level by level ------------------- */

typedef void prepare_done_fn(struct worker *w, int rc, const struct error *err, void *user);

/* One preparation: the remote actions of one level of composite nesting at a time, each level
 * resolved in one actiondownloadinfo call, as ActionManager batches them. */
struct actions_prepare {
    struct worker *w;
    struct resolved_action **level;
    size_t count, next;
    int depth;
    int attempt;
    struct vss_action_download_info_call *call;
    struct action_fetch *fetch;
    bool started, waiting, cancelled;
    const struct running_step *log_to; /* a composite's step; NULL: the job's set-up */
    prepare_done_fn *done;
    void *user;
};

static void plog(const struct actions_prepare *p, const char *line)
{
    worker_log_line(p->w, p->log_to, line);
}

static void level_start(struct actions_prepare *p);
static void level_fetch_next(struct actions_prepare *p);
static void resolve_send(struct actions_prepare *p);

static void prepare_finish(struct actions_prepare *p, int rc, const struct error *err)
{
    struct worker *w = p->w;
    w->prepare = NULL;
    struct error cancelled = {0};
    if (rc < 0 && p->cancelled && !err) {
        error_set(&cancelled, ECANCELED, "The operation was canceled.");
        err = &cancelled;
    }
    prepare_done_fn *done = p->done;
    void *user = p->user;
    free(p->level);
    free(p);
    done(w, rc, err, user);
}

static void prepare_fail(struct actions_prepare *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void prepare_fail(struct actions_prepare *p, int code, const char *fmt, ...)
{
    struct error e = {0};
    va_list ap;
    va_start(ap, fmt);
    char text[ERROR_MESSAGE_MAX];
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    error_set(&e, code, "%s", text);
    prepare_finish(p, e.code, &e);
}

static void ensure_http(struct worker *w)
{
    if (!w->http)
        w->http = http_client_new(&w->loop);
}

static void on_actions_timer(uv_timer_t *t);

/* The next move from a fresh loop turn, after ms. */
static void prepare_wait(struct actions_prepare *p, uint64_t ms)
{
    struct worker *w = p->w;
    if (!w->actions_timer_open) {
        uv_timer_init(&w->loop, &w->actions_timer);
        w->actions_timer.data = w;
        w->actions_timer_open = true;
    }
    p->waiting = true;
    uv_timer_start(&w->actions_timer, on_actions_timer, ms, 0);
}

static void on_actions_timer(uv_timer_t *t)
{
    struct actions_prepare *p = ((struct worker *)t->data)->prepare;
    if (!p)
        return;
    p->waiting = false;
    if (p->cancelled) {
        prepare_finish(p, -ECANCELED, NULL);
    } else if (!p->started) {
        p->started = true;
        level_start(p);
    } else {
        resolve_send(p);
    }
}

static const char *download_key(struct arena *arena, const struct job_step *s)
{
    return arena_printf(arena, "%s@%s", s->repository_name, s->repository_ref);
}

/* Keeps what the service said, and masks the download token (GetDownloadInfoAsync adds it to
 * the secret masker). */
static void keep_download_infos(struct worker *w, const struct vss_action_download_infos *infos)
{
    for (size_t i = 0; i < infos->count; i++) {
        const struct vss_action_download_info *a = &infos->items[i];
        if (a->token)
            masker_add_secret(w->masker, a->token, strlen(a->token), true);
        json_t *info = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", a->name_with_owner,
                                 "resolved_name", a->resolved_name_with_owner, "ref", a->ref, "sha",
                                 a->resolved_sha, "tarball", a->tarball_url);
        if (a->token)
            json_object_set_new(info, "token", json_string(a->token));
        if (a->package_version)
            json_object_set_new(info, "package_version", json_string(a->package_version));
        if (a->package_digest)
            json_object_set_new(info, "package_digest", json_string(a->package_digest));
        json_object_set_new(w->download_infos, a->key, info);
    }
}

static void on_resolved(int rc, const struct error *err,
                        const struct vss_action_download_infos *infos, void *user)
{
    struct actions_prepare *p = user;
    struct worker *w = p->w;
    p->call = NULL;
    if (p->cancelled) {
        prepare_finish(p, -ECANCELED, NULL);
        return;
    }
    if (rc == 0) {
        keep_download_infos(w, infos);
        level_fetch_next(p);
        return;
    }
    /* A 422 (the action or its ref does not exist, or policy forbids it) fails at once; other
     * errors are tried again, as GetDownloadInfoAsync does. */
    if (rc == VSS_ERROR_ACTION_UNRESOLVABLE) {
        prepare_finish(p, rc, err);
        return;
    }
    if (p->attempt >= RESOLVE_ATTEMPTS) {
        prepare_fail(p, EIO, "Failed to resolve action download info. %s", err->message);
        return;
    }
    cleanup_free char *m =
        xasprintf("Failed to resolve action download info. Error: %s", err->message);
    plog(p, m);
    unsigned lo, hi;
    backoff_range(w, &lo, &hi);
    unsigned wait = backoff_pick(lo, hi);
    if (wait) {
        cleanup_free char *r = xasprintf("Retrying in %g seconds", wait / 1000.0);
        plog(p, r);
    }
    prepare_wait(p, wait);
}

static void resolve_send(struct actions_prepare *p)
{
    struct worker *w = p->w;
    struct arena scratch;
    arena_init(&scratch, 0);
    struct vss_action_reference *refs = xcalloc(p->count + 1, sizeof *refs);
    json_t *seen = json_object();
    size_t n = 0;
    for (size_t i = 0; i < p->count; i++) {
        const struct job_step *s = p->level[i]->step;
        const char *key = download_key(&scratch, s);
        if (json_object_get(w->download_infos, key) || json_object_get(seen, key))
            continue;
        json_object_set_new(seen, key, json_true());
        refs[n++] = (struct vss_action_reference){s->repository_name, s->repository_ref,
                                                  s->repository_path};
    }
    json_decref(seen);
    if (n == 0) {
        free(refs);
        arena_free(&scratch);
        level_fetch_next(p);
        return;
    }
    plog(p, "Getting action download info");
    p->attempt++;
    ensure_http(w);
    if (!w->job_conn) {
        w->job_conn = vss_conn_new(&w->loop, w->http, w->msg->connection_url);
        vss_conn_set_token(w->job_conn, w->msg->access_token);
    }
    struct vss_plan_ids ids = {w->msg->scope_identifier, w->msg->plan_type, w->msg->plan_id,
                               w->msg->job_id};
    struct error err = {0};
    p->call = vss_action_download_info_start(w->job_conn, &ids, refs, n, on_resolved, p, &err);
    free(refs);
    arena_free(&scratch);
    if (!p->call)
        prepare_finish(p, err.code ? err.code : -1, &err);
}

static void level_start(struct actions_prepare *p)
{
    p->next = 0;
    p->attempt = 0;
    if (from_service(p->w))
        resolve_send(p);
    else
        level_fetch_next(p);
}

/* Where a remote action's repository comes from: the service's answer (its tarball, keyed by
 * the commit it resolved, so that a moved tag is fetched again) or local mode's URL pattern
 * (keyed by the ref). */
struct source {
    char *owner, *repo, *version, *url, *authorization;
    char *shown; /* 'owner/repo@ref', with (SHA:…) in runner mode */
    json_t *info;
};

static void source_clear(struct source *src)
{
    free(src->owner);
    free(src->repo);
    free(src->version);
    free(src->url);
    free(src->authorization);
    free(src->shown);
}

/* As CreateAuthHeader: Basic x-access-token:<token> (masked too), or a bearer token for
 * codeload when the service asks for that with actions_use_bearer_token_for_codeload. */
static char *service_authorization(struct worker *w, const char *url, const char *token)
{
    const char *bearer =
        job_message_variable(w->msg, "actions_use_bearer_token_for_codeload", NULL);
    const char *host = strstr(url, "://") ? strstr(url, "://") + 3 : url;
    const char *path = host + strcspn(host, "/");
    if (bearer && str_eq_nocase(bearer, "true") &&
        (str_starts_with_nocase(host, "codeload.") || str_starts_with(path, "/_codeload/")))
        return xasprintf("Authorization: Bearer %s", token);
    cleanup_free char *pair = xasprintf("x-access-token:%s", token);
    cleanup_free char *encoded = codec_base64_encode(pair, strlen(pair));
    masker_add_secret(w->masker, encoded, strlen(encoded), false);
    return xasprintf("Authorization: Basic %s", encoded);
}

static int source_for(struct worker *w, const struct job_step *s, struct source *src,
                      struct error *err)
{
    *src = (struct source){0};
    const char *name = s->repository_name ? s->repository_name : "";
    const char *slash = strchr(name, '/');
    if (!slash || !s->repository_ref || !*s->repository_ref)
        return error_set(err, EINVAL, "Expected format {owner}/{repo}[/path]@ref. Actual '%s@%s'",
                         name, s->repository_ref ? s->repository_ref : "");
    src->owner = xstrndup(name, (size_t)(slash - name));
    src->repo = xstrdup(slash + 1);
    if (!from_service(w)) {
        src->version = xstrdup(s->repository_ref);
        src->url = action_tarball_url(w->opt->actions_url ? w->opt->actions_url
                                                          : ACTION_DEFAULT_TARBALL_URL,
                                      src->owner, src->repo, s->repository_ref);
        const char *token = json_get_string(json_get(w->contexts, "secrets"), "GITHUB_TOKEN");
        if (token && *token)
            src->authorization = xasprintf("Authorization: token %s", token);
        src->shown = xasprintf("'%s@%s'", name, s->repository_ref);
        return 0;
    }
    cleanup_free char *key = xasprintf("%s@%s", name, s->repository_ref);
    src->info = json_object_get(w->download_infos, key);
    if (!src->info)
        return error_set(err, ENOENT, "Missing download info for %s", key);
    src->version = xstrdup(json_get_string(src->info, "sha"));
    src->url = xstrdup(json_get_string(src->info, "tarball"));
    const char *token = json_get_string(src->info, "token");
    if (!token || !*token) /* absent: the job's own token, as GetDownloadInfoAsync does */
        token = json_get_string(json_get(w->contexts, "github"), "token");
    if (token && *token)
        src->authorization = service_authorization(w, src->url, token);
    src->shown = xasprintf("'%s@%s' (SHA:%s)", name, s->repository_ref, src->version);
    return 0;
}

/* An immutable action package is shown as GitHub shows it; a repository in one line. */
static void log_download(const struct actions_prepare *p, const struct source *src,
                         const struct job_step *s)
{
    const char *version = src->info ? json_get_string(src->info, "package_version") : NULL;
    if (!version) {
        cleanup_free char *m = xasprintf("Download action repository %s", src->shown);
        plog(p, m);
        return;
    }
    const char *digest = json_get_string(src->info, "package_digest");
    cleanup_free char *group = xasprintf("##[group]Download immutable action package '%s@%s'",
                                         s->repository_name, s->repository_ref);
    cleanup_free char *v = xasprintf("Version: %s", version);
    cleanup_free char *d = xasprintf("Digest: %s", digest ? digest : "");
    cleanup_free char *c = xasprintf("Source commit SHA: %s", src->version);
    const char *lines[] = {group, v, d, c, "##[endgroup]"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        plog(p, lines[i]);
}

/* As act: in local mode, checking out the repository being run is copying it. */
static bool checkout_copy_instead(const struct actions_prepare *p, struct resolved_action *r,
                                  const struct error *err)
{
    struct worker *w = p->w;
    const struct job_step *s = r->step;
    if (from_service(w) || !is_checkout(s) || !w->opt->checkout_dir || w->opt->no_checkout_copy)
        return false;
    cleanup_free char *m =
        xasprintf("%s@%s could not be fetched (%s): the step copies %s "
                  "instead (--no-checkout-copy turns this off)",
                  s->repository_name, s->repository_ref, err->message, w->opt->checkout_dir);
    plog(p, m);
    r->checkout_copy = true;
    return true;
}

static void set_root(struct resolved_action *r, const char *root)
{
    r->dir = path_join(root, r->step->repository_path);
    r->repository = xstrdup(r->step->repository_name);
    r->ref = xstrdup(r->step->repository_ref);
}

static void on_fetch_note(const char *line, void *user)
{
    struct actions_prepare *p = user;
    worker_log_warning(p->w, p->log_to, line);
}

static void level_load(struct actions_prepare *p);

static void on_fetched(int rc, const struct error *err, const char *dir, bool downloaded,
                       void *user)
{
    struct actions_prepare *p = user;
    struct worker *w = p->w;
    p->fetch = NULL;
    if (p->cancelled) {
        prepare_finish(p, -ECANCELED, NULL);
        return;
    }
    struct resolved_action *r = p->level[p->next];
    if (rc < 0) {
        if (!checkout_copy_instead(p, r, err)) {
            struct error e = *err;
            cleanup_free char *uses =
                xasprintf("%s@%s", r->step->repository_name, r->step->repository_ref);
            if (!strstr(e.message, uses))
                error_prefix(&e, "%s", uses);
            prepare_finish(p, e.code ? e.code : -1, &e);
            return;
        }
    } else {
        json_object_set_new(w->action_roots, dir, json_true());
        set_root(r, dir);
        (void)downloaded;
    }
    p->next++;
    level_fetch_next(p);
}

static void level_fetch_next(struct actions_prepare *p)
{
    struct worker *w = p->w;
    for (; p->next < p->count; p->next++) {
        struct resolved_action *r = p->level[p->next];
        struct source src;
        struct error err = {0};
        if (source_for(w, r->step, &src, &err) < 0) {
            source_clear(&src);
            prepare_finish(p, err.code, &err);
            return;
        }
        cleanup_free char *root =
            action_cache_dir(w->actions_cache, src.owner, src.repo, src.version, &err);
        struct stat st;
        bool cached = root && stat(root, &st) == 0 && S_ISDIR(st.st_mode);
        if (root && cached) {
            /* Once per job and repository: a cache hit says where it came from. */
            if (!json_object_get(w->action_roots, root)) {
                json_object_set_new(w->action_roots, root, json_true());
                cleanup_free char *m =
                    xasprintf("Action repository %s is in the action cache", src.shown);
                plog(p, m);
            }
            set_root(r, root);
            source_clear(&src);
            continue;
        }
        if (root && w->opt->offline) {
            error_set(&err, ENOENT,
                      "%s@%s is not in the action cache (%s) and --offline forbids "
                      "downloading it; run once without --offline to fetch it",
                      r->step->repository_name, r->step->repository_ref, w->actions_cache);
        }
        if (!root || err.message[0]) {
            source_clear(&src);
            if (checkout_copy_instead(p, r, &err))
                continue;
            prepare_finish(p, err.code, &err);
            return;
        }
        log_download(p, &src, r->step);
        unsigned lo, hi;
        backoff_range(w, &lo, &hi);
        /* The official runner's pre-seeded archives: <dir>/<owner>_<repo>/<resolved sha>.tar.gz
         * (the runner images ship actions/action-versions there). */
        const char *archives = getenv("ACTIONS_RUNNER_ACTION_ARCHIVE_CACHE");
        cleanup_free char *archive =
            archives && *archives && from_service(w)
                ? xasprintf("%s/%s_%s/%s.tar.gz", archives, src.owner, src.repo, src.version)
                : NULL;
        struct action_fetch_options fo = {
            .cache_dir = w->actions_cache,
            .owner = src.owner,
            .repo = src.repo,
            .version = src.version,
            .url = src.url,
            .authorization = src.authorization,
            .archive = archive,
            .attempts = DOWNLOAD_ATTEMPTS,
            .backoff_min_ms = lo,
            .backoff_max_ms = hi,
            .on_note = on_fetch_note,
            .on_done = on_fetched,
            .user = p,
        };
        ensure_http(w);
        p->fetch = action_fetch_start(&w->loop, w->http, &fo, &err);
        source_clear(&src);
        if (!p->fetch)
            prepare_finish(p, err.code, &err);
        return;
    }
    level_load(p);
}

/* Adds the repository actions inside composite r that no step has resolved yet to *list,
 * as actions to prepare. */
static void unprepared_add(struct worker *w, struct resolved_action *r,
                           struct resolved_action ***list, size_t *count)
{
    for (size_t i = 0; i < r->step_count; i++) {
        const struct job_step *s = &r->steps[i];
        if (!is_remote(s) || resolved_find(w, s))
            continue;
        *list = xrealloc(*list, (*count + 1) * sizeof **list);
        (*list)[(*count)++] = resolved_new(w, s, r);
    }
}

/* Reads each action of the level; the remote actions inside its composites are the next
 * level. */
static void level_load(struct actions_prepare *p)
{
    struct worker *w = p->w;
    struct resolved_action **next = NULL;
    size_t count = 0;
    for (size_t i = 0; i < p->count; i++) {
        struct resolved_action *r = p->level[i];
        if (r->checkout_copy)
            continue;
        struct error err = {0};
        if (action_load(r->dir, &r->action, &err) < 0 ||
            (r->action->kind == ACTION_COMPOSITE && composite_steps(r, &err) < 0)) {
            free(next);
            prepare_finish(p, err.code, &err);
            return;
        }
        unprepared_add(w, r, &next, &count);
    }
    if (!count) {
        prepare_finish(p, 0, NULL);
        return;
    }
    if (p->depth + 1 > COMPOSITE_MAX_DEPTH) {
        free(next);
        prepare_fail(p, ELOOP, "Composite action depth exceeded max depth %d", COMPOSITE_MAX_DEPTH);
        return;
    }
    free(p->level);
    p->level = next;
    p->count = count;
    p->depth++;
    level_start(p);
}

/* Starts from the loop, so that done never runs inside this call. */
static void prepare_start(struct worker *w, struct resolved_action **level, size_t count, int depth,
                          const struct running_step *log_to, prepare_done_fn *done, void *user)
{
    if (!w->download_infos) {
        w->download_infos = json_object();
        w->action_roots = json_object();
    }
    struct actions_prepare *p = xcalloc(1, sizeof *p);
    p->w = w;
    p->level = level;
    p->count = count;
    p->depth = depth;
    p->log_to = log_to;
    p->done = done;
    p->user = user;
    w->prepare = p;
    prepare_wait(p, 0);
}

void worker_actions_cancel(struct worker *w)
{
    struct actions_prepare *p = w->prepare;
    if (!p || p->cancelled)
        return;
    p->cancelled = true;
    if (p->call)
        vss_action_download_info_cancel(p->call);
    else if (p->fetch)
        action_fetch_cancel(p->fetch);
    else if (p->waiting)
        uv_timer_start(&w->actions_timer, on_actions_timer, 0, 0);
}

void worker_actions_close(struct worker *w)
{
    if (w->http) {
        http_client_free(w->http);
        w->http = NULL;
    }
    vss_conn_free(w->job_conn);
    w->job_conn = NULL;
    if (w->actions_timer_open) {
        w->actions_timer_open = false;
        uv_close((uv_handle_t *)&w->actions_timer, NULL);
    }
    json_decref(w->download_infos);
    json_decref(w->action_roots);
    w->download_infos = w->action_roots = NULL;
}

/* --- the job's set-up -------------------------------------------------------------------- */

struct setup_continuation {
    worker_actions_ready_fn *done;
};

static void on_setup_prepared(struct worker *w, int rc, const struct error *err, void *user)
{
    struct setup_continuation *c = user;
    worker_actions_ready_fn *done = c->done;
    free(c);
    if (rc == 0) {
        /* Pre steps, in the job's order, for the actions that have one (PreStepTracker). */
        struct post_step **tail = &w->pre_steps;
        for (size_t i = 0; i < w->msg->step_count; i++) {
            const struct job_step *s = &w->msg->steps[i];
            struct resolved_action *r = is_remote(s) ? resolved_find(w, s) : NULL;
            if (!has_pre(w, r))
                continue;
            struct post_step *pre = xcalloc(1, sizeof *pre);
            pre->step = s;
            pre->resolved = r;
            pre->frame = w->frame;
            *tail = pre;
            tail = &pre->next;
        }
    }
    done(w, rc, err);
}

void worker_prepare_actions(struct worker *w, worker_actions_ready_fn *done)
{
    w->actions_cache = w->opt->actions_cache ? xstrdup(w->opt->actions_cache)
                                             : path_join(w->opt->work_root, "_actions");
    struct resolved_action **level = NULL;
    size_t count = 0;
    for (size_t i = 0; i < w->msg->step_count; i++) {
        const struct job_step *s = &w->msg->steps[i];
        if (!is_remote(s))
            continue;
        level = xrealloc(level, (count + 1) * sizeof *level);
        level[count++] = resolved_new(w, s, NULL);
    }
    if (!count) {
        done(w, 0, NULL);
        return;
    }
    worker_log_line(w, NULL, "Prepare all required actions");
    struct setup_continuation *c = xmalloc(sizeof *c);
    c->done = done;
    prepare_start(w, level, count, 0, NULL, on_setup_prepared, c);
}

/* --- uses: steps ------------------------------------------------------------------------- */

/* Finds what a uses: step runs (once per step): repository actions were prepared before,
 * local ones are read now (the workspace holds them only after a checkout). */
int worker_resolve_step(struct worker *w, const struct job_step *s, struct resolved_action **out,
                        struct error *err)
{
    struct resolved_action *found = resolved_find(w, s);
    if (found) {
        *out = found;
        return 0;
    }
    if (s->kind == JOB_STEP_CONTAINER)
        return error_set(err, ENOTSUP,
                         "'docker://%s' is a container action: harrier cannot run container "
                         "actions yet (it has no OCI image runtime); use a run: step, or a "
                         "JavaScript or composite action",
                         s->image);
    struct resolved_action *r = resolved_new(w, s, w->frame->resolved);
    *out = r;
    if (!is_local(s))
        return error_set(err, ENOENT, "Missing download info for %s@%s",
                         s->repository_name ? s->repository_name : "",
                         s->repository_ref ? s->repository_ref : "");
    cleanup_free char *joined = path_join(w->workspace, s->repository_path);
    r->dir = path_normalize(joined);
    r->repository = xstrdup("");
    r->ref = xstrdup("");
    int rc = action_load(r->dir, &r->action, err);
    if (rc == 0 && r->action->kind == ACTION_COMPOSITE)
        rc = composite_steps(r, err);
    return rc;
}

void worker_resolved_action_free(struct resolved_action *r)
{
    action_free(r->action);
    free(r->dir);
    free(r->repository);
    free(r->ref);
    json_decref(r->state);
    json_decref(r->steps_scope);
    arena_free(&r->arena);
    free(r);
}

const char *worker_stage_condition(struct worker *w, struct frame *f, const struct job_step *s)
{
    if (f->stage == EVENTS_STAGE_POST) {
        /* CompositeActionHandler runs only the post steps registered (their action's pre or
         * main step ran), each under the condition it was registered with: its post-if
         * (CleanupCondition), always() for a composite. */
        struct resolved_action *r = s->kind == JOB_STEP_SCRIPT ? NULL : resolved_find(w, s);
        if (!r || !r->post_registered)
            return NULL;
        return action_steps_condition(&f->arena, r->action->post_if, "always()");
    }
    struct resolved_action *r = is_remote(s) ? resolved_find(w, s) : NULL;
    if (!has_pre(w, r))
        return NULL;
    /* The composite's pre stage runs each of them under its own pre-if (InitCondition). */
    const struct token *t = r->action->kind == ACTION_NODE ? r->action->pre_if : NULL;
    return action_steps_condition(&f->arena, t, "always()");
}

bool worker_frame_timed_out(const struct frame *f)
{
    for (; f; f = f->parent)
        if (f->timed_out)
            return true;
    return false;
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

/* The composite step's timeout-minutes bounds all its steps (the official runner gives each
 * inner step what is left of it): the running one is cancelled ("The action has timed out."),
 * the rest do not start, and the composite step fails with the usual timeout message. */
static void on_composite_timeout(uv_timer_t *t)
{
    struct frame *f = t->data;
    struct worker *w = f->owner->w;
    f->timed_out = true;
    struct running_step *current = w->current;
    if (!current)
        return;
    current->timed_out_by_composite = true;
    if (current->handle)
        sandbox_step_cancel(current->handle);
    else
        worker_actions_cancel(w); /* a composite inside, waiting for its actions */
}

/* Pushes the composite's steps as a new frame (its pre steps' frame in the pre stage); they
 * run next, then end_composite. */
static int start_composite(struct running_step *rs, const struct template_context *tc,
                           struct error *err)
{
    struct worker *w = rs->w;
    struct frame *f = xcalloc(1, sizeof *f);
    arena_init(&f->arena, 0);
    f->parent = rs->frame;
    f->owner = rs;
    f->resolved = rs->resolved;
    f->stage = rs->stage;
    /* Its post steps see the steps context its main steps built (the official runner gives
     * them the main stage's scope); its pre steps, and the main steps at first, an empty one. */
    struct resolved_action *r = rs->resolved;
    f->steps_context = f->stage == EVENTS_STAGE_POST && r->steps_scope ? json_incref(r->steps_scope)
                                                                       : json_object();
    if (f->stage == EVENTS_STAGE_MAIN && !r->steps_scope)
        r->steps_scope = json_incref(f->steps_context);
    f->inputs_context = json_deep_copy(rs->input_values);
    f->env_overlay = json_deep_copy(rs->frame->env_overlay);
    json_t *step_env = template_evaluate_string_map(rs->step->environment, tc, err);
    if (!step_env) {
        worker_frame_free(f);
        return err->code;
    }
    json_object_update(f->env_overlay, step_env);
    json_decref(step_env);
    f->steps = rs->resolved->steps;
    f->count = rs->resolved->step_count;
    f->next_all = w->frames;
    w->frames = f;
    w->frame = f;
    if (rs->timeout_minutes > 0) {
        uv_timer_init(&w->loop, &f->timer);
        f->timer.data = f;
        f->timer_open = true;
        uv_timer_start(&f->timer, on_composite_timeout, (uint64_t)(rs->timeout_minutes * 60000.0),
                       0);
    }
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
    if (f->timer_open) {
        f->timer_open = false;
        uv_close((uv_handle_t *)&f->timer, NULL); /* the frame outlives the loop */
    }
    worker_enter_frame(w, f);
    struct expr_context ec;
    struct template_context tc;
    worker_template_context(w, &ec, &tc);
    tc.file_table = a->file_table;
    tc.file_count = a->file_count;
    for (size_t i = 0; f->stage == EVENTS_STAGE_MAIN && i < a->output_count; i++) {
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
    if (f->timed_out) {
        cleanup_free char *m = xasprintf("The action '%s' has timed out after %g minutes.",
                                         rs->display_name, rs->timeout_minutes);
        struct error err = {0};
        error_set(&err, ETIMEDOUT, "%s", m);
        worker_report_error(w, rs, &err);
        f->failed = true;
    }
    enum events_result outcome = f->failed ? EVENTS_FAILURE : EVENTS_SUCCESS;
    if (w->cancel_requested && f->failed)
        outcome = EVENTS_CANCELLED;
    worker_finish_step(rs, outcome);
    worker_running_step_free(rs);
}

/* As ActionRunner: an action with a post step registers it when its pre or main step starts,
 * once (before it runs, so a step that then fails still has its post step). A step of the job
 * gets a post step of its own, "Post <name>", on the job's stack (RegisterPostJobStep); an
 * action inside a composite is only marked (EmbeddedStepsWithPostRegistered): the post step of
 * the composite around it runs it, so a composite's inner post steps, at any depth, run inside
 * the one post step of the job's composite step. */
static void register_post(struct worker *w, struct running_step *rs)
{
    struct resolved_action *r = rs->resolved;
    if (rs->stage == EVENTS_STAGE_POST || r->post_registered || !has_post(w, r))
        return;
    r->post_registered = true;
    if (rs->inner)
        return;
    /* Registered by the pre step: "Post <name>", not "Post Pre <name>". */
    const char *name = rs->display_name;
    if (rs->stage == EVENTS_STAGE_PRE && str_starts_with_nocase(name, "Pre "))
        name += strlen("Pre ");
    struct post_step *p = xcalloc(1, sizeof *p);
    p->step = rs->step;
    p->resolved = r;
    p->frame = rs->frame;
    p->display_name = xasprintf("Post %s", name);
    p->next = w->post_steps;
    w->post_steps = p;
}

/* As ActionRunner: a local action cannot have its pre step run (it is read when its step
 * starts, after the job's pre steps). */
static void warn_local_pre(struct running_step *rs)
{
    struct resolved_action *r = rs->resolved;
    if (rs->stage != EVENTS_STAGE_MAIN || !is_local(rs->step) || !has_pre(rs->w, r))
        return;
    cleanup_free char *m = xasprintf("`pre` execution is not supported for local action from '%s'",
                                     rs->step->repository_path);
    worker_log_warning(rs->w, rs, m);
}

/* A composite whose repository actions were being downloaded (a local composite, read when
 * its step started, as the official runner prepares it then) goes on, or fails. */
static void on_composite_prepared(struct worker *w, int rc, const struct error *err, void *user)
{
    struct running_step *rs = user;
    w->current = NULL;
    struct error e = {0};
    if (rc == 0) {
        struct expr_context ec;
        struct template_context tc;
        worker_template_context(w, &ec, &tc);
        register_post(w, rs); /* the actions inside it are known now (ActionRunner reloads it) */
        warn_local_pre(rs);
        rc = start_composite(rs, &tc, &e);
        err = &e;
    }
    if (rc == 0) {
        worker_advance(w);
        return;
    }
    enum events_result outcome = EVENTS_FAILURE;
    if (rs->timed_out_by_composite) {
        worker_log_line(w, rs, "##[error]The action has timed out.");
    } else if (rc == -ECANCELED && w->cancel_requested) {
        worker_log_line(w, rs, "##[error]The operation was canceled.");
        outcome = EVENTS_CANCELLED;
    } else {
        worker_report_error(w, rs, err);
    }
    worker_finish_step(rs, outcome);
    worker_running_step_free(rs);
    worker_advance(w);
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
    register_post(w, rs);
    rs->input_values = action_input_values(rs, with, tc, err);
    if (!rs->input_values)
        return err->code;
    /* As the official Handler.PrintActionDetails: a post step says only this. */
    if (rs->stage == EVENTS_STAGE_MAIN)
        log_action_header(rs);
    else if (rs->stage == EVENTS_STAGE_POST)
        worker_log_line(w, rs, "Post job cleanup.");
    if (a->kind == ACTION_COMPOSITE) {
        size_t count = 0;
        struct resolved_action **inside = NULL;
        unprepared_add(w, r, &inside, &count); /* those inside a local composite */
        if (count) {
            int depth = resolved_depth(r) + 1;
            if (depth > COMPOSITE_MAX_DEPTH) {
                free(inside);
                return error_set(err, ELOOP, "Composite action depth exceeded max depth %d",
                                 COMPOSITE_MAX_DEPTH);
            }
            worker_log_line(w, rs, "Prepare all required actions");
            prepare_start(w, inside, count, depth, rs, on_composite_prepared, rs);
            if (worker_frame_timed_out(rs->frame)) {
                /* The composite around it is out of time: the download is cancelled at once. */
                rs->timed_out_by_composite = true;
                worker_actions_cancel(w);
            }
            *started = STEP_WAITING;
            return 0;
        }
        warn_local_pre(rs);
        if (start_composite(rs, tc, err) < 0)
            return err->code;
        *started = STEP_ENTERED;
        return 0;
    }
    warn_local_pre(rs);
    if (spawn_node(rs, err) < 0)
        return err->code;
    *started = STEP_RUNNING;
    return 0;
}
