/* yaml_reader: YAML text (a workflow, an action.yml) into raw template tokens with libyaml,
 * as GitHub's YamlObjectReader reads it: plain scalars typed by the YAML 1.2 core schema
 * (null, boolean, number, else string), quoted and block scalars always strings, explicit
 * !!str/!!int/!!float/!!bool/!!null tags, anchors and aliases (an alias shares the anchored
 * tokens), and GitHub's limits. Positions are 1-based lines and columns in UTF-16 code units
 * (as GitHub's: an emoji counts two). Strings are left as written: ${{ }} is parsed later,
 * against the schema (workflow/schema.h). Pure: the caller passes the text. */
#ifndef HARRIER_WORKFLOW_YAML_READER_H
#define HARRIER_WORKFLOW_YAML_READER_H

#include "lib/error.h"
#include "lib/mem.h"
#include "workflow/token.h"

#include <stdbool.h>
#include <stddef.h>

enum {
    YAML_READER_MAX_DEPTH = 50,          /* GitHub's ParseOptions.MaxDepth */
    YAML_READER_MAX_NODES = 50000,       /* parse events, aliases expanded */
    YAML_READER_MAX_FILE_SIZE = 1048576, /* characters (UTF-16 code units, as .NET counts) */
};

struct yaml_reader_options {
    const char *file_name; /* for messages (err->where); may be NULL */
    int file;              /* file id stamped on every token (token.h); 0 = none */
    int max_depth;         /* nested sequences/mappings; 0 = YAML_READER_MAX_DEPTH */
    size_t max_nodes;      /* 0 = YAML_READER_MAX_NODES */
    size_t max_file_size;  /* 0 = YAML_READER_MAX_FILE_SIZE */
    bool no_anchors;       /* refuse anchors, as GitHub did before August 2025 */
    /* On failure, leave in *out what was read before it, so that the schema can report
     * the problems before the failure first, as GitHub's streaming reader does. The place
     * of the failure is marked with NULL: a NULL last sequence item, a last mapping pair
     * whose value is NULL (the key was read) or whose key and value are NULL; the
     * collections around it are unfinished. A failure after a complete document (a second
     * document) leaves the complete tree with no mark. */
    bool partial;
};

/* Reads one YAML document into *out (tokens allocated in arena; an alias's tokens are shared
 * with its anchor, so treat the tree as read-only). Merge keys (<<) are not special (YAML 1.2
 * has none): "<<" is an ordinary key, which the schema then refuses as GitHub does.
 * On failure returns negative with err set (and *out NULL unless options->partial): message
 * worded as GitHub's reader words it,
 * err->where = file_name, err->line/col set only for syntax errors (GitHub's own reader
 * messages carry the position in their text, "on line 4 and column 14"). */
int yaml_reader_load(struct arena *arena, const char *text, size_t len,
                     const struct yaml_reader_options *options, struct token **out,
                     struct error *err);

/* The length of UTF-8 text in UTF-16 code units (GitHub's "characters" for max-file-size). */
size_t yaml_reader_text_length(const char *text, size_t len);

#endif
