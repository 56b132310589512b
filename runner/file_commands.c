#include "runner/file_commands.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char FILE_COMMANDS_SUMMARY_TOO_LARGE[] =
    "$GITHUB_STEP_SUMMARY upload aborted, supports content up to a size of %dk, got %dk. For "
    "more information see: "
    "https://docs.github.com/actions/using-workflows/"
    "workflow-commands-for-github-actions#adding-a-markdown-summary";

const char FILE_COMMANDS_FAILED[] = "Unable to process file command '%s' successfully.";

static const char BOM[] = "\xEF\xBB\xBF";

static void skip_bom(const char **text, size_t *len)
{
    if (*len >= 3 && memcmp(*text, BOM, 3) == 0) {
        *text += 3;
        *len -= 3;
    }
}

/* A line of text from *pos, as the official runner's ReadLine on Linux: up to LF, which is not
 * part of it. Returns false at the end; *has_newline says whether the line ended with LF. */
struct line {
    const char *start;
    size_t len;
    bool has_newline;
};

static bool read_line(const char *text, size_t len, size_t *pos, struct line *line)
{
    if (*pos >= len)
        return false;
    const char *start = text + *pos;
    const char *lf = memchr(start, '\n', len - *pos);
    line->start = start;
    line->len = lf ? (size_t)(lf - start) : len - *pos;
    line->has_newline = lf != NULL;
    *pos += line->len + (lf ? 1 : 0);
    return true;
}

static char *dup_value(const char *value, size_t len)
{
    char *copy = xmalloc(len + 1);
    memcpy(copy, value, len);
    copy[len] = '\0';
    return copy;
}

static void pairs_push(struct file_command_pairs *out, const char *name, size_t name_len,
                       const char *value, size_t value_len)
{
    out->items = xrealloc(out->items, (out->count + 1) * sizeof(*out->items));
    out->items[out->count++] = (struct file_command_pair){xstrndup(name, name_len),
                                                          dup_value(value, value_len), value_len};
}

void file_command_pairs_free(struct file_command_pairs *pairs)
{
    for (size_t i = 0; i < pairs->count; i++) {
        free(pairs->items[i].name);
        free(pairs->items[i].value);
    }
    free(pairs->items);
    pairs->items = NULL;
    pairs->count = 0;
}

static const char *find(const char *s, size_t len, const char *needle)
{
    return memmem(s, len, needle, strlen(needle));
}

/* NAME<<DELIMITER: the value runs to the line equal to DELIMITER, without the LF before it. */
static int parse_heredoc(const char *text, size_t len, size_t *pos, int *line_number,
                         const struct line *header, const char *marker,
                         struct file_command_pairs *out, struct error *err)
{
    size_t name_len = (size_t)(marker - header->start);
    const char *delimiter = marker + 2;
    size_t delimiter_len = header->len - name_len - 2;
    if (name_len == 0 || delimiter_len == 0)
        return error_set_at(err, EINVAL, NULL, *line_number, 0,
                            "Invalid format '%.*s'. Name must not be empty and delimiter must "
                            "not be empty",
                            (int)header->len, header->start);
    size_t start = *pos, end = *pos;
    struct line line;
    for (;;) {
        (*line_number)++;
        if (!read_line(text, len, pos, &line))
            return error_set_at(err, EINVAL, NULL, *line_number, 0,
                                "Invalid value. Matching delimiter not found '%.*s'",
                                (int)delimiter_len, delimiter);
        if (line.len == delimiter_len && memcmp(line.start, delimiter, delimiter_len) == 0)
            break;
        if (!line.has_newline)
            return error_set_at(err, EINVAL, NULL, *line_number, 0,
                                "Invalid value. EOF marker missing new line.");
        end = *pos - 1;
    }
    pairs_push(out, header->start, name_len, text + start, end > start ? end - start : 0);
    return 0;
}

