#include "runner/gitinfo.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <errno.h>
#include <git2.h>
#include <stdlib.h>
#include <string.h>

static int git_failure(struct error *err, const char *what)
{
    const git_error *e = git_error_last();
    return error_set(err, EINVAL, "%s: %s", what, e && e->message ? e->message : "unknown error");
}

int gitinfo_parse_remote(const char *url, char **server_url, char **repository)
{
    const char *host_start, *path;
    cleanup_free char *host = NULL;
    if (str_starts_with(url, "https://") || str_starts_with(url, "http://") ||
        str_starts_with(url, "ssh://") || str_starts_with(url, "git://")) {
        host_start = strstr(url, "://") + 3;
        const char *at = strchr(host_start, '@'), *slash = strchr(host_start, '/');
        if (!slash)
            return -1;
        if (at && at < slash)
            host_start = at + 1;
        host = xstrndup(host_start, (size_t)(slash - host_start));
        char *colon = strchr(host, ':'); /* ssh://git@host:22/o/r: the port is not the site's */
        if (colon && !str_starts_with(url, "http"))
            *colon = '\0';
        path = slash + 1;
    } else {
        /* scp-like: [user@]host:owner/name.git */
        const char *colon = strchr(url, ':');
        if (!colon)
            return -1;
        const char *at = memchr(url, '@', (size_t)(colon - url));
        host_start = at ? at + 1 : url;
        host = xstrndup(host_start, (size_t)(colon - host_start));
        path = colon + 1;
    }
    cleanup_free char *repo = xstrdup(path);
    size_t n = strlen(repo);
    while (n && repo[n - 1] == '/')
        repo[--n] = '\0';
    if (str_ends_with(repo, ".git"))
        repo[n - 4] = '\0';
    if (!*host || !strchr(repo, '/') || repo[0] == '/')
        return -1;
    *server_url = xasprintf("%s://%s", str_starts_with(url, "http://") ? "http" : "https", host);
    *repository = steal_pointer(&repo);
    return 0;
}

static void read_ref(git_repository *repo, const git_oid *head_oid, struct gitinfo *out)
{
    git_reference *head = NULL;
    if (git_repository_head(&head, repo) == 0 && git_reference_is_branch(head)) {
        out->ref = xstrdup(git_reference_name(head));
        out->ref_name = xstrdup(out->ref + strlen("refs/heads/"));
        out->ref_type = xstrdup("branch");
        git_reference_free(head);
        return;
    }
    git_reference_free(head);
    /* Detached: a tag pointing at HEAD names the ref, as a tag push would. */
    git_strarray tags = {0};
    if (git_tag_list(&tags, repo) == 0) {
        for (size_t i = 0; i < tags.count && !out->ref; i++) {
            cleanup_free char *name = xasprintf("refs/tags/%s", tags.strings[i]);
            git_object *obj = NULL;
            if (git_revparse_single(&obj, repo, name) == 0) {
                git_object *commit = NULL;
                if (git_object_peel(&commit, obj, GIT_OBJECT_COMMIT) == 0 &&
                    git_oid_equal(git_object_id(commit), head_oid)) {
                    out->ref = steal_pointer(&name);
                    out->ref_name = xstrdup(tags.strings[i]);
                    out->ref_type = xstrdup("tag");
                }
                git_object_free(commit);
            }
            git_object_free(obj);
        }
        git_strarray_dispose(&tags);
    }
    if (!out->ref) {
        out->ref = xstrdup("");
        out->ref_name = xstrdup("");
        out->ref_type = xstrdup("branch");
    }
}

/* remote.origin.url, read from the configuration directly: git_remote_lookup in Debian's
 * libgit2 1.5 leaks the PCRE match data of its insteadOf scan on every call. */
static char *origin_url(git_repository *repo)
{
    git_config *config = NULL;
    const char *url = NULL;
    char *copy = NULL;
    if (repo && git_repository_config_snapshot(&config, repo) == 0 &&
        git_config_get_string(&url, config, "remote.origin.url") == 0 && url)
        copy = xstrdup(url);
    git_config_free(config);
    return copy;
}

static void read_remote(git_repository *repo, struct gitinfo *out)
{
    cleanup_free char *url = origin_url(repo);
    if (!url || gitinfo_parse_remote(url, &out->server_url, &out->repository) < 0) {
        cleanup_free char *top = xstrdup(out->workdir);
        size_t n = strlen(top);
        while (n > 1 && top[n - 1] == '/')
            top[--n] = '\0';
        const char *base = strrchr(top, '/');
        out->repository = xasprintf("local/%s", base ? base + 1 : top);
        out->server_url = xstrdup("https://github.com");
    }
    out->repository_owner = xstrndup(out->repository, strcspn(out->repository, "/"));
}

