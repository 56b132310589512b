/* masker: replaces every secret value, and every encoded form the official runner registers
 * for it (base64 at three alignments, URL, JSON, XML, command-line, expression and
 * PowerShell forms), with "***", in one pass over the text. Owns its copies of the values.
 * Whole texts (masker_mask) or chunked streams (struct masker_stream) that hold back only the
 * bytes that could still begin a secret, so a value split across two writes is still caught. */
#ifndef HARRIER_RUNNER_MASKER_H
#define HARRIER_RUNNER_MASKER_H

#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>

struct masker;

struct masker *masker_new(void);
void masker_free(struct masker *masker);

/* As the official runner's SecretMasker.AddValue: the value itself plus each non-empty result
 * of its value encoders. Empty values are ignored, as there (no other minimum length; the
 * encoders keep their own: PowerShell sections of 6+ characters, quoted values longer than 8). */
void masker_add_value(struct masker *masker, const char *value, size_t len);

/* As add-mask and secret variables: masker_add_value of the value (white space trimmed first
 * when trim is true, as for secret variables), then of each of its lines, trimmed, skipping
 * empty ones, because step output reaches the masker one line at a time. */
void masker_add_secret(struct masker *masker, const char *value, size_t len, bool trim);

/* Number of distinct byte strings being masked (values and encoded forms). */
size_t masker_pattern_count(const struct masker *masker);

/* Appends text to out with every occurrence of a pattern replaced by "***"; overlapping or
 * touching occurrences become one "***", as the official runner merges them. */
void masker_mask_into(struct masker *masker, const char *text, size_t len, struct buf *out);

/* As masker_mask_into, into a new NUL-terminated string the caller frees. */
char *masker_mask(struct masker *masker, const char *text, size_t len);

/* A chunked stream: feed bytes as they arrive; masked bytes are appended to out as soon as no
 * secret can still cover them. The result of all feeds plus the flush equals masker_mask of
 * the concatenation. The stream keeps a pointer to masker, which must outlive it. */
struct masker_stream {
    struct masker *masker;
    struct buf pending; /* bytes not yet emitted */
    bool touching_mask; /* the output so far ends with "***" reaching the first pending byte */
};

void masker_stream_init(struct masker_stream *stream, struct masker *masker);
void masker_stream_feed(struct masker_stream *stream, const char *data, size_t len,
                        struct buf *out);
void masker_stream_flush(struct masker_stream *stream, struct buf *out); /* at end of stream */
void masker_stream_free(struct masker_stream *stream);

#endif
