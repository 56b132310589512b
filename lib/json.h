/* json: helpers on jansson for GitHub's JSON. GitHub's readers (Newtonsoft) match member
 * names case-insensitively and tolerate a UTF-8 byte-order mark, and so do these.
 * Returned json_t values are borrowed unless the name says _new/load (then json_decref). */
#ifndef HARRIER_LIB_JSON_H
#define HARRIER_LIB_JSON_H

#include "lib/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Member lookup: exact match first, then the first member equal ignoring ASCII case. */
json_t *json_get(const json_t *object, const char *key);
/* A string member, or NULL when absent, null or not a string. */
const char *json_get_string(const json_t *object, const char *key);
/* An integer member; numeric strings ("12") are accepted, as Newtonsoft does. */
bool json_get_int(const json_t *object, const char *key, int64_t *out);
/* A boolean member; "true"/"false" strings accepted. */
bool json_get_bool(const json_t *object, const char *key, bool *out);

/* Parses text (an optional UTF-8 BOM is skipped). Returns a new reference or NULL with err
 * set to "where:line:col: message". where names the source in messages (may be NULL). */
json_t *json_load_text(const char *text, size_t len, const char *where, struct error *err);
json_t *json_load_path(const char *path, struct error *err);

/* Compact serialisation; caller frees. */
char *json_dump_compact(const json_t *value);

/* Deep equality with object member names compared ignoring case (for expected-output
 * comparisons in conformance tests: GitHub's readers are case-insensitive). Numbers compare
 * as doubles, so 1 and 1.0 are equal. */
bool json_equal_nocase(const json_t *a, const json_t *b);

#endif
