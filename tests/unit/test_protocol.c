/* protocol/: --url classification, connectionData locations, wrapped errors, the runner key
 * (RSAParameters, JWT client assertions checked with OpenSSL's verifier, RSA-OAEP, AES-CBC). */
#include "lib/codec.h"
#include "lib/json.h"
#include "protocol/runner_key.h"
#include "protocol/runner_service.h"

#include <criterion/criterion.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>

Test(protocol_url, hosted_hosts_and_the_ghes_switch)
{
    unsetenv("GITHUB_ACTIONS_RUNNER_FORCE_GHES");
    cr_assert(runner_url_is_hosted("https://github.com/o/r"));
    cr_assert(runner_url_is_hosted("https://WWW.GitHub.com/o"));
    cr_assert(runner_url_is_hosted("https://acme.ghe.com/o"));
    cr_assert(runner_url_is_hosted("http://x.ghe.localhost/o"));
    cr_assert_not(runner_url_is_hosted("https://ghes.example.com/o/r"));
    cr_assert_not(runner_url_is_hosted("https://notgithub.com/o"));
    setenv("GITHUB_ACTIONS_RUNNER_FORCE_GHES", "true", 1);
    cr_assert_not(runner_url_is_hosted("https://github.com/o/r"));
    unsetenv("GITHUB_ACTIONS_RUNNER_FORCE_GHES");
}

Test(protocol_url, api_root_keeps_the_port_for_ghes)
{
    struct error err = {0};
    char *a = runner_url_api_root("https://github.com/octo/repo", &err);
    cr_assert_str_eq(a, "https://api.github.com");
    free(a);
    a = runner_url_api_root("http://127.0.0.1:8123/octo/repo", &err);
    cr_assert_str_eq(a, "http://127.0.0.1:8123/api/v3");
    free(a);
    a = runner_url_api_root("ftp://example.com/x", &err);
    cr_assert_null(a);
    cr_assert(strstr(err.message, "http"));
}

Test(protocol_url, escape_keeps_only_unreserved)
{
    char *e = runner_url_escape("my runner/1~a_b.c-d+é");
    cr_assert_str_eq(e, "my%20runner%2F1~a_b.c-d%2B%C3%A9");
    free(e);
}

static struct vss_locations *sample_locations(void)
{
    const char *text =
        "{\"locationServiceData\":{\"serviceDefinitions\":["
        "{\"identifier\":\"134E239E-2DF3-4794-A6F6-24F1F19EC8DC\",\"resourceVersion\":1,"
        "\"relativePath\":\"_apis/distributedtask/pools/{poolId}/sessions/{sessionId}\"},"
        "{\"identifier\":\"e298ef32-5878-4cab-993c-043836571f42\",\"resourceVersion\":2,"
        "\"relativePath\":\"/_apis/v1/Agent/{poolId}/{agentId}\"},"
        "{\"identifier\":\"83597576-cc2c-453c-bea6-2882ae6a1653\",\"resourceVersion\":0,"
        "\"relativePath\":\"ignored/{x}\"}]}}";
    struct error err = {0};
    json_t *data = json_load_text(text, strlen(text), NULL, &err);
    struct vss_locations *l = vss_locations_parse(data, &err);
    json_decref(data);
    cr_assert_not_null(l, "%s", err.message);
    return l;
}

Test(protocol_locations, segments_without_values_are_dropped)
{
    struct vss_locations *l = sample_locations();
    struct error err = {0};
    const char *route[] = {"POOLID", "3", NULL};
    char *u = vss_locations_url(l, "http://h:1/t/x/", VSS_LOC_SESSIONS, route, NULL, &err);
    cr_assert_str_eq(u, "http://h:1/t/x/_apis/distributedtask/pools/3/sessions");
    free(u);
    const char *route2[] = {"poolId", "3", "sessionId", "a b", NULL};
    u = vss_locations_url(l, "http://h:1/t/x", VSS_LOC_SESSIONS, route2, "q=1", &err);
    cr_assert_str_eq(u, "http://h:1/t/x/_apis/distributedtask/pools/3/sessions/a%20b?q=1");
    free(u);
    /* A template with a leading slash is still relative to the base; the base's query goes
     * after the path. */
    const char *route3[] = {"poolId", "0", NULL};
    u = vss_locations_url(l, "http://h/t/x?tenant=1", VSS_LOC_AGENTS, route3, "agentName=n", &err);
    cr_assert_str_eq(u, "http://h/t/x/_apis/v1/Agent/0?tenant=1&agentName=n");
    free(u);
    vss_locations_free(l);
}

