/* gitinfo: what the local git checkout says about the run, for local mode's github context:
 * the commit, the ref, the repository (from the origin remote's URL) and the files the last
 * commit changed (for `on.push.paths` filters). Read with libgit2, so no git process runs.
 * All strings are owned by the struct; gitinfo_free() releases them. */
#ifndef HARRIER_RUNNER_GITINFO_H
#define HARRIER_RUNNER_GITINFO_H

#include "lib/error.h"

#include <stddef.h>

struct gitinfo {
    char *workdir; /* the checkout's top folder */
    char *sha;     /* HEAD commit, 40 hex digits */
    char *
        ref; /* refs/heads/<branch>, or refs/tags/<tag> when HEAD is a tagged commit and detached */
    char *ref_name;   /* <branch> or <tag> */
    char *ref_type;   /* "branch" or "tag" */
    char *repository; /* owner/name from the origin remote; "local/<folder>" without one */
    char *repository_owner;
    char *server_url;     /* https://<host> of the remote; https://github.com by default */
    char *actor;          /* the commit author's name */
    char **changed_files; /* paths changed by HEAD against its first parent (all files for a root
                             commit) */
    size_t changed_count;
};

/* Reads the checkout that contains path. Returns 0, or negative with err set (not a git
 * checkout, no commits yet…). */
int gitinfo_read(const char *path, struct gitinfo *out, struct error *err);
void gitinfo_free(struct gitinfo *info);

/* What a folder that is not a git checkout stands for: workdir = path, a zero commit on
 * refs/heads/main of local/<folder>, no changed files. */
void gitinfo_fallback(const char *path, struct gitinfo *out);

/* Splits a remote URL (https://host/o/r.git, git@host:o/r.git, ssh://git@host/o/r) into
 * server_url and owner/name; returns 0 or -1 when it is not of those shapes. */
int gitinfo_parse_remote(const char *url, char **server_url, char **repository);

#endif
