/* action: what an action is and where it comes from. `uses:` references (./local,
 * owner/repo[/path]@ref, docker://image), action.yml / action.yaml read with GitHub's action
 * schema into a model (inputs, outputs, runs: node, composite or docker), and the action
 * cache (_actions/owner/repo/<ref or commit>): tarballs downloaded on the loop with libcurl,
 * extracted off the loop with libarchive refusing entries that escape the target, renamed into
 * place atomically. */
#ifndef HARRIER_ACTIONS_ACTION_H
#define HARRIER_ACTIONS_ACTION_H

#include "lib/error.h"
#include "lib/http.h"
#include "lib/mem.h"
#include "workflow/token.h"

#include <stdbool.h>
#include <uv.h>

/* ---- references ---------------------------------------------------------------------- */

enum action_reference_kind {
    ACTION_REFERENCE_LOCAL,      /* ./path, relative to the workspace */
    ACTION_REFERENCE_REPOSITORY, /* owner/repo[/path]@ref */
    ACTION_REFERENCE_DOCKER,     /* docker://image */
};

struct action_reference {
    enum action_reference_kind kind;
    char *owner, *repo, *path, *ref; /* repository: path "" when none */
    char *local_path;                /* local: as written (./x) */
    char *image;                     /* docker */
};

/* Parses a `uses:` value; negative with err saying what form is expected. */
int action_reference_parse(const char *uses, struct action_reference *out, struct error *err);
void action_reference_clear(struct action_reference *ref);

/* ---- the model ------------------------------------------------------------------------ */

enum action_kind { ACTION_NODE, ACTION_COMPOSITE, ACTION_DOCKER };

struct action_input {
    const char *name;
    struct token *default_value; /* NULL when none; may be an expression */
    bool required;
    const char *deprecation_message; /* NULL when none */
};

struct action_output {
    const char *name;
    struct token *value; /* composite: the expression; NULL for node actions */
};

struct action {
    struct arena arena;
    char *dir;  /* the folder holding action.yml */
    char *file; /* its path */
    const char *name, *description;
    enum action_kind kind;
    const char *using; /* as written: node20, composite, docker */
    int node_version;  /* 12, 16, 20, 24 for node actions */
    const char *main, *pre, *post;
    struct token *pre_if, *post_if; /* NULL = always() (GitHub's default for both) */
    /* docker: read, not run yet */
    const char *image, *entrypoint, *pre_entrypoint, *post_entrypoint;
    struct token *args, *env; /* sequence, mapping; NULL when absent */
    struct action_input *inputs;
    size_t input_count;
    struct action_output *outputs;
    size_t output_count;
    struct token *steps;     /* composite: the runs.steps sequence */
    const char **file_table; /* token file ids index it (1-based) */
    size_t file_count;
};

/* Reads dir/action.yml (or action.yaml; Dockerfile alone is a docker action). Negative with
 * err saying which file is missing or wrong (GitHub's messages, file:line:col). Free with
 * action_free. */
int action_load(const char *dir, struct action **out, struct error *err);
/* The same for one file, whatever its name (dir is the file's folder). */
int action_load_file(const char *file, struct action **out, struct error *err);
void action_free(struct action *action);

/* ---- the cache ------------------------------------------------------------------------ */

#define ACTION_DEFAULT_TARBALL_URL "https://api.github.com/repos/{owner}/{repo}/tarball/{ref}"

/* pattern with "{owner}", "{repo}" and "{ref}" replaced (local mode's --actions-url). Caller
 * frees. */
char *action_tarball_url(const char *pattern, const char *owner, const char *repo, const char *ref);

/* The folder of owner/repo/version in the cache (version: the ref, or the resolved commit),
 * caller frees; NULL with err when the names would lead outside the cache. */
char *action_cache_dir(const char *cache_dir, const char *owner, const char *repo,
                       const char *version, struct error *err);

/* A line for the job's log while fetching: a failed try, the wait before the next. */
typedef void action_fetch_note_fn(const char *line, void *user);
/* The end of a fetch: rc 0 with dir (the repository's root in the cache, valid during the
 * call) and downloaded (false when another process put it there first), or negative with err
 * (-ECANCELED when cancelled). */
typedef void action_fetch_done_fn(int rc, const struct error *err, const char *dir, bool downloaded,
                                  void *user);

struct action_fetch_options {
    const char *cache_dir;         /* the _actions folder */
    const char *owner, *repo;      /* where it goes: cache_dir/owner/repo/version */
    const char *version;           /* the ref, or the resolved commit */
    const char *url;               /* the tarball */
    const char *authorization;     /* an "Authorization: ..." header line, or NULL */
    const char *archive;           /* a local .tar.gz used instead of url when it exists, or NULL */
    int attempts;                  /* tries in all (0: 1); 404 and 403 end them at once */
    unsigned backoff_min_ms;       /* a random wait between tries, in this range */
    unsigned backoff_max_ms;       /*   (0 and 0: none) */
    unsigned timeout_ms;           /* each try (0: 20 minutes, as the official runner) */
    action_fetch_note_fn *on_note; /* may be NULL */
    action_fetch_done_fn *on_done; /* called once, from the loop */
    void *user;
};

struct action_fetch;
/* Downloads the tarball on loop (through http, which lives there) and extracts it off the
 * loop into a temporary folder beside its place, then renames it into place: safe when several
 * processes fetch the same action at once (the losers remove their copies). The official
 * runner's tries: 404 ("An action could not be found...") and 403 ("Access denied...") end
 * at once, anything else is tried again. NULL with err set when it cannot start; on_done is
 * then not called. */
struct action_fetch *action_fetch_start(uv_loop_t *loop, struct http_client *http,
                                        const struct action_fetch_options *options,
                                        struct error *err);
/* Stops it; on_done still comes, from the loop, with -ECANCELED. */
void action_fetch_cancel(struct action_fetch *fetch);

/* Extracts a .tar.gz (memory) into dir (which must not exist yet), dropping the top folder;
 * refuses absolute names, `..`, and links that point outside. */
int action_archive_extract(const void *data, size_t len, const char *dir, struct error *err);

#endif
