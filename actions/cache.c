/* The action cache: _actions/owner/repo/ref, filled from tarballs. */
#include "actions/action.h"

#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/http.h"
#include "lib/path.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The entry's name with the top folder dropped (GitHub's tarballs hold one folder,
 * owner-repo-sha/); NULL for the top folder itself. Refuses absolute names and `..`. */
static int entry_relative_name(const char *name, const char **out, struct error *err)
{
    if (name[0] == '/')
        return error_set(err, EPERM, "the archive entry '%s' has an absolute path", name);
    const char *slash = strchr(name, '/');
    *out = slash && slash[1] ? slash + 1 : NULL;
    for (const char *p = name; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return error_set(err, EPERM, "the archive entry '%s' points outside the action", name);
        p += n;
        while (*p == '/')
            p++;
    }
    return 0;
}

/* A symbolic link must resolve inside dir, judged from where it sits. */
static bool link_stays_inside(const char *dir, const char *entry_path, const char *target)
{
    if (target[0] == '/')
        return false;
    cleanup_free char *parent = xstrdup(entry_path);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = '\0';
    cleanup_free char *joined = path_join(parent, target);
    return path_is_inside(dir, joined);
}

static int extract_entry(struct archive *in, struct archive *out, struct archive_entry *entry,
                         const char *dir, struct error *err)
{
    const char *rel;
    if (entry_relative_name(archive_entry_pathname(entry), &rel, err) < 0)
        return err->code;
    if (!rel)
        return 0;
    cleanup_free char *target = path_join(dir, rel);
    if (!path_is_inside(dir, target))
        return error_set(err, EPERM, "the archive entry '%s' points outside the action",
                         archive_entry_pathname(entry));
    const char *link = archive_entry_symlink(entry);
    if (link && !link_stays_inside(dir, target, link))
        return error_set(err, EPERM, "the archive's link '%s' -> '%s' points outside the action",
                         archive_entry_pathname(entry), link);
    const char *hard = archive_entry_hardlink(entry);
    if (hard) {
        const char *hard_rel;
        if (entry_relative_name(hard, &hard_rel, err) < 0)
            return err->code;
        cleanup_free char *hard_target = path_join(dir, hard_rel ? hard_rel : "");
        archive_entry_set_hardlink(entry, hard_target);
    }
    archive_entry_set_pathname(entry, target);
    if (archive_write_header(out, entry) != ARCHIVE_OK)
        return error_set(err, EIO, "cannot extract '%s': %s", rel, archive_error_string(out));
    const void *block;
    size_t size;
    la_int64_t offset;
    int r;
    while ((r = archive_read_data_block(in, &block, &size, &offset)) == ARCHIVE_OK)
        if (archive_write_data_block(out, block, size, offset) != ARCHIVE_OK)
            return error_set(err, EIO, "cannot write '%s': %s", rel, archive_error_string(out));
    if (r != ARCHIVE_EOF)
        return error_set(err, EIO, "the archive is damaged at '%s': %s", rel,
                         archive_error_string(in));
    if (archive_write_finish_entry(out) != ARCHIVE_OK)
        return error_set(err, EIO, "cannot finish '%s': %s", rel, archive_error_string(out));
    return 0;
}

int action_archive_extract(const void *data, size_t len, const char *dir, struct error *err)
{
    if (path_mkdir_all(dir, 0755, err) < 0)
        return err->code;
    struct archive *in = archive_read_new();
    archive_read_support_filter_all(in);
    archive_read_support_format_all(in);
    struct archive *out = archive_write_disk_new();
    /* Belt and braces: libarchive's own checks refuse the same escapes. */
    archive_write_disk_set_options(out, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                            ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                            ARCHIVE_EXTRACT_SECURE_SYMLINKS);
    int rc = 0;
    if (archive_read_open_memory(in, data, len) != ARCHIVE_OK) {
        rc = error_set(err, EINVAL, "the action's archive cannot be read: %s",
                       archive_error_string(in));
    } else {
        struct archive_entry *entry;
        int r;
        size_t count = 0;
        while (rc == 0 && (r = archive_read_next_header(in, &entry)) == ARCHIVE_OK) {
            rc = extract_entry(in, out, entry, dir, err);
            count++;
        }
        if (rc == 0 && r != ARCHIVE_EOF)
            rc = error_set(err, EINVAL, "the action's archive is damaged: %s",
                           archive_error_string(in));
        else if (rc == 0 && count == 0)
            rc = error_set(err, EINVAL, "the action's archive is empty");
    }
    archive_write_close(out);
    archive_write_free(out);
    archive_read_free(in);
    return rc;
}