Test(protocol_locations, unadvertised_and_version_0_locations_are_errors)
{
    struct vss_locations *l = sample_locations();
    struct error err = {0};
    char *u = vss_locations_url(l, "http://h/", VSS_LOC_TIMELINES, NULL, NULL, &err);
    cr_assert_null(u);
    cr_assert(strstr(err.message, "does not advertise"));
    vss_locations_free(l);
}

static void response_with(struct http_response *r, const char *body)
{
    memset(r, 0, sizeof *r);
    r->status = 409;
    buf_puts(&r->body, body);
}

Test(protocol_errors, type_key_then_type_name)
{
    struct http_response r;
    response_with(&r, "{\"typeKey\":\"TaskAgentSessionConflictException\",\"errorCode\":0}");
    char *k = vss_error_type_key(&r);
    cr_assert_str_eq(k, "TaskAgentSessionConflictException");
    free(k);
    http_response_free(&r);
    response_with(&r, "{\"TypeName\":\"GitHub.DistributedTask.WebApi.AccessDeniedException, "
                      "GitHub.DistributedTask.WebApi\",\"ErrorCode\":\"1\"}");
    k = vss_error_type_key(&r);
    cr_assert_str_eq(k, "AccessDeniedException");
    cr_assert_eq(vss_error_code(&r), 1);
    free(k);
    http_response_free(&r);
    response_with(&r, "<html>bad gateway</html>");
    cr_assert_null(vss_error_type_key(&r));
    http_response_free(&r);
}

Test(protocol_errors, message_of_a_wrapped_exception)
{
    struct http_response r;
    response_with(&r, "{\"typeKey\":\"UnresolvableActionDownloadInfoException\","
                      "\"message\":\"Unable to resolve action `octo/x@v9`\"}");
    char *m = vss_error_message(&r);
    cr_assert_str_eq(m, "Unable to resolve action `octo/x@v9`");
    free(m);
    http_response_free(&r);
    response_with(&r, "not json");
    cr_assert_null(vss_error_message(&r));
    http_response_free(&r);
}

/* §8.2: the answer is keyed by nameWithOwner@ref as written; the token is optional. */
Test(protocol_action_download_info, parse_keeps_keys_tokens_and_package_details)
{
    const char *body =
        "{\"actions\": {"
        "\"Octo/Tool@v1\": {\"nameWithOwner\": \"Octo/Tool\", \"resolvedNameWithOwner\": "
        "\"octo/tool\", \"ref\": \"v1\", \"resolvedSha\": \"aaaa\", \"tarballUrl\": "
        "\"http://h/t/aaaa\", \"zipballUrl\": \"http://h/z/aaaa\", \"authentication\": "
        "{\"token\": \"ghs_x\", \"expiresAt\": \"2030-01-01T00:00:00Z\"}, "
        "\"packageDetails\": null},"
        "\"octo/pkg@v2\": {\"NameWithOwner\": \"octo/pkg\", \"Ref\": \"v2\", "
        "\"ResolvedSha\": \"bbbb\", \"TarballUrl\": \"http://h/t/bbbb\", "
        "\"packageDetails\": {\"version\": \"2.0.1\", \"manifestDigest\": \"sha256:cc\"}}"
        "}}";
    struct vss_action_download_infos infos;
    struct error err = {0};
    cr_assert_eq(vss_action_download_infos_parse(body, strlen(body), &infos, &err), 0, "%s",
                 err.message);
    cr_assert_eq(infos.count, 2);
    const struct vss_action_download_info *a = &infos.items[0], *b = &infos.items[1];
    if (strcmp(a->key, "Octo/Tool@v1") != 0) {
        const struct vss_action_download_info *t = a;
        a = b;
        b = t;
    }
    cr_assert_str_eq(a->key, "Octo/Tool@v1");
    cr_assert_str_eq(a->resolved_name_with_owner, "octo/tool");
    cr_assert_str_eq(a->resolved_sha, "aaaa");
    cr_assert_str_eq(a->tarball_url, "http://h/t/aaaa");
    cr_assert_str_eq(a->token, "ghs_x");
    cr_assert_null(a->package_version);
    cr_assert_str_eq(b->key, "octo/pkg@v2");
    cr_assert_null(b->token, "no authentication: the caller uses the job's token");
    cr_assert_str_eq(b->resolved_name_with_owner, "octo/pkg");
    cr_assert_str_eq(b->package_version, "2.0.1");
    cr_assert_str_eq(b->package_digest, "sha256:cc");
    vss_action_download_infos_free(&infos);

    const char *bad = "{\"actions\": {\"o/r@v1\": {\"nameWithOwner\": \"o/r\"}}}";
    cr_assert_lt(vss_action_download_infos_parse(bad, strlen(bad), &infos, &err), 0);
    cr_assert(strstr(err.message, "o/r@v1"), "%s", err.message);
    const char *none = "{\"value\": []}";
    cr_assert_lt(vss_action_download_infos_parse(none, strlen(none), &infos, &err), 0);
}

