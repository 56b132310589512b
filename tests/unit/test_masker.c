#include "runner/masker.h"

#include "lib/codec.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct masker *masker;

static void setup(void)
{
    masker = masker_new();
}

static void teardown(void)
{
    masker_free(masker);
}

/* Criterion's suite macro, unknown to cppcheck */
// cppcheck-suppress unknownMacro
TestSuite(masker, .init = setup, .fini = teardown);

static void add(const char *value)
{
    masker_add_value(masker, value, strlen(value));
}

static char *mask(const char *text)
{
    return masker_mask(masker, text, strlen(text));
}

static void assert_masks(const char *text, const char *expected)
{
    char *got = mask(text);
    cr_assert_str_eq(got, expected, "masking \"%s\"", text);
    free(got);
}

Test(masker, masks_every_occurrence_and_leaves_other_text)
{
    add("hunter2-secret");
    assert_masks("pw=hunter2-secret and again hunter2-secret.", "pw=*** and again ***.");
    assert_masks("nothing to see here", "nothing to see here");
    assert_masks("hunter2-secre", "hunter2-secre");
}

Test(masker, nothing_registered_copies_text)
{
    assert_masks("plain", "plain");
    assert_masks("", "");
}

Test(masker, empty_value_is_ignored_but_one_character_is_masked)
{
    add("");
    cr_assert_eq(masker_pattern_count(masker), 0);
    /* The official runner has no minimum length: a one-character secret masks every copy. */
    add("x");
    assert_masks("xax", "***a***");
}

Test(masker, short_and_long_values_together)
{
    add("ab");
    add("a-much-longer-secret-value");
    assert_masks("ab a-much-longer-secret-value cab", "*** *** c***");
}

Test(masker, base64_at_each_alignment)
{
    add("user:p4ssw0rd-Secret");
    assert_masks("dXNlcjpwNHNzdzByZC1TZWNyZXQ=", "***");
    assert_masks("c2VyOnA0c3N3MHJkLVNlY3JldA==", "***");
    assert_masks("ZXI6cDRzc3cwcmQtU2VjcmV0", "***");
    /* The secret inside a larger base64 text, whatever the length of what precedes it. */
    const char *prefixes[] = {"", "a", "ab", "abc", "Basic "};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        char plain[128];
        snprintf(plain, sizeof(plain), "%suser:p4ssw0rd-Secret", prefixes[i]);
        char *b64 = codec_base64_encode(plain, strlen(plain));
        char *got = mask(b64);
        cr_assert(strstr(got, "***"), "base64 of \"%s\" (%s) not masked: %s", plain, b64, got);
        cr_assert(strlen(got) <= strlen(prefixes[i]) * 4 / 3 + 3 + 3, "too little masked: %s", got);
        free(got);
        free(b64);
    }
}

Test(masker, url_encoded_form)
{
    add("p@ss w/rd&x");
    assert_masks("https://h/?q=p%40ss%20w%2Frd%26x&y=1", "https://h/?q=***&y=1");
}

Test(masker, json_escaped_form)
{
    add("a\"b\\c\nd\x01");
    assert_masks("{\"v\":\"a\\\"b\\\\c\\nd\\u0001\"}", "{\"v\":\"***\"}");
}

Test(masker, json_escapes_unicode_line_separators)
{
    add("x\xe2\x80\xa8y-long");
    assert_masks("\"x\\u2028y-long\"", "\"***\"");
}

Test(masker, xml_escaped_form)
{
    add("a<b>&'\"c");
    assert_masks("<v>a&lt;b&gt;&amp;&apos;&quot;c</v>", "<v>***</v>");
}

Test(masker, command_line_and_expression_forms)
{
    add("say \"hi\" now");
    add("it's-secret");
    assert_masks("-e X=\"say \\\"hi\\\" now\"", "-e X=\"***\"");
    assert_masks("format('it''s-secret')", "format('***')");
}

Test(masker, value_in_double_quotes_masks_the_inside_when_longer_than_8)
{
    add("\"quoted-secret\"");
    assert_masks("v=quoted-secret", "v=***");
    masker_free(masker);
    masker = masker_new();
    add("\"short1\""); /* 8 characters: not trimmed */
    assert_masks("v=short1", "v=short1");
}

