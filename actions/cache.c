/* The action cache: _actions/owner/repo/ref, filled from tarballs. */
#include "actions/action.h"

#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/http.h"
#include "lib/path.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
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

static char *expand_url(const char *pattern, const char *owner, const char *repo, const char *ref)
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

static int download(const struct action_cache_options *o, const char *owner, const char *repo,
                    const char *ref, struct http_response *resp, struct error *err)
{
    cleanup_free char *url =
        expand_url(o->base_url ? o->base_url : ACTION_DEFAULT_TARBALL_URL, owner, repo, ref);
    cleanup_free char *auth = o->token ? xasprintf("Authorization: token %s", o->token) : NULL;
    const char *headers[] = {"User-Agent: harrier", auth, NULL};
    struct http_request_options ho = {
        .url = url,
        .headers = headers,
        .retries = 2,
        .idle_timeout_ms = 60000,
    };
    if (http_request_sync(&ho, resp, err) < 0)
        return error_prefix(err, "downloading %s/%s@%s from %s", owner, repo, ref, url);
    if (resp->status != 200)
        return error_set(err, EIO,
                         "downloading %s/%s@%s from %s: the server answered %ld; check that the "
                         "action and its ref exist and that the token may read it",
                         owner, repo, ref, url, resp->status);
    return 0;
}

int action_cache_get(const struct action_cache_options *o, const char *owner, const char *repo,
                     const char *ref, char **dir_out, bool *downloaded, struct error *err)
{
    *downloaded = false;
    cleanup_free char *rel = xasprintf("%s/%s/%s", owner, repo, ref);
    char *dir = path_join_inside(o->cache_dir, rel, err);
    if (!dir)
        return err->code;
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        *dir_out = dir;
        return 0;
    }
    if (o->offline) {
        free(dir);
        return error_set(err, ENOENT,
                         "%s/%s@%s is not in the action cache (%s) and --offline forbids "
                         "downloading it; run once without --offline to fetch it",
                         owner, repo, ref, o->cache_dir);
    }
    struct http_response resp = {0};
    int rc = download(o, owner, repo, ref, &resp, err);
    cleanup_free char *guid = codec_uuid4();
    cleanup_free char *tmp = xasprintf("%s.tmp-%s", dir, guid);
    if (rc == 0) {
        rc = action_archive_extract(resp.body.data, resp.body.len, tmp, err);
        if (rc < 0)
            error_prefix(err, "%s/%s@%s", owner, repo, ref);
    }
    http_response_free(&resp);
    if (rc == 0 && rename(tmp, dir) < 0) {
        /* Another job put it there first: theirs is as good as ours. */
        if (errno != EEXIST && errno != ENOTEMPTY)
            rc = error_set_errno(err, errno, "cannot move the action into %s", dir);
    } else if (rc == 0) {
        *downloaded = true;
    }
    struct error ignored = {0};
    path_remove_all(tmp, &ignored);
    if (rc < 0) {
        free(dir);
        return rc;
    }
    *dir_out = dir;
    return 0;
}
