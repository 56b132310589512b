#include "runner/file_commands.h"

#include "lib/buf.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static struct file_command_pairs pairs;
static struct error err;

static int parse(const char *text)
{
    error_clear(&err);
    file_command_pairs_free(&pairs);
    return file_commands_parse_pairs(text, strlen(text), &pairs, &err);
}

static void teardown(void)
{
    file_command_pairs_free(&pairs);
}

/* Criterion's suite macro, unknown to cppcheck */
// cppcheck-suppress unknownMacro
TestSuite(file_commands, .fini = teardown);

static void assert_pair(size_t i, const char *name, const char *value)
{
    cr_assert_lt(i, pairs.count);
    cr_assert_str_eq(pairs.items[i].name, name);
    cr_assert_str_eq(pairs.items[i].value, value);
    cr_assert_eq(pairs.items[i].value_len, strlen(value));
}

Test(file_commands, simple_pairs_and_empty_lines)
{
    cr_assert_eq(parse("A=1\n\nB=two words\nC=\nD=x=y\n"), 0);
    cr_assert_eq(pairs.count, 4);
    assert_pair(0, "A", "1");
    assert_pair(1, "B", "two words");
    assert_pair(2, "C", "");
    assert_pair(3, "D", "x=y");
}

Test(file_commands, empty_file_and_missing_final_newline)
{
    cr_assert_eq(parse(""), 0);
    cr_assert_eq(pairs.count, 0);
    cr_assert_eq(parse("LAST=no newline"), 0);
    assert_pair(0, "LAST", "no newline");
}

Test(file_commands, byte_order_mark_is_skipped)
{
    cr_assert_eq(parse("\xEF\xBB\xBFNAME=v\n"), 0);
    assert_pair(0, "NAME", "v");
}

Test(file_commands, heredoc_values)
{
    cr_assert_eq(parse("MY_ENV<<EOF\nhello\none\nEOF\n"
                       "MY_ENV_2<<<EOF\nhello\ntwo\n<EOF\n"
                       "MY_ENV_3<<EOF\nhello\n\nthree\n\nEOF\n"
                       "MY_ENV_4<<EOF\nhello=four\nEOF\n"
                       "MY_ENV_5<<EOF\n EOF\nEOF\n"
                       "EMPTY<<EOF\nEOF\n"
                       "A=B<<C\n"),
                 0);
    cr_assert_eq(pairs.count, 7);
    assert_pair(0, "MY_ENV", "hello\none");
    assert_pair(1, "MY_ENV_2", "hello\ntwo");
    assert_pair(2, "MY_ENV_3", "hello\n\nthree\n");
    assert_pair(3, "MY_ENV_4", "hello=four");
    assert_pair(4, "MY_ENV_5", " EOF");
    assert_pair(5, "EMPTY", "");
    assert_pair(6, "A", "B<<C");
}

Test(file_commands, heredoc_delimiter_at_end_without_newline)
{
    cr_assert_eq(parse("X<<END\nvalue\nEND"), 0);
    assert_pair(0, "X", "value");
}

Test(file_commands, heredoc_keeps_nul_bytes)
{
    const char text[] = "BIN<<E\na\0b\nE\n";
    cr_assert_eq(file_commands_parse_pairs(text, sizeof(text) - 1, &pairs, &err), 0);
    cr_assert_eq(pairs.items[0].value_len, 3);
    cr_assert_eq(memcmp(pairs.items[0].value, "a\0b", 3), 0);
}

Test(file_commands, crlf_lines_keep_their_cr_as_on_linux)
{
    cr_assert_eq(parse("A=1\r\nH<<EOF\r\nx\r\ny\r\nEOF\r\n"), 0);
    assert_pair(0, "A", "1\r");
    /* the delimiter line carries the CR too, so CRLF heredocs still close */
    assert_pair(1, "H", "x\r\ny\r");
}

Test(file_commands, error_missing_delimiter)
{
    cr_assert_lt(parse("OK=1\nMY_ENV<<EOF\nline one\nline two\n"), 0);
    cr_assert_str_eq(err.message, "Invalid value. Matching delimiter not found 'EOF'");
    cr_assert_eq(err.line, 5);
    cr_assert_eq(pairs.count, 1, "pairs before the bad one are applied, as GitHub does");
    assert_pair(0, "OK", "1");
}

