#include "lib/codec.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

Test(codec, sha256_matches_known_vectors)
{
    char *h = codec_sha256_hex("abc", 3);
    cr_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    free(h);
    h = codec_sha256_hex("", 0);
    cr_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    free(h);
}

Test(codec, sha256_of_file_equals_sha256_of_bytes)
{
    char path[] = "/tmp/harrier-codec-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "abc", 3), 3);
    close(fd);
    struct error err = {0};
    char *h = codec_sha256_file_hex(path, &err);
    unlink(path);
    cr_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    free(h);
    cr_assert_null(codec_sha256_file_hex("/nonexistent/x", &err));
    cr_assert(strstr(err.message, "/nonexistent/x") != NULL);
}

Test(codec, hex_round_trip)
{
    char *hex = codec_hex_encode("\x00\xff\x10", 3);
    cr_assert_str_eq(hex, "00ff10");
    uint8_t out[3];
    cr_assert_eq(codec_hex_decode("00FF10", out), 3);
    cr_assert_eq(memcmp(out, "\x00\xff\x10", 3), 0);
    cr_assert_eq(codec_hex_decode("0g", out), -1);
    cr_assert_eq(codec_hex_decode("abc", out), -1);
    free(hex);
}

Test(codec, base64_all_alignments_both_alphabets)
{
    const char *inputs[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *expected[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *e = codec_base64_encode(inputs[i], strlen(inputs[i]));
        cr_assert_str_eq(e, expected[i]);
        size_t n;
        uint8_t *d = codec_base64_decode(e, &n);
        cr_assert_not_null(d);
        cr_assert_eq(n, strlen(inputs[i]));
        cr_assert_eq(memcmp(d, inputs[i], n), 0);
        free(d);
        free(e);
    }
    char *u = codec_base64url_encode("\xfb\xff", 2);
    cr_assert_str_eq(u, "-_8");
    size_t n;
    uint8_t *d = codec_base64_decode(u, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(memcmp(d, "\xfb\xff", 2), 0);
    free(d);
    free(u);
    cr_assert_null(codec_base64_decode("ab$c", &n));
    cr_assert_null(codec_base64_decode("abcde", &n));
}

Test(codec, uuid4_is_a_random_lowercase_guid)
{
    char *a = codec_uuid4(), *b = codec_uuid4();
    cr_assert_eq(strlen(a), 36);
    cr_assert_eq(a[8], '-');
    cr_assert_eq(a[14], '4');
    cr_assert(strchr("89ab", a[19]) != NULL);
    for (const char *p = a; *p; p++)
        cr_assert(strchr("0123456789abcdef-", *p) != NULL);
    cr_assert_str_neq(a, b);
    free(a);
    free(b);
}
