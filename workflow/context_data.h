/* context_data: GitHub's PipelineContextData JSON encoding (the job message's contextData,
 * PROTOCOL.md §6.5) to and from plain jansson values, the form expressions evaluate against.
 * Dictionaries become objects in entry order; which objects were case-sensitive
 * dictionaries (t 5, `env` on Linux) is kept in a struct context_data_marks beside them. */
#ifndef HARRIER_WORKFLOW_CONTEXT_DATA_H
#define HARRIER_WORKFLOW_CONTEXT_DATA_H

#include "lib/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The objects of a plain tree that are case-sensitive dictionaries (borrowed pointers into
 * that tree: valid while it lives). Zero-initialise; free with context_data_marks_free. */
struct context_data_marks {
    const json_t **objects;
    size_t count, cap;
};

void context_data_marks_add(struct context_data_marks *marks, const json_t *object);
bool context_data_marks_has(const struct context_data_marks *marks, const json_t *object);
void context_data_marks_free(struct context_data_marks *marks);

/* Encoded → plain. Accepts bare scalars, {"t":0..5,…} objects (an object without "t" is a
 * string, "s"), members in any case; duplicate dictionary keys: the last wins, in the place
 * of the first. Numbers NaN/Infinity (no JSON form) become null. marks may be NULL.
 * Returns a new reference, or NULL with err set (err->where is the JSON path). */
json_t *context_data_decode(json_t *encoded, struct context_data_marks *marks, struct error *err);

/* Plain → encoded, as the runner writes it: bare strings, booleans and numbers, {"t":1,"a"}
 * arrays, {"t":2,"d":[{"k","v"}]} dictionaries ({"t":5} for objects in marks), "a"/"d" left
 * out when empty, null as null. marks may be NULL. Returns a new reference. */
json_t *context_data_encode(const json_t *plain, const struct context_data_marks *marks);

#endif
