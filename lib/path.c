#include "lib/path.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *path_normalize(const char *path)
{
    bool absolute = path[0] == '/';
    size_t count = 0;
    char **parts = str_split(path, '/', &count);
    char **kept = xcalloc(count + 1, sizeof *kept);
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        const char *p = parts[i];
        if (!*p || strcmp(p, ".") == 0)
            continue;
        if (strcmp(p, "..") == 0) {
            if (n && strcmp(kept[n - 1], "..") != 0) {
                n--;
                continue;
            }
            if (absolute)
                continue; /* "/.." is "/" */
        }
        kept[n++] = parts[i];
    }
    struct buf out = BUF_INIT;
    if (absolute)
        buf_putc(&out, '/');
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_putc(&out, '/');
        buf_puts(&out, kept[i]);
    }
    if (!out.len)
        buf_putc(&out, '.');
    free(kept);
    str_list_free(parts);
    return buf_steal(&out);
}

char *path_join(const char *base, const char *rel)
{
    if (!*base)
        return xstrdup(rel);
    size_t n = strlen(base);
    return xasprintf("%s%s%s", base, base[n - 1] == '/' ? "" : "/", rel);
}

bool path_is_inside(const char *base, const char *path)
{
    cleanup_free char *b = path_normalize(base);
    cleanup_free char *p = path_normalize(path);
    size_t n = strlen(b);
    if (strcmp(b, "/") == 0)
        return p[0] == '/';
    return strncmp(p, b, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

char *path_join_inside(const char *base, const char *rel, struct error *err)
{
    if (rel[0] == '/') {
        error_set(err, EINVAL, "path '%s' is absolute; it must be relative to %s", rel, base);
        return NULL;
    }
    cleanup_free char *nrel = path_normalize(rel);
    if (strcmp(nrel, "..") == 0 || str_starts_with(nrel, "../")) {
        error_set(err, EINVAL, "path '%s' leaves %s; use a path inside it", rel, base);
        return NULL;
    }
    cleanup_free char *nbase = path_normalize(base);
    if (strcmp(nrel, ".") == 0)
        return steal_pointer(&nbase);
    return path_join(nbase, nrel);
}

int path_mkdir_all(const char *path, mode_t mode, struct error *err)
{
    cleanup_free char *p = xstrdup(path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char saved = *s;
            *s = '\0';
            if (mkdir(p, mode) < 0 && errno != EEXIST)
                return error_set_errno(err, errno, "cannot create folder %s", p);
            *s = saved;
            if (!saved)
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return error_set(err, ENOTDIR, "%s exists and is not a folder", path);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
    return rc < 0 && errno != ENOENT ? -1 : 0;
}

int path_remove_all(const char *path, struct error *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : error_set_errno(err, errno, "cannot remove %s", path);
    if (nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS) < 0)
        return error_set_errno(err, errno, "cannot remove %s", path);
    return 0;
}

char *path_read_file(const char *path, size_t *len, struct error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_set_errno(err, errno, "cannot open %s", path);
        return NULL;
    }
    struct buf b = BUF_INIT;
    buf_reserve(&b, 0);
    for (;;) {
        buf_reserve(&b, 65536);
        ssize_t n = read(fd, b.data + b.len, 65536);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error_set_errno(err, errno, "cannot read %s", path);
            close(fd);
            buf_free(&b);
            return NULL;
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
        b.data[b.len] = '\0';
    }
    close(fd);
    if (len)
        *len = b.len;
    return buf_steal(&b);
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int path_write_file(const char *path, const void *data, size_t len, mode_t mode, struct error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return error_set_errno(err, errno, "cannot create %s", path);
    if (write_all(fd, data, len) < 0) {
        int e = errno;
        close(fd);
        return error_set_errno(err, e, "cannot write %s", path);
    }
    if (close(fd) < 0)
        return error_set_errno(err, errno, "cannot write %s", path);
    return 0;
}

int path_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                           struct error *err)
{
    cleanup_free char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return error_set_errno(err, errno, "cannot create %s", tmp);
    fchmod(fd, mode); /* the umask must not widen or narrow what the caller asked for */
    if (write_all(fd, data, len) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return error_set_errno(err, e, "cannot write %s", tmp);
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        int e = errno;
        unlink(tmp);
        return error_set_errno(err, e, "cannot write %s", tmp);
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return error_set_errno(err, e, "cannot rename %s to %s", tmp, path);
    }
    return 0;
}
