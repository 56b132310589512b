/* The runner's RSA key on OpenSSL 3 (EVP and OSSL_PARAM, no deprecated RSA_* calls). */
#include "protocol/runner_key.h"

#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/json.h"
#include "lib/mem.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>

struct runner_key {
    EVP_PKEY *pkey;
};

static int ssl_error(struct error *err, const char *what)
{
    char text[256] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, text, sizeof text);
    ERR_clear_error();
    return error_set(err, EIO, "%s failed%s%s", what, *text ? ": " : "", text);
}

int runner_key_generate(struct runner_key **out, struct error *err)
{
    EVP_PKEY *pkey = EVP_RSA_gen(2048);
    if (!pkey)
        return ssl_error(err, "generating an RSA key");
    *out = xcalloc(1, sizeof **out);
    (*out)->pkey = pkey;
    return 0;
}

void runner_key_free(struct runner_key *key)
{
    if (!key)
        return;
    EVP_PKEY_free(key->pkey);
    free(key);
}

/* RSAParameters member names and the OpenSSL parameter each holds. */
static const struct {
    const char *json;
    const char *ossl;
    int width; /* 1: modulus length, 2: half of it, 0: minimal */
} key_params[] = {
    {"modulus", OSSL_PKEY_PARAM_RSA_N, 1},    {"exponent", OSSL_PKEY_PARAM_RSA_E, 0},
    {"d", OSSL_PKEY_PARAM_RSA_D, 1},          {"p", OSSL_PKEY_PARAM_RSA_FACTOR1, 2},
    {"q", OSSL_PKEY_PARAM_RSA_FACTOR2, 2},    {"dp", OSSL_PKEY_PARAM_RSA_EXPONENT1, 2},
    {"dq", OSSL_PKEY_PARAM_RSA_EXPONENT2, 2}, {"inverseQ", OSSL_PKEY_PARAM_RSA_COEFFICIENT1, 2},
};

int runner_key_from_params(const json_t *params, struct runner_key **out, struct error *err)
{
    size_t n = sizeof key_params / sizeof key_params[0];
    BIGNUM *bn[8] = {0};
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *text = json_get_string(params, key_params[i].json);
        size_t len = 0;
        uint8_t *bytes = text ? codec_base64_decode(text, &len) : NULL;
        if (!bytes || len == 0)
            rc =
                error_set(err, EINVAL, "the RSA parameters have no valid '%s'", key_params[i].json);
        else
            bn[i] = BN_bin2bn(bytes, (int)len, NULL);
        free(bytes);
        if (rc == 0)
            OSSL_PARAM_BLD_push_BN(bld, key_params[i].ossl, bn[i]);
    }
    OSSL_PARAM *op = rc == 0 ? OSSL_PARAM_BLD_to_param(bld) : NULL;
    EVP_PKEY *pkey = NULL;
    if (rc == 0) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, op) <= 0)
            rc = ssl_error(err, "reading the RSA parameters");
        EVP_PKEY_CTX_free(ctx);
    }
    OSSL_PARAM_free(op);
    OSSL_PARAM_BLD_free(bld);
    for (size_t i = 0; i < n; i++)
        BN_clear_free(bn[i]);
    if (rc < 0)
        return rc;
    *out = xcalloc(1, sizeof **out);
    (*out)->pkey = pkey;
    return 0;
}

/* A big number as unsigned big-endian bytes, left-padded to width (0: minimal), in base64. */
static char *param_base64(const struct runner_key *key, const char *name, int width)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(key->pkey, name, &bn))
        return NULL;
    int len = BN_num_bytes(bn);
    int size = width > len ? width : len;
    uint8_t *bytes = xcalloc(1, (size_t)size + 1);
    BN_bn2binpad(bn, bytes, size);
    char *text = codec_base64_encode(bytes, (size_t)size);
    OPENSSL_cleanse(bytes, (size_t)size);
    free(bytes);
    BN_clear_free(bn);
    return text;
}

json_t *runner_key_params_new(const struct runner_key *key)
{
    int modulus = EVP_PKEY_get_size(key->pkey);
    json_t *o = json_object();
    for (size_t i = 0; i < sizeof key_params / sizeof key_params[0]; i++) {
        int width = key_params[i].width == 1 ? modulus : key_params[i].width == 2 ? modulus / 2 : 0;
        char *text = param_base64(key, key_params[i].ossl, width);
        if (text)
            json_object_set_new(o, key_params[i].json, json_string(text));
        free(text);
    }
    return o;
}

char *runner_key_modulus_base64(const struct runner_key *key)
{
    return param_base64(key, OSSL_PKEY_PARAM_RSA_N, 0);
}

char *runner_key_exponent_base64(const struct runner_key *key)
{
    return param_base64(key, OSSL_PKEY_PARAM_RSA_E, 0);
}

