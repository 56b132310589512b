/* codec: SHA-256, hex and base64 (standard and URL alphabets) on OpenSSL.
 * Every returned string is NUL-terminated and freed by the caller with free(). */
#ifndef HARRIER_LIB_CODEC_H
#define HARRIER_LIB_CODEC_H

#include "lib/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { SHA256_DIGEST_BYTES = 32 };

void codec_sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_BYTES]);
char *codec_sha256_hex(const void *data, size_t len);
/* SHA-256 of a file's content, as hex; NULL with err set when it cannot be read. */
char *codec_sha256_file_hex(const char *path, struct error *err);

/* Incremental SHA-256 (for streams: layers, tarballs). */
struct codec_sha256_ctx;
struct codec_sha256_ctx *codec_sha256_new(void);
void codec_sha256_update(struct codec_sha256_ctx *ctx, const void *data, size_t len);
void codec_sha256_finish(struct codec_sha256_ctx *ctx,
                         uint8_t out[SHA256_DIGEST_BYTES]); /* frees ctx */

char *codec_hex_encode(const void *data, size_t len); /* lowercase */
/* Returns the number of bytes decoded into out (which holds strlen(hex)/2), or -1. */
long codec_hex_decode(const char *hex, uint8_t *out);

char *codec_base64_encode(const void *data, size_t len);    /* standard, padded */
char *codec_base64url_encode(const void *data, size_t len); /* URL alphabet, no padding */
/* Decodes standard or URL alphabet, padded or not, ignoring white space. Returns a buffer the
 * caller frees (NUL-terminated for convenience) and its length in *out_len; NULL on bad input. */
uint8_t *codec_base64_decode(const char *text, size_t *out_len);

/* A random (version 4) UUID in GitHub's GUID format: 36 lowercase characters. Caller frees. */
char *codec_uuid4(void);

#endif
