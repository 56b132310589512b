/* idbuilder (internal to workflow/): GitHub's identifier rules, shared by the converter (job
 * and step ids, generated step ids `__run`, `__run_2`…) and the matrix (configuration ids).
 * Lengths count UTF-16 code units, as GitHub's do. */
#ifndef HARRIER_WORKFLOW_IDBUILDER_INTERNAL_H
#define HARRIER_WORKFLOW_IDBUILDER_INTERNAL_H

#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>

enum { ID_MAX_LENGTH = 100 };

struct id_builder {
    struct buf name; /* segments appended since the last build */
    char **distinct; /* ids taken, compared ignoring case */
    size_t count, cap;
};

void id_builder_init(struct id_builder *b);
void id_builder_free(struct id_builder *b);
void id_builder_append_segment(struct id_builder *b, const char *value);
/* Builds a unique id from the segments appended; the string is owned by the builder. NULL
 * when no unique name could be made (GitHub: "Unable to create a unique name"). */
const char *id_builder_build(struct id_builder *b, bool allow_reserved_prefix, int max_length);
/* Reserves a user-given id. Returns NULL, or GitHub's error message (caller frees). */
char *id_builder_add_known(struct id_builder *b, const char *value);

/* UTF-16 length of a UTF-8 string, and the byte length of its first n UTF-16 units. */
size_t utf16_length(const char *s);
size_t utf16_prefix_bytes(const char *s, size_t n);

#endif