Test(masker, powershell_ampersand_sections)
{
    add("secretpart1&secretpart2&secretpart3");
    assert_masks("[secretpart1&secretpart2&]", "[***]");
    assert_masks("[secretpart3]", "[***]");
    masker_free(masker);
    masker = masker_new();
    add("secretpart1&+secretpart2&secretpart3");
    assert_masks("[secretpart1&+]", "[***]");
    assert_masks("[ecretpart2&secretpart3]", "[***]");
    masker_free(masker);
    masker = masker_new();
    add("ab&cd"); /* sections shorter than 6 characters are not masked alone */
    assert_masks("ab& cd", "ab& cd");
}

Test(masker, overlapping_and_touching_matches_merge_into_one_mask)
{
    add("abcdef");
    add("defghi");
    assert_masks("xabcdefghiy", "x***y");
    assert_masks("abcdefabcdef", "***");
    assert_masks("abcdef abcdef", "*** ***");
}

Test(masker, duplicates_are_registered_once)
{
    add("same-secret-value");
    size_t n = masker_pattern_count(masker);
    add("same-secret-value");
    cr_assert_eq(masker_pattern_count(masker), n);
    /* base64, shifted base64 twice, and the rest equal to the value itself */
    cr_assert_eq(n, 4);
}

Test(masker, multi_line_secret_masked_whole_and_line_by_line)
{
    const char *value = "line-one-secret\r\n  line-two-secret  \n";
    masker_add_secret(masker, value, strlen(value), false);
    assert_masks("line-one-secret\r\n  line-two-secret  \n", "***");
    assert_masks("> line-two-secret", "> ***");
    assert_masks("line-one-secret", "***");
}

Test(masker, secret_variables_are_trimmed)
{
    const char *value = "  padded-secret \n";
    masker_add_secret(masker, value, strlen(value), true);
    assert_masks("[padded-secret]", "[***]");
}

static char *stream_all(const char *const *chunks, size_t count, struct buf *after_first)
{
    struct masker_stream stream;
    struct buf out = BUF_INIT;
    masker_stream_init(&stream, masker);
    for (size_t i = 0; i < count; i++) {
        masker_stream_feed(&stream, chunks[i], strlen(chunks[i]), &out);
        if (i == 0 && after_first)
            buf_puts(after_first, buf_cstr(&out));
    }
    masker_stream_flush(&stream, &out);
    masker_stream_free(&stream);
    return buf_steal(&out);
}

Test(masker, secret_split_across_two_writes)
{
    add("split-secret-value");
    const char *chunks[] = {"hello split-sec", "ret-value world\n"};
    struct buf first = BUF_INIT;
    char *got = stream_all(chunks, 2, &first);
    cr_assert_str_eq(got, "hello *** world\n");
    /* Only the bytes that could still begin the secret were held back. */
    cr_assert_str_eq(first.data, "hello ");
    buf_free(&first);
    free(got);
}

Test(masker, stream_emits_bytes_that_cannot_begin_a_secret)
{
    add("zzz-secret-value");
    const char *chunks[] = {"plain text without it ", "z", "z", "z-secret-value!"};
    struct buf first = BUF_INIT;
    char *got = stream_all(chunks, 4, &first);
    cr_assert_str_eq(first.data, "plain text without it ");
    cr_assert_str_eq(got, "plain text without it ***!");
    buf_free(&first);
    free(got);
}

Test(masker, stream_prefix_that_never_completes_is_emitted_at_flush)
{
    add("never-completed-secret");
    const char *chunks[] = {"a never-compl", "eted"};
    char *got = stream_all(chunks, 2, NULL);
    cr_assert_str_eq(got, "a never-completed");
    free(got);
}

Test(masker, stream_merges_touching_masks_across_writes)
{
    add("abcdef");
    const char *chunks[] = {"xabcdef", "abcdefy"};
    char *got = stream_all(chunks, 2, NULL);
    cr_assert_str_eq(got, "x***y");
    free(got);
}

Test(masker, stream_with_multi_line_secret_across_writes)
{
    const char *value = "first-line-of-key\nsecond-line-of-key";
    masker_add_secret(masker, value, strlen(value), true);
    const char *chunks[] = {"-----\nfirst-line-of-key\nsec", "ond-line-of-key\n-----\n"};
    char *got = stream_all(chunks, 2, NULL);
    cr_assert_str_eq(got, "-----\n***\n-----\n");
    free(got);
}

