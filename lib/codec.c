#include "lib/codec.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

struct codec_sha256_ctx {
    EVP_MD_CTX *md;
};

struct codec_sha256_ctx *codec_sha256_new(void)
{
    struct codec_sha256_ctx *ctx = xmalloc(sizeof *ctx);
    ctx->md = EVP_MD_CTX_new();
    if (!ctx->md || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
        fprintf(stderr, "harrier: OpenSSL cannot initialise SHA-256\n");
        abort();
    }
    return ctx;
}

void codec_sha256_update(struct codec_sha256_ctx *ctx, const void *data, size_t len)
{
    EVP_DigestUpdate(ctx->md, data, len);
}

void codec_sha256_finish(struct codec_sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_BYTES])
{
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx->md, out, &n);
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

void codec_sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_BYTES])
{
    struct codec_sha256_ctx *ctx = codec_sha256_new();
    codec_sha256_update(ctx, data, len);
    codec_sha256_finish(ctx, out);
}

char *codec_sha256_hex(const void *data, size_t len)
{
    uint8_t d[SHA256_DIGEST_BYTES];
    codec_sha256(data, len, d);
    return codec_hex_encode(d, sizeof d);
}

char *codec_sha256_file_hex(const char *path, struct error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        error_set_errno(err, errno, "cannot open %s", path);
        return NULL;
    }
    struct codec_sha256_ctx *ctx = codec_sha256_new();
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        codec_sha256_update(ctx, chunk, n);
    int failed = ferror(f);
    fclose(f);
    uint8_t d[SHA256_DIGEST_BYTES];
    codec_sha256_finish(ctx, d);
    if (failed) {
        error_set(err, EIO, "cannot read %s", path);
        return NULL;
    }
    return codec_hex_encode(d, sizeof d);
}

char *codec_hex_encode(const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = data;
    char *out = xmalloc(len * 2 + 1);
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[len * 2] = '\0';
    return out;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long codec_hex_decode(const char *hex, uint8_t *out)
{
    size_t n = strlen(hex);
    if (n % 2)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

char *codec_base64_encode(const void *data, size_t len)
{
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    out[n] = '\0';
    return out;
}

char *codec_base64url_encode(const void *data, size_t len)
{
    char *out = codec_base64_encode(data, len);
    size_t n = strlen(out);
    while (n && out[n - 1] == '=')
        out[--n] = '\0';
    for (char *p = out; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
    }
    return out;
}

uint8_t *codec_base64_decode(const char *text, size_t *out_len)
{
    /* Normalise to the padded standard alphabet, then let OpenSSL decode. */
    struct buf norm = BUF_INIT;
    for (const char *p = text; *p; p++) {
        char c = *p;
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (c == '=')
            break;
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '+' || c == '/')) {
            buf_free(&norm);
            return NULL;
        }
        buf_putc(&norm, c);
    }
    size_t data_len = norm.len;
    if (data_len % 4 == 1) {
        buf_free(&norm);
        return NULL;
    }
    while (norm.len % 4)
        buf_putc(&norm, '=');
    uint8_t *out = xmalloc(norm.len / 4 * 3 + 1);
    int n = norm.len ? EVP_DecodeBlock(out, (unsigned char *)norm.data, (int)norm.len) : 0;
    buf_free(&norm);
    if (n < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts padding as zero bytes: take them off again. */
    n -= (int)((4 - data_len % 4) % 4);
    out[n] = '\0';
    if (out_len)
        *out_len = (size_t)n;
    return out;
}

char *codec_uuid4(void)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) {
        fprintf(stderr, "harrier: OpenSSL has no random bytes\n");
        abort();
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    return xasprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                     b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                     b[13], b[14], b[15]);
}