static struct runner_key *shared_key(void)
{
    static struct runner_key *key;
    struct error err = {0};
    if (!key)
        cr_assert_eq(runner_key_generate(&key, &err), 0, "%s", err.message);
    return key;
}

static size_t b64_len(const json_t *o, const char *k)
{
    size_t n = 0;
    uint8_t *b = codec_base64_decode(json_get_string(o, k), &n);
    free(b);
    return n;
}

Test(runner_key, params_round_trip_with_net_widths)
{
    struct runner_key *key = shared_key();
    json_t *p = runner_key_params_new(key);
    cr_assert_eq(b64_len(p, "modulus"), 256);
    cr_assert_eq(b64_len(p, "d"), 256);
    cr_assert_eq(b64_len(p, "inverseQ"), 128);
    cr_assert_str_eq(json_get_string(p, "exponent"), "AQAB");
    /* Read back, with PascalCase names as other writers use. */
    json_t *pascal = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v)
    {
        char name[32];
        snprintf(name, sizeof name, "%s", k);
        name[0] = (char)(name[0] - 32);
        json_object_set(pascal, name, v);
    }
    struct runner_key *back = NULL;
    struct error err = {0};
    cr_assert_eq(runner_key_from_params(pascal, &back, &err), 0, "%s", err.message);
    char *m1 = runner_key_modulus_base64(key), *m2 = runner_key_modulus_base64(back);
    cr_assert_str_eq(m1, m2);
    free(m1);
    free(m2);
    runner_key_free(back);
    json_decref(pascal);
    json_decref(p);
}

Test(runner_key, missing_member_is_named)
{
    json_t *p = json_pack("{s:s}", "modulus", "AQAB");
    struct runner_key *k = NULL;
    struct error err = {0};
    cr_assert_lt(runner_key_from_params(p, &k, &err), 0);
    cr_assert(strstr(err.message, "'exponent'"));
    json_decref(p);
}

static json_t *jwt_part(const char *jwt, int index)
{
    const char *start = jwt;
    for (int i = 0; i < index; i++)
        start = strchr(start, '.') + 1;
    size_t len = strcspn(start, ".");
    char *part = strndup(start, len);
    size_t n = 0;
    uint8_t *bytes = codec_base64_decode(part, &n);
    free(part);
    json_t *v = json_loadb((const char *)bytes, n, 0, NULL);
    free(bytes);
    return v;
}

static bool jwt_verifies(const struct runner_key *key, const char *jwt, bool pss)
{
    json_t *params = runner_key_params_new(key);
    struct runner_key *copy = NULL;
    struct error err = {0};
    runner_key_from_params(params, &copy, &err);
    json_decref(params);
    const char *last = strrchr(jwt, '.');
    size_t sig_len = 0;
    uint8_t *sig = codec_base64_decode(last + 1, &sig_len);
    /* Verify with a PEM round trip of the public key through OpenSSL. */
    char *mod = runner_key_modulus_base64(key);
    size_t mlen = 0;
    uint8_t *mbytes = codec_base64_decode(mod, &mlen);
    BIGNUM *n = BN_bin2bn(mbytes, (int)mlen, NULL), *e = BN_new();
    BN_set_word(e, 65537);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_BN(bld, "n", n);
    OSSL_PARAM_BLD_push_BN(bld, "e", e);
    OSSL_PARAM *op = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *fctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *pub = NULL;
    EVP_PKEY_fromdata_init(fctx);
    EVP_PKEY_fromdata(fctx, &pub, EVP_PKEY_PUBLIC_KEY, op);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pub);
    if (pss) {
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32);
    }
    int ok = EVP_DigestVerify(md, sig, sig_len, (const uint8_t *)jwt, (size_t)(last - jwt));
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pub);
    EVP_PKEY_CTX_free(fctx);
    OSSL_PARAM_free(op);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(mbytes);
    free(mod);
    free(sig);
    runner_key_free(copy);
    return ok == 1;
}

