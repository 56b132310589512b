/* action: what an action is and where it comes from. `uses:` references (./local,
 * owner/repo[/path]@ref, docker://image), action.yml / action.yaml read with GitHub's action
 * schema into a model (inputs, outputs, runs: node, composite or docker), and the action
 * cache (_actions/owner/repo/ref): tarballs downloaded with libcurl, extracted with
 * libarchive refusing entries that escape the target, renamed into place atomically. */
#ifndef HARRIER_ACTIONS_ACTION_H
#define HARRIER_ACTIONS_ACTION_H

#include "lib/error.h"
#include "lib/mem.h"
#include "workflow/token.h"

#include <stdbool.h>

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

struct action_cache_options {
    const char *cache_dir; /* the _actions folder */
    const char *base_url;  /* "{owner}", "{repo}", "{ref}" replaced; NULL = GitHub's tarballs */
    const char *token;     /* sent as "Authorization: token ..." when not NULL */
    bool offline;          /* only the cache; a missing action is an error */
};

#define ACTION_DEFAULT_TARBALL_URL "https://api.github.com/repos/{owner}/{repo}/tarball/{ref}"

/* The folder of owner/repo@ref in the cache, downloading it first when missing. Safe when
 * several processes fetch the same action at once: each extracts into its own temporary
 * folder and renames it into place; the loser removes its copy. *dir_out (caller frees) is
 * the repository's root (add ref->path for the action). *downloaded says whether it was
 * fetched now. */
int action_cache_get(const struct action_cache_options *options, const char *owner,
                     const char *repo, const char *ref, char **dir_out, bool *downloaded,
                     struct error *err);

/* Extracts a .tar.gz (memory) into dir (which must not exist yet), dropping the top folder;
 * refuses absolute names, `..`, and links that point outside. */
int action_archive_extract(const void *data, size_t len, const char *dir, struct error *err);

#endif