char *action_tarball_url(const char *pattern, const char *owner, const char *repo, const char *ref)
{
    struct buf b = BUF_INIT;
    const char *names[] = {"{owner}", "{repo}", "{ref}"};
    const char *values[] = {owner, repo, ref};
    for (const char *p = pattern; *p;) {
        bool replaced = false;
        for (int i = 0; i < 3 && !replaced; i++) {
            size_t n = strlen(names[i]);
            if (strncmp(p, names[i], n) == 0) {
                buf_puts(&b, values[i]);
                p += n;
                replaced = true;
            }
        }
        if (!replaced)
            buf_putc(&b, *p++);
    }
    return buf_steal(&b);
}

char *action_cache_dir(const char *cache_dir, const char *owner, const char *repo,
                       const char *version, struct error *err)
{
    cleanup_free char *rel = xasprintf("%s/%s/%s", owner, repo, version);
    return path_join_inside(cache_dir, rel, err);
}

/* --- fetching ------------------------------------------------------------------------------ */

struct action_fetch {
    uv_loop_t *loop;
    struct http_client *http;
    char *owner, *repo, *version, *url, *authorization, *archive;
    struct action_fetch_options o; /* its strings point at the copies above */
    char *dir, *tmp;
    int attempt;
    struct http_request *req;
    uv_timer_t timer; /* the wait between tries; closed at the end, then the fetch is freed */
    uv_work_t work;   /* the extraction, off the loop */
    bool working, cancelled, finished;
    struct buf body;
    struct error work_error;
    int work_rc;
};

static void fetch_attempt(struct action_fetch *f);

static void on_fetch_closed(uv_handle_t *h)
{
    struct action_fetch *f = h->data;
    buf_free(&f->body);
    free(f->owner);
    free(f->repo);
    free(f->version);
    free(f->url);
    free(f->authorization);
    free(f->archive);
    free(f->dir);
    free(f->tmp);
    free(f);
}

static void fetch_finish(struct action_fetch *f, int rc, const struct error *err, bool downloaded)
{
    f->finished = true;
    if (f->tmp) {
        struct error ignored = {0};
        path_remove_all(f->tmp, &ignored);
    }
    f->o.on_done(rc, err, rc == 0 ? f->dir : NULL, downloaded, f->o.user);
    uv_close((uv_handle_t *)&f->timer, on_fetch_closed);
}

static void fetch_cancelled(struct action_fetch *f)
{
    struct error e = {0};
    error_set(&e, ECANCELED, "the download of %s/%s@%s was cancelled", f->owner, f->repo,
              f->version);
    fetch_finish(f, e.code, &e, false);
}

