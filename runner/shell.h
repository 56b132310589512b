/* shell: GitHub's `shell:` names for run steps and the command line each stands for
 * (bash, sh, python, pwsh, powershell, cmd, or a custom template with {0}), the default
 * shell rule (bash when on PATH, else sh), and the script file's extension. */
#ifndef HARRIER_RUNNER_SHELL_H
#define HARRIER_RUNNER_SHELL_H

#include "lib/error.h"

struct shell_command {
    char **argv;           /* NULL-terminated; argv[0] resolved to a full path */
    const char *extension; /* of the script file: ".sh", ".py", ".ps1"… */
};

/* Resolves shell (NULL or "" = the default rule) against path (a PATH value) for a script at
 * script_path (written by the caller with the extension returned by shell_extension()).
 * Returns 0, or negative with err saying which program is missing. */
int shell_resolve(const char *shell, const char *path, const char *script_path,
                  struct shell_command *out, struct error *err);
void shell_command_free(struct shell_command *cmd);

/* The script file extension for shell (before resolving). */
const char *shell_extension(const char *shell);

/* Looks program up in path (':'-separated); returns the full path (caller frees) or NULL. */
char *shell_which(const char *program, const char *path);

#endif