char *runner_key_jwt_new(const struct runner_key *key, const char *client_id, const char *audience,
                         bool ps256, time_t now, struct error *err)
{
    cleanup_free char *jti = codec_uuid4();
    json_t *header = json_pack("{s:s, s:s}", "typ", "JWT", "alg", ps256 ? "PS256" : "RS256");
    json_t *claims =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "sub", client_id, "iss", client_id, "aud",
                  audience, "jti", jti, "nbf", (json_int_t)now, "exp", (json_int_t)now + 300);
    cleanup_free char *h = json_dumps(header, JSON_COMPACT);
    cleanup_free char *c = json_dumps(claims, JSON_COMPACT);
    json_decref(header);
    json_decref(claims);
    cleanup_free char *h64 = codec_base64url_encode(h, strlen(h));
    cleanup_free char *c64 = codec_base64url_encode(c, strlen(c));
    cleanup_free char *signed_part = xasprintf("%s.%s", h64, c64);

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t sig_len = 0;
    uint8_t *sig = NULL;
    int ok = EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key->pkey) > 0;
    if (ok && ps256)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) > 0;
    ok = ok &&
         EVP_DigestSign(md, NULL, &sig_len, (const uint8_t *)signed_part, strlen(signed_part)) > 0;
    if (ok) {
        sig = xmalloc(sig_len);
        ok = EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)signed_part, strlen(signed_part)) >
             0;
    }
    EVP_MD_CTX_free(md);
    if (!ok) {
        free(sig);
        ssl_error(err, "signing the OAuth client assertion");
        return NULL;
    }
    cleanup_free char *s64 = codec_base64url_encode(sig, sig_len);
    free(sig);
    return xasprintf("%s.%s", signed_part, s64);
}

static int oaep(const struct runner_key *key, bool decrypt, const uint8_t *data, size_t len,
                bool sha256, uint8_t **out, size_t *out_len, struct error *err)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key->pkey, NULL);
    const EVP_MD *md = sha256 ? EVP_sha256() : EVP_sha1();
    int ok = ctx && (decrypt ? EVP_PKEY_decrypt_init(ctx) : EVP_PKEY_encrypt_init(ctx)) > 0 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) > 0 && EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) > 0;
    size_t n = 0;
    ok = ok && (decrypt ? EVP_PKEY_decrypt(ctx, NULL, &n, data, len)
                        : EVP_PKEY_encrypt(ctx, NULL, &n, data, len)) > 0;
    uint8_t *buf = ok ? xmalloc(n + 1) : NULL;
    ok = ok && (decrypt ? EVP_PKEY_decrypt(ctx, buf, &n, data, len)
                        : EVP_PKEY_encrypt(ctx, buf, &n, data, len)) > 0;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        free(buf);
        return ssl_error(err, decrypt ? "decrypting the session key (RSA-OAEP)"
                                      : "encrypting with RSA-OAEP");
    }
    *out = buf;
    *out_len = n;
    return 0;
}

int runner_key_decrypt(const struct runner_key *key, const uint8_t *data, size_t len, bool sha256,
                       uint8_t **out, size_t *out_len, struct error *err)
{
    return oaep(key, true, data, len, sha256, out, out_len, err);
}

int runner_key_encrypt(const struct runner_key *key, const uint8_t *data, size_t len, bool sha256,
                       uint8_t **out, size_t *out_len, struct error *err)
{
    return oaep(key, false, data, len, sha256, out, out_len, err);
}

static int aes_cbc(bool decrypt, const uint8_t *key, size_t key_len, const uint8_t *iv,
                   const uint8_t *data, size_t len, uint8_t **out, size_t *out_len,
                   struct error *err)
{
    const EVP_CIPHER *cipher = key_len == 16   ? EVP_aes_128_cbc()
                               : key_len == 24 ? EVP_aes_192_cbc()
                               : key_len == 32 ? EVP_aes_256_cbc()
                                               : NULL;
    if (!cipher)
        return error_set(err, EINVAL, "the session key has %zu bytes; AES needs 16, 24 or 32",
                         key_len);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t *buf = xmalloc(len + 32);
    int n1 = 0, n2 = 0;
    int ok = EVP_CipherInit_ex(ctx, cipher, NULL, key, iv, decrypt ? 0 : 1) > 0 &&
             EVP_CipherUpdate(ctx, buf, &n1, data, (int)len) > 0 &&
             EVP_CipherFinal_ex(ctx, buf + n1, &n2) > 0;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        free(buf);
        return ssl_error(err, decrypt ? "decrypting the message (AES-CBC)" : "AES-CBC encryption");
    }
    buf[n1 + n2] = 0;
    *out = buf;
    *out_len = (size_t)(n1 + n2);
    return 0;
}

int runner_aes_cbc_decrypt(const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len,
                           const uint8_t *data, size_t len, uint8_t **out, size_t *out_len,
                           struct error *err)
{
    if (iv_len != 16)
        return error_set(err, EINVAL, "the message IV has %zu bytes, not 16", iv_len);
    return aes_cbc(true, key, key_len, iv, data, len, out, out_len, err);
}

int runner_aes_cbc_encrypt(const uint8_t *key, size_t key_len, const uint8_t *iv,
                           const uint8_t *data, size_t len, uint8_t **out, size_t *out_len,
                           struct error *err)
{
    return aes_cbc(false, key, key_len, iv, data, len, out, out_len, err);
}