struct file_list {
    struct gitinfo *out;
    size_t cap;
};

static int add_changed(const git_diff_delta *delta, float progress, void *payload)
{
    (void)progress;
    struct file_list *list = payload;
    struct gitinfo *out = list->out;
    if (out->changed_count + 1 >= list->cap) {
        list->cap = list->cap ? list->cap * 2 : 16;
        out->changed_files = xrealloc(out->changed_files, list->cap * sizeof *out->changed_files);
    }
    const char *path = delta->new_file.path ? delta->new_file.path : delta->old_file.path;
    out->changed_files[out->changed_count++] = xstrdup(path);
    out->changed_files[out->changed_count] = NULL;
    return 0;
}

static int read_changed_files(git_repository *repo, git_commit *head, struct gitinfo *out,
                              struct error *err)
{
    git_tree *new_tree = NULL, *old_tree = NULL;
    git_commit *parent = NULL;
    git_diff *diff = NULL;
    int rc = -1;
    if (git_commit_tree(&new_tree, head) < 0)
        goto done;
    if (git_commit_parentcount(head) > 0 &&
        (git_commit_parent(&parent, head, 0) < 0 || git_commit_tree(&old_tree, parent) < 0))
        goto done;
    if (git_diff_tree_to_tree(&diff, repo, old_tree, new_tree, NULL) < 0)
        goto done;
    struct file_list list = {out, 0};
    if (git_diff_foreach(diff, add_changed, NULL, NULL, NULL, &list) < 0)
        goto done;
    rc = 0;
done:
    if (rc < 0)
        git_failure(err, "reading the files changed by the last commit");
    git_diff_free(diff);
    git_tree_free(old_tree);
    git_tree_free(new_tree);
    git_commit_free(parent);
    return rc;
}

int gitinfo_read(const char *path, struct gitinfo *out, struct error *err)
{
    memset(out, 0, sizeof *out);
    git_libgit2_init();
    git_repository *repo = NULL;
    git_commit *head = NULL;
    git_oid oid;
    int rc;
    if (git_repository_open_ext(&repo, path, 0, NULL) < 0) {
        rc = error_set(err, ENOENT, "%s is not inside a git checkout", path);
        goto done;
    }
    if (git_reference_name_to_id(&oid, repo, "HEAD") < 0 ||
        git_commit_lookup(&head, repo, &oid) < 0) {
        rc = error_set(err, ENOENT, "the git checkout at %s has no commits yet; commit first",
                       git_repository_workdir(repo) ? git_repository_workdir(repo) : path);
        goto done;
    }
    const char *workdir = git_repository_workdir(repo);
    out->workdir = xstrdup(workdir ? workdir : path);
    size_t n = strlen(out->workdir);
    if (n > 1 && out->workdir[n - 1] == '/')
        out->workdir[n - 1] = '\0';
    char hex[GIT_OID_HEXSZ + 1];
    out->sha = xstrdup(git_oid_tostr(hex, sizeof hex, &oid));
    const git_signature *author = git_commit_author(head);
    out->actor = xstrdup(author && author->name ? author->name : "");
    read_ref(repo, &oid, out);
    read_remote(repo, out);
    rc = read_changed_files(repo, head, out, err);
done:
    git_commit_free(head);
    git_repository_free(repo);
    git_libgit2_shutdown();
    if (rc < 0)
        gitinfo_free(out);
    return rc;
}

void gitinfo_free(struct gitinfo *info)
{
    free(info->workdir);
    free(info->sha);
    free(info->ref);
    free(info->ref_name);
    free(info->ref_type);
    free(info->repository);
    free(info->repository_owner);
    free(info->server_url);
    free(info->actor);
    if (info->changed_files)
        for (size_t i = 0; i < info->changed_count; i++)
            free(info->changed_files[i]);
    free(info->changed_files);
    memset(info, 0, sizeof *info);
}

void gitinfo_fallback(const char *path, struct gitinfo *out)
{
    memset(out, 0, sizeof *out);
    char *real = realpath(path, NULL);
    out->workdir = real ? real : xstrdup(path);
    out->sha = xstrdup("0000000000000000000000000000000000000000");
    out->ref = xstrdup("refs/heads/main");
    out->ref_name = xstrdup("main");
    out->ref_type = xstrdup("branch");
    out->actor = xstrdup("harrier");
    read_remote(NULL, out);
}
