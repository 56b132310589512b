/* path: joining and normalising file paths without letting a relative part escape its base
 * (GitHub's working-directory, action paths, artifact names, archive entries), plus small
 * file helpers. Returned strings are freed by the caller. */
#ifndef HARRIER_LIB_PATH_H
#define HARRIER_LIB_PATH_H

#include "lib/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Lexical normalisation: folds "//", "." and "x/.." ; keeps leading ".." of a relative path. */
char *path_normalize(const char *path);
/* base + "/" + rel, for rel known to be harmless (no checks). */
char *path_join(const char *base, const char *rel);
/* base + rel where rel must stay inside base: an absolute rel, or one whose ".." climbs out
 * of base, is refused (NULL, err says which path and why). Lexical only: callers that
 * extract files also refuse symlinks on the way (see actions/). */
char *path_join_inside(const char *base, const char *rel, struct error *err);
/* True when path (normalised) is base or below it. */
bool path_is_inside(const char *base, const char *path);

/* mkdir -p with mode; 0 or negative errno with err set. */
int path_mkdir_all(const char *path, mode_t mode, struct error *err);
/* rm -rf; missing is fine. */
int path_remove_all(const char *path, struct error *err);
/* Reads a whole file into a NUL-terminated buffer the caller frees. */
char *path_read_file(const char *path, size_t *len, struct error *err);
/* Writes data to path (created or truncated) with mode, without syncing: for scratch files
 * of a job (scripts, file-command files) whose loss in a crash loses nothing. */
int path_write_file(const char *path, const void *data, size_t len, mode_t mode, struct error *err);
/* Writes data to path atomically (temp file in the same folder, fsync, rename) with mode. */
int path_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                           struct error *err);

#endif