Test(runner_key, jwt_rs256_and_ps256_verify_and_carry_the_claims)
{
    struct runner_key *key = shared_key();
    struct error err = {0};
    for (int pss = 0; pss < 2; pss++) {
        char *jwt = runner_key_jwt_new(key, "client-1", "http://h/t/_apis/oauth2/token", pss,
                                       1700000000, &err);
        cr_assert_not_null(jwt, "%s", err.message);
        json_t *h = jwt_part(jwt, 0), *c = jwt_part(jwt, 1);
        cr_assert_str_eq(json_string_value(json_object_get(h, "alg")), pss ? "PS256" : "RS256");
        cr_assert_str_eq(json_string_value(json_object_get(c, "sub")), "client-1");
        cr_assert_str_eq(json_string_value(json_object_get(c, "iss")), "client-1");
        cr_assert_str_eq(json_string_value(json_object_get(c, "aud")),
                         "http://h/t/_apis/oauth2/token");
        cr_assert_eq(json_integer_value(json_object_get(c, "nbf")), 1700000000);
        cr_assert_eq(json_integer_value(json_object_get(c, "exp")), 1700000300);
        cr_assert_null(json_object_get(c, "iat"));
        cr_assert_eq(strlen(json_string_value(json_object_get(c, "jti"))), 36);
        cr_assert(jwt_verifies(key, jwt, pss));
        cr_assert_not(jwt_verifies(key, jwt, !pss), "a PS256 signature is not an RS256 one");
        json_decref(h);
        json_decref(c);
        free(jwt);
    }
}

Test(runner_key, oaep_with_sha1_and_sha256)
{
    struct runner_key *key = shared_key();
    struct error err = {0};
    uint8_t secret[32];
    for (int i = 0; i < 32; i++)
        secret[i] = (uint8_t)(i * 7);
    for (int sha256 = 0; sha256 < 2; sha256++) {
        uint8_t *ct = NULL, *pt = NULL;
        size_t ct_len = 0, pt_len = 0;
        cr_assert_eq(runner_key_encrypt(key, secret, 32, sha256, &ct, &ct_len, &err), 0);
        cr_assert_eq(ct_len, 256);
        cr_assert_eq(runner_key_decrypt(key, ct, ct_len, sha256, &pt, &pt_len, &err), 0);
        cr_assert_eq(pt_len, 32);
        cr_assert_eq(memcmp(pt, secret, 32), 0);
        free(pt);
        /* The other hash does not decrypt it. */
        cr_assert_lt(runner_key_decrypt(key, ct, ct_len, !sha256, &pt, &pt_len, &err), 0);
        free(ct);
    }
}

Test(runner_key, aes_cbc_known_answer_and_round_trip)
{
    uint8_t key[32], iv[16];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 16; i++)
        iv[i] = (uint8_t)(16 + i);
    /* Produced by python3-cryptography: a BOM-prefixed message, AES-256-CBC, PKCS#7. */
    size_t ct_len = 0, pt_len = 0;
    uint8_t *ct = codec_base64_decode("0LjBq+6r+hWO/C1kLaefyXpG+kiQ5DKPciYt7uJomH8=", &ct_len);
    uint8_t *pt = NULL;
    struct error err = {0};
    cr_assert_eq(runner_aes_cbc_decrypt(key, 32, iv, 16, ct, ct_len, &pt, &pt_len, &err), 0, "%s",
                 err.message);
    cr_assert_eq(pt_len, 22);
    cr_assert_eq(memcmp(pt, "\xEF\xBB\xBF{\"messageType\":\"x\"}", 22), 0);
    free(pt);
    free(ct);
    for (size_t kl = 16; kl <= 32; kl += 8) {
        uint8_t *enc = NULL, *dec = NULL;
        size_t el = 0, dl = 0;
        cr_assert_eq(
            runner_aes_cbc_encrypt(key, kl, iv, (const uint8_t *)"hello", 5, &enc, &el, &err), 0);
        cr_assert_eq(el, 16);
        cr_assert_eq(runner_aes_cbc_decrypt(key, kl, iv, 16, enc, el, &dec, &dl, &err), 0);
        cr_assert_eq(dl, 5);
        free(enc);
        free(dec);
    }
    cr_assert_lt(runner_aes_cbc_decrypt(key, 20, iv, 16, key, 16, &pt, &pt_len, &err), 0);
    cr_assert(strstr(err.message, "20 bytes"));
}