/* EnvFileKeyValuePairs. */
int file_commands_parse_pairs(const char *text, size_t len, struct file_command_pairs *out,
                              struct error *err)
{
    memset(out, 0, sizeof(*out));
    skip_bom(&text, &len);
    size_t pos = 0;
    int line_number = 0;
    struct line line;
    while (read_line(text, len, &pos, &line)) {
        line_number++;
        if (line.len == 0)
            continue;
        const char *equals = memchr(line.start, '=', line.len);
        const char *heredoc = find(line.start, line.len, "<<");
        int rc = 0;
        if (equals && (!heredoc || equals < heredoc)) {
            size_t name_len = (size_t)(equals - line.start);
            /* The official runner means to refuse an empty name here (its message says so) but
             * tests the whole line instead; an empty name then fails later. Refuse it now. */
            if (name_len == 0)
                rc = error_set_at(err, EINVAL, NULL, line_number, 0,
                                  "Invalid format '%.*s'. Name must not be empty", (int)line.len,
                                  line.start);
            else
                pairs_push(out, line.start, name_len, equals + 1, line.len - name_len - 1);
        } else if (heredoc) {
            rc = parse_heredoc(text, len, &pos, &line_number, &line, heredoc, out, err);
        } else {
            rc = error_set_at(err, EINVAL, NULL, line_number, 0, "Invalid format '%.*s'",
                              (int)line.len, line.start);
        }
        if (rc < 0)
            return rc; /* the pairs before it stay: the official runner has applied them */
    }
    return 0;
}

const char *file_commands_env_refusal(const char *name)
{
    if (strcasecmp(name, "NODE_OPTIONS") == 0)
        return "Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command.";
    return NULL;
}

/* File.ReadAllLines: lines end at LF, CR LF or CR. */
char **file_commands_parse_path(const char *text, size_t len, size_t *count)
{
    skip_bom(&text, &len);
    char **list = xcalloc(1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && text[end] != '\n' && text[end] != '\r')
            end++;
        if (end > i) {
            list = xrealloc(list, (n + 2) * sizeof(char *));
            list[n++] = xstrndup(text + i, end - i);
            list[n] = NULL;
        }
        if (end + 1 < len && text[end] == '\r' && text[end + 1] == '\n')
            end++;
        i = end + 1;
    }
    *count = n;
    return list;
}

void file_commands_path_add(struct file_commands_path_list *list, const char *dir)
{
    size_t kept = 0;
    for (size_t i = 0; i < list->count; i++) {
        if (strcmp(list->dirs[i], dir) == 0)
            free(list->dirs[i]);
        else
            list->dirs[kept++] = list->dirs[i];
    }
    list->dirs = xrealloc(list->dirs, (kept + 1) * sizeof(char *));
    list->dirs[kept] = xstrdup(dir);
    list->count = kept + 1;
}

void file_commands_path_list_free(struct file_commands_path_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->dirs[i]);
    free(list->dirs);
    list->dirs = NULL;
    list->count = 0;
}

char *file_commands_path_join(const struct file_commands_path_list *list, const char *current_path)
{
    struct buf prepend = BUF_INIT;
    for (size_t i = list->count; i-- > 0;) {
        buf_puts(&prepend, list->dirs[i]);
        if (i)
            buf_putc(&prepend, ':');
    }
    if (!list->count)
        return xstrdup(current_path ? current_path : "");
    if (!current_path || !*current_path)
        return buf_steal(&prepend);
    /* PathUtil.PrependPath: nothing to do when PATH already starts with them. */
    buf_putc(&prepend, ':');
    if (strncmp(current_path, prepend.data, prepend.len) == 0) {
        buf_free(&prepend);
        return xstrdup(current_path);
    }
    buf_puts(&prepend, current_path);
    return buf_steal(&prepend);
}

int file_commands_check_summary(uint64_t size, struct error *err)
{
    if (size > FILE_COMMANDS_SUMMARY_LIMIT)
        return error_set(err, EFBIG, FILE_COMMANDS_SUMMARY_TOO_LARGE,
                         FILE_COMMANDS_SUMMARY_LIMIT / 1024, (int)(size / 1024));
    return 0;
}