/* Any way of cutting a text into writes gives what masking it whole gives. */
Test(masker, stream_equals_whole_masking_for_random_cuts)
{
    const char *values[] = {"abc", "abcabd", "secret-one", "one-two", "x\"y", "tok_12345"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        add(values[i]);
    const char alphabet[] = "abcdestonwx-y\"_12345\n";
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char text[200];
        size_t len = (size_t)(rand_r(&seed) % 199);
        for (size_t i = 0; i < len; i++)
            text[i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
        text[len] = '\0';
        if (round % 3 == 0 && len > 20) /* plant whole values too */
            memcpy(text + rand_r(&seed) % (len - 12), values[rand_r(&seed) % 6], 3);
        char *whole = masker_mask(masker, text, len);
        struct masker_stream stream;
        struct buf out = BUF_INIT;
        masker_stream_init(&stream, masker);
        for (size_t pos = 0; pos < len;) {
            size_t n = 1 + (size_t)(rand_r(&seed) % 9);
            n = n > len - pos ? len - pos : n;
            masker_stream_feed(&stream, text + pos, n, &out);
            pos += n;
        }
        masker_stream_flush(&stream, &out);
        cr_assert_str_eq(buf_cstr(&out), whole, "text \"%s\"", text);
        masker_stream_free(&stream);
        buf_free(&out);
        free(whole);
    }
}

/* The scan samples the text; check that no alignment of a value inside a text is missed. */
Test(masker, finds_values_at_every_offset_and_length)
{
    const char *values[] = {"abcd", "0123456789abcdefghij", "the-longest-secret-of-all-here"};
    for (size_t i = 0; i < 3; i++)
        add(values[i]);
    for (size_t v = 0; v < 3; v++) {
        for (size_t off = 0; off < 40; off++) {
            char text[128];
            memset(text, '.', off);
            strcpy(text + off, values[v]);
            strcat(text, "..");
            char *got = mask(text);
            char expected[128];
            memset(expected, '.', off);
            strcpy(expected + off, "***..");
            cr_assert_str_eq(got, expected);
            free(got);
        }
    }
}

Test(masker, value_added_later_is_masked_from_then_on)
{
    add("first-secret");
    assert_masks("first-secret second-secret", "*** second-secret");
    add("second-secret");
    assert_masks("first-secret second-secret", "*** ***");
    /* shorter values change how the text is sampled: everything must still be found */
    add("tiny");
    assert_masks("first-secret tiny second-secret", "*** *** ***");
    add("ab");
    assert_masks("first-secret tiny second-secret ab", "*** *** *** ***");
}

/* A slow reference: every occurrence of every registered form found with memmem, merged. */
static char *reference_mask(const char *const *forms, size_t form_count, const char *text)
{
    size_t len = strlen(text);
    char *covered = calloc(len + 1, 1); /* inside an occurrence */
    for (size_t f = 0; f < form_count; f++) {
        size_t flen = strlen(forms[f]);
        for (const char *p = text; (p = memmem(p, len - (size_t)(p - text), forms[f], flen)); p++) {
            size_t start = (size_t)(p - text);
            memset(covered + start, 1, flen);
        }
    }
    struct buf out = BUF_INIT;
    for (size_t i = 0; i < len; i++) {
        if (!covered[i])
            buf_putc(&out, text[i]);
        else if (i == 0 || !covered[i - 1])
            buf_puts(&out, "***");
    }
    free(covered);
    return buf_steal(&out);
}

Test(masker, agrees_with_a_naive_search)
{
    unsigned seed = 777;
    const char alphabet[] = "abcd-_";
    for (int round = 0; round < 300; round++) {
        masker_free(masker);
        masker = masker_new();
        char values[6][16];
        const char *forms[6];
        for (int v = 0; v < 6; v++) {
            size_t n = 1 + (size_t)(rand_r(&seed) % 12);
            for (size_t i = 0; i < n; i++)
                values[v][i] = alphabet[rand_r(&seed) % 6];
            values[v][n] = '\0';
            forms[v] = values[v];
            masker_add_value(masker, values[v], n);
        }
        /* in this alphabet only the raw values occur (the encoded forms have other
         * characters, or equal the value) */
        char text[300];
        size_t len = (size_t)(rand_r(&seed) % 299);
        for (size_t i = 0; i < len; i++)
            text[i] = alphabet[rand_r(&seed) % 6];
        text[len] = '\0';
        char *got = mask(text);
        char *expected = reference_mask(forms, 6, text);
        cr_assert_str_eq(got, expected, "text \"%s\"", text);
        free(got);
        free(expected);
    }
}