Test(file_commands, error_eof_marker_missing_new_line)
{
    /* the delimiter is "EOF line one": the last line has no newline and is not it */
    cr_assert_lt(parse("MY_ENV<<EOF line one\n line two\n line three EOF"), 0);
    cr_assert_str_eq(err.message, "Invalid value. EOF marker missing new line.");
    cr_assert_eq(err.line, 3);
}

Test(file_commands, error_delimiter_on_the_same_line)
{
    cr_assert_lt(parse("MY_ENV<<EOF line one line two EOF"), 0);
    cr_assert_str_eq(err.message, "Invalid value. Matching delimiter not found 'EOF line one "
                                  "line two EOF'");
}

Test(file_commands, error_empty_name_or_delimiter)
{
    cr_assert_lt(parse("<<EOF\nx\nEOF\n"), 0);
    cr_assert_str_eq(err.message,
                     "Invalid format '<<EOF'. Name must not be empty and delimiter must not be "
                     "empty");
    cr_assert_lt(parse("NAME<<\n"), 0);
    cr_assert_str_eq(err.message, "Invalid format 'NAME<<'. Name must not be empty and "
                                  "delimiter must not be empty");
    cr_assert_lt(parse("=value\n"), 0);
    cr_assert_str_eq(err.message, "Invalid format '=value'. Name must not be empty");
}

Test(file_commands, error_line_without_equals_or_heredoc)
{
    cr_assert_lt(parse("A=1\njust some text\n"), 0);
    cr_assert_str_eq(err.message, "Invalid format 'just some text'");
    cr_assert_eq(err.line, 2);
}

Test(file_commands, env_refuses_node_options)
{
    cr_assert_str_eq(file_commands_env_refusal("node_OPTIONS"),
                     "Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command.");
    cr_assert_null(file_commands_env_refusal("NODE_ENV"));
}

Test(file_commands, path_lines)
{
    size_t count;
    const char text[] = "\xEF\xBB\xBF/opt/a\r\n\n/opt/b\r/opt/c\n";
    char **dirs = file_commands_parse_path(text, sizeof(text) - 1, &count);
    cr_assert_eq(count, 3);
    cr_assert_str_eq(dirs[0], "/opt/a");
    cr_assert_str_eq(dirs[1], "/opt/b");
    cr_assert_str_eq(dirs[2], "/opt/c");
    cr_assert_null(dirs[3]);
    str_list_free(dirs);
}

Test(file_commands, path_prepended_newest_first_without_duplicates)
{
    struct file_commands_path_list list = {0};
    file_commands_path_add(&list, "/a");
    file_commands_path_add(&list, "/b");
    file_commands_path_add(&list, "/a"); /* moves to the front */
    char *path = file_commands_path_join(&list, "/usr/bin:/bin");
    cr_assert_str_eq(path, "/a:/b:/usr/bin:/bin");
    free(path);
    path = file_commands_path_join(&list, "/a:/b:/usr/bin");
    cr_assert_str_eq(path, "/a:/b:/usr/bin", "not prepended twice");
    free(path);
    path = file_commands_path_join(&list, "");
    cr_assert_str_eq(path, "/a:/b", "no trailing ':' that would add the current directory");
    free(path);
    file_commands_path_list_free(&list);
    path = file_commands_path_join(&list, "/usr/bin");
    cr_assert_str_eq(path, "/usr/bin");
    free(path);
}

Test(file_commands, step_summary_size_limit)
{
    cr_assert_eq(file_commands_check_summary(0, &err), 0);
    cr_assert_eq(file_commands_check_summary(1024 * 1024, &err), 0);
    cr_assert_lt(file_commands_check_summary(1024 * 1024 + 1, &err), 0);
    cr_assert_str_eq(err.message,
                     "$GITHUB_STEP_SUMMARY upload aborted, supports content up to a size of "
                     "1024k, got 1024k. For more information see: "
                     "https://docs.github.com/actions/using-workflows/"
                     "workflow-commands-for-github-actions#adding-a-markdown-summary");
    cr_assert_lt(file_commands_check_summary(3 * 1024 * 1024 + 5000, &err), 0);
    cr_assert(strstr(err.message, "got 3076k."));
}
