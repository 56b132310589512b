/* file_commands: what a step writes to its command files (GITHUB_OUTPUT, GITHUB_ENV,
 * GITHUB_STATE, GITHUB_PATH, GITHUB_STEP_SUMMARY), read from their content as the official
 * runner's FileCommandManager reads them (Linux rules). Pure functions: bytes in; values, or a
 * struct error with GitHub's wording and the line it is about, out. */
#ifndef HARRIER_RUNNER_FILE_COMMANDS_H
#define HARRIER_RUNNER_FILE_COMMANDS_H

#include "lib/error.h"

#include <stddef.h>
#include <stdint.h>

/* GitHub's limit for one step's summary, and its message (%d: the limit in KiB, then the
 * size in KiB, both rounded down). */
enum { FILE_COMMANDS_SUMMARY_LIMIT = 1024 * 1024 };
extern const char FILE_COMMANDS_SUMMARY_TOO_LARGE[];

/* How the executor reports a file the parsers refused (%s: "output", "env", "state", "path"
 * or "step_summary"), as the official runner; the error's message follows on its own line and
 * the step fails. */
extern const char FILE_COMMANDS_FAILED[];

struct file_command_pair {
    char *name;
    char *value; /* NUL-terminated; value_len counts any NUL bytes inside */
    size_t value_len;
};

/* Owned by the caller: file_command_pairs_free. */
struct file_command_pairs {
    struct file_command_pair *items;
    size_t count;
};

/* GITHUB_OUTPUT, GITHUB_ENV and GITHUB_STATE: `NAME=value` lines and heredocs
 * (`NAME<<DELIMITER`, lines, `DELIMITER`), in file order (a later pair with the same name
 * wins when applied). Empty lines are skipped; lines end at LF only, so a CR before it stays
 * in the value, as on the official runner on Linux. A UTF-8 byte-order mark is skipped. On bad
 * input returns negative with err set ("Invalid format '…'", "Invalid value. Matching delimiter
 * not found '…'", "Invalid value. EOF marker missing new line.") and err->line; out then
 * holds the pairs before the bad line, which the official runner has applied by then (it reads
 * the file pair by pair), so the caller applies them too. */
int file_commands_parse_pairs(const char *text, size_t len, struct file_command_pairs *out,
                              struct error *err);
void file_command_pairs_free(struct file_command_pairs *pairs);

/* GITHUB_ENV names the official runner refuses (NODE_OPTIONS, any case): the error annotation's
 * message, or NULL when the name may be set. */
const char *file_commands_env_refusal(const char *name);

/* GITHUB_PATH: its non-empty lines (split at LF, CR LF or CR), in file order. Returns a
 * NULL-terminated list the caller frees with str_list_free (lib/buf.h); *count its length. */
char **file_commands_parse_path(const char *text, size_t len, size_t *count);

/* The job's prepend-path list, as the official runner keeps it: adding a directory removes any
 * earlier copy and appends it; the last added comes first in PATH. */
struct file_commands_path_list {
    char **dirs;
    size_t count;
};
void file_commands_path_add(struct file_commands_path_list *list, const char *dir);
void file_commands_path_list_free(struct file_commands_path_list *list);
/* PATH for a step: the list, newest first, joined with ':' before current_path (left alone
 * when it already starts with them; no trailing ':' when current_path is empty or NULL). Caller
 * frees. */
char *file_commands_path_join(const struct file_commands_path_list *list, const char *current_path);

/* GITHUB_STEP_SUMMARY: 0 when a summary of size bytes can be attached (an empty one is simply
 * skipped by the caller), negative with GitHub's message when it is over the limit. */
int file_commands_check_summary(uint64_t size, struct error *err);

#endif