static void note(struct action_fetch *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(struct action_fetch *f, const char *fmt, ...)
{
    if (!f->o.on_note)
        return;
    va_list ap;
    va_start(ap, fmt);
    cleanup_free char *line = xvasprintf(fmt, ap);
    va_end(ap);
    f->o.on_note(line, f->o.user);
}

static void on_backoff_done(uv_timer_t *t)
{
    struct action_fetch *f = t->data;
    if (f->cancelled)
        fetch_cancelled(f);
    else
        fetch_attempt(f);
}

/* As the official runner's DownloadRepositoryArchive: a warning for the failed try, then a
 * random wait, then the next; after the last, one error naming the archive and the tries. */
static void fetch_try_again(struct action_fetch *f, const char *why)
{
    int attempts = f->o.attempts > 0 ? f->o.attempts : 1;
    if (f->attempt >= attempts) {
        struct error e = {0};
        error_set(&e, EIO, "Failed to download archive '%s' after %d attempts: %s", f->url,
                  f->attempt, why);
        fetch_finish(f, e.code, &e, false);
        return;
    }
    note(f, "Failed to download action '%s'. Error: %s", f->url, why);
    uint64_t wait = f->o.backoff_min_ms;
    if (f->o.backoff_max_ms > f->o.backoff_min_ms)
        wait += (uint64_t)random() % (f->o.backoff_max_ms - f->o.backoff_min_ms + 1);
    if (wait)
        note(f, "Back off %.3f seconds before retry.", (double)wait / 1000.0);
    uv_timer_start(&f->timer, on_backoff_done, wait, 0);
}

static void extract_done(uv_work_t *req, int status);

static void extract_work(uv_work_t *req)
{
    struct action_fetch *f = req->data;
    if (f->archive && !f->body.len) {
        size_t len = 0;
        char *data = path_read_file(f->archive, &len, &f->work_error);
        if (!data) {
            f->work_rc = f->work_error.code ? f->work_error.code : -1;
            return;
        }
        buf_append(&f->body, data, len);
        free(data);
    }
    f->work_rc = action_archive_extract(f->body.data, f->body.len, f->tmp, &f->work_error);
}

static void extract_start(struct action_fetch *f)
{
    cleanup_free char *guid = codec_uuid4();
    f->tmp = xasprintf("%s.tmp-%s", f->dir, guid);
    f->work.data = f;
    f->working = true;
    uv_queue_work(f->loop, &f->work, extract_work, extract_done);
}

static void extract_done(uv_work_t *req, int status)
{
    struct action_fetch *f = req->data;
    f->working = false;
    buf_free(&f->body);
    if (f->cancelled || status == UV_ECANCELED) {
        fetch_cancelled(f);
        return;
    }
    if (f->work_rc < 0) {
        struct error e = f->work_error;
        error_prefix(&e, "%s/%s@%s", f->owner, f->repo, f->version);
        fetch_finish(f, e.code, &e, false);
        return;
    }
    bool downloaded = true;
    if (rename(f->tmp, f->dir) < 0) {
        /* Another job put it there first: theirs is as good as ours. */
        if (errno != EEXIST && errno != ENOTEMPTY) {
            struct error e = {0};
            error_set_errno(&e, errno, "cannot move the action into %s", f->dir);
            fetch_finish(f, e.code, &e, false);
            return;
        }
        downloaded = false;
    }
    fetch_finish(f, 0, NULL, downloaded);
}

static void on_tarball(struct http_response *resp, const struct error *err, void *user)
{
    struct action_fetch *f = user;
    f->req = NULL;
    if (f->cancelled) {
        fetch_cancelled(f);
        return;
    }
    if (err) {
        fetch_try_again(f, err->message);
        return;
    }
    /* 404 and 403 cannot get better by asking again (ActionManager: ActionNotFoundException,
     * AccessDeniedException). */
    if (resp->status == 404 || resp->status == 403) {
        struct error e = {0};
        if (resp->status == 404)
            error_set(&e, ENOENT, "An action could not be found at the URI '%s' (HTTP 404)",
                      f->url);
        else
            error_set(&e, EACCES, "Access denied to '%s' (HTTP 403)", f->url);
        fetch_finish(f, e.code, &e, false);
        return;
    }
    if (resp->status < 200 || resp->status > 299) {
        cleanup_free char *why =
            xasprintf("Response status code does not indicate success: %ld.", resp->status);
        fetch_try_again(f, why);
        return;
    }
    f->body = resp->body;
    resp->body = (struct buf)BUF_INIT;
    extract_start(f);
}

static void fetch_attempt(struct action_fetch *f)
{
    f->attempt++;
    /* A pre-seeded archive (ACTIONS_RUNNER_ACTION_ARCHIVE_CACHE) is used instead of the
     * download, as the official ActionManager does; a miss falls through to the download. */
    if (f->archive && f->attempt == 1 && access(f->archive, R_OK) == 0) {
        note(f, "Found action archive '%s' in the archive cache", f->archive);
        extract_start(f);
        return;
    }
    const char *headers[] = {"User-Agent: GitHubActionsRunner-harrier", f->authorization, NULL};
    struct http_request_options ho = {
        .url = f->url,
        .headers = headers,
        .timeout_ms = f->o.timeout_ms ? f->o.timeout_ms : 20 * 60 * 1000,
        .on_done = on_tarball,
        .user = f,
    };
    struct error err = {0};
    f->req = http_request_start(f->http, &ho, &err);
    if (!f->req)
        fetch_finish(f, err.code ? err.code : -1, &err, false);
}

struct action_fetch *action_fetch_start(uv_loop_t *loop, struct http_client *http,
                                        const struct action_fetch_options *options,
                                        struct error *err)
{
    char *dir =
        action_cache_dir(options->cache_dir, options->owner, options->repo, options->version, err);
    if (!dir)
        return NULL;
    if (!options->url || !options->on_done) {
        free(dir);
        error_set(err, EINVAL, "a fetch needs a URL and on_done");
        return NULL;
    }
    struct action_fetch *f = xcalloc(1, sizeof *f);
    f->loop = loop;
    f->http = http;
    f->o = *options;
    f->owner = xstrdup(options->owner);
    f->repo = xstrdup(options->repo);
    f->version = xstrdup(options->version);
    f->url = xstrdup(options->url);
    f->authorization = options->authorization ? xstrdup(options->authorization) : NULL;
    f->archive = options->archive ? xstrdup(options->archive) : NULL;
    f->o.owner = f->owner;
    f->o.repo = f->repo;
    f->o.version = f->version;
    f->o.url = f->url;
    f->o.authorization = f->authorization;
    f->o.archive = f->archive;
    f->o.cache_dir = NULL; /* not kept */
    f->dir = dir;
    f->body = (struct buf)BUF_INIT;
    uv_timer_init(loop, &f->timer);
    f->timer.data = f;
    /* The first try starts from the loop, so that on_done never runs inside this call. */
    uv_timer_start(&f->timer, on_backoff_done, 0, 0);
    return f;
}

void action_fetch_cancel(struct action_fetch *f)
{
    if (f->finished || f->cancelled)
        return;
    f->cancelled = true;
    if (f->req)
        http_request_cancel(f->req);
    else if (f->working)
        uv_cancel((uv_req_t *)&f->work);
    else
        uv_timer_start(&f->timer, on_backoff_done, 0, 0);
}
