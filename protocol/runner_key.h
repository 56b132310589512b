/* runner_key: the runner's RSA key and what it does with it (PROTOCOL.md §2.6, §2.8, §3.1,
 * §4.3): generating it, the .NET RSAParameters form of .credentials_rsaparams, the JWT client
 * assertion (RS256/PS256), and decrypting the session key and messages (RSA-OAEP, AES-CBC). */
#ifndef HARRIER_PROTOCOL_RUNNER_KEY_H
#define HARRIER_PROTOCOL_RUNNER_KEY_H

#include "lib/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct runner_key;

/* A new 2048-bit key, exponent 65537. */
int runner_key_generate(struct runner_key **out, struct error *err);
/* From RSAParameters JSON (members read ignoring case; minimal or zero-padded byte arrays). */
int runner_key_from_params(const json_t *params, struct runner_key **out, struct error *err);
/* RSAParameters JSON as .NET writes it (d as long as the modulus, the rest half of it). */
json_t *runner_key_params_new(const struct runner_key *key);
/* The public key's modulus and exponent, unsigned big-endian, base64 (caller frees). */
char *runner_key_modulus_base64(const struct runner_key *key);
char *runner_key_exponent_base64(const struct runner_key *key);
void runner_key_free(struct runner_key *key);

/* The client assertion of §3.1: sub = iss = client_id, aud = audience, a fresh jti,
 * nbf = now, exp = now + 300. Caller frees. */
char *runner_key_jwt_new(const struct runner_key *key, const char *client_id, const char *audience,
                         bool ps256, time_t now, struct error *err);

/* RSA-OAEP decryption (SHA-256 or SHA-1 for both OAEP and MGF1). *out is freed by the caller. */
int runner_key_decrypt(const struct runner_key *key, const uint8_t *data, size_t len, bool sha256,
                       uint8_t **out, size_t *out_len, struct error *err);

/* AES-CBC with PKCS#7 padding; the key is 16, 24 or 32 bytes, iv 16. *out (NUL-terminated) is
 * freed by the caller. */
int runner_aes_cbc_decrypt(const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len,
                           const uint8_t *data, size_t len, uint8_t **out, size_t *out_len,
                           struct error *err);
/* The reverse, for tests. */
int runner_aes_cbc_encrypt(const uint8_t *key, size_t key_len, const uint8_t *iv,
                           const uint8_t *data, size_t len, uint8_t **out, size_t *out_len,
                           struct error *err);
/* RSA-OAEP encryption with the public half, for tests. */
int runner_key_encrypt(const struct runner_key *key, const uint8_t *data, size_t len, bool sha256,
                       uint8_t **out, size_t *out_len, struct error *err);

#endif
