#include "runner/shell.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The official runner's shells on Linux (ScriptHandlerHelpers.cs). */
static const struct {
    const char *name;
    const char *programs[3]; /* tried in order: Debian has python3, not python */
    const char *arguments;   /* {0} is the script path */
    const char *extension;
} shells[] = {
    {"bash", {"bash"}, "--noprofile --norc -eo pipefail {0}", ".sh"},
    {"sh", {"sh"}, "-e {0}", ".sh"},
    {"python", {"python", "python3"}, "{0}", ".py"},
    {"pwsh", {"pwsh"}, "-command \". '{0}'\"", ".ps1"},
    {"powershell", {"powershell", "pwsh"}, "-command \". '{0}'\"", ".ps1"},
    {"cmd", {"cmd"}, "/D /E:ON /V:OFF /S /C \"CALL \"{0}\"\"", ".cmd"},
};

char *shell_which(const char *program, const char *path)
{
    if (strchr(program, '/'))
        return access(program, X_OK) == 0 ? xstrdup(program) : NULL;
    size_t n;
    char **dirs = str_split(path ? path : "", ':', &n);
    char *found = NULL;
    for (size_t i = 0; i < n && !found; i++) {
        char *candidate = xasprintf("%s/%s", *dirs[i] ? dirs[i] : ".", program);
        if (access(candidate, X_OK) == 0)
            found = candidate;
        else
            free(candidate);
    }
    str_list_free(dirs);
    return found;
}

static int find_shell(const char *name)
{
    for (size_t i = 0; i < sizeof shells / sizeof shells[0]; i++)
        if (strcmp(shells[i].name, name) == 0)
            return (int)i;
    return -1;
}

const char *shell_extension(const char *shell)
{
    if (!shell || !*shell)
        return ".sh";
    int i = find_shell(shell);
    return i >= 0 ? shells[i].extension : ".sh";
}

/* Splits a command line on spaces, keeping double-quoted parts together (as the official
 * runner splits a custom shell's first word from its arguments). */
static void split_words(const char *s, struct buf *word, char ***argv, size_t *argc)
{
    bool quoted = false, any = false;
    for (const char *p = s;; p++) {
        if (*p == '\0' || (*p == ' ' && !quoted)) {
            if (any) {
                *argv = xrealloc(*argv, (*argc + 2) * sizeof **argv);
                (*argv)[(*argc)++] = buf_steal(word);
                (*argv)[*argc] = NULL;
            }
            buf_reset(word);
            any = false;
            if (!*p)
                break;
            continue;
        }
        if (*p == '"') {
            quoted = !quoted;
            any = true;
            continue;
        }
        buf_putc(word, *p);
        any = true;
    }
}

static char *substitute(const char *text, const char *script_path)
{
    return str_replace_all(text, "{0}", script_path);
}

/* The program and its arguments (with {0} already replaced) for the step's shell. */
static int resolve_program(const char *shell, const char *path, const char *script_path,
                           char **program, char **arguments, const char **extension,
                           struct error *err)
{
    if (!shell || !*shell) {
        /* GitHub's default on Linux, with no `shell:` anywhere: `bash -e {0}` (no pipefail,
         * no --noprofile: only an explicit `shell: bash` gets those), else `sh -e {0}`. */
        *program = shell_which("bash", path);
        if (!*program)
            *program = shell_which("sh", path);
        if (!*program)
            return error_set(err, ENOENT,
                             "neither bash nor sh is in PATH: install one, or "
                             "name a shell with `shell:`");
        *arguments = substitute("-e {0}", script_path);
        *extension = ".sh";
        return 0;
    }
    int i = find_shell(shell);
    if (i >= 0) {
        for (size_t p = 0; p < 3 && shells[i].programs[p] && !*program; p++)
            *program = shell_which(shells[i].programs[p], path);
        if (!*program)
            return error_set(err, ENOENT,
                             "%s not found in PATH: install it, or pick another `shell:` for "
                             "this step",
                             strcmp(shell, "python") == 0 ? "python (nor python3)" : shell);
        *arguments = substitute(shells[i].arguments, script_path);
        *extension = shells[i].extension;
        return 0;
    }
    /* A custom shell: "program args {0}"; the template must name the script. */
    if (!strstr(shell, "{0}"))
        return error_set(err, EINVAL,
                         "Invalid shell option. Shell must be a valid built-in (bash, sh, "
                         "python, pwsh, powershell, cmd) or a format string containing '{0}'");
    const char *space = strchr(shell, ' ');
    cleanup_free char *first = xstrndup(shell, space ? (size_t)(space - shell) : strlen(shell));
    *program = shell_which(first, path);
    if (!*program)
        return error_set(err, ENOENT, "%s not found in PATH (from shell '%s')", first, shell);
    *arguments = substitute(space ? space + 1 : "", script_path);
    *extension = "";
    return 0;
}

int shell_resolve(const char *shell, const char *path, const char *script_path,
                  struct shell_command *out, struct error *err)
{
    memset(out, 0, sizeof *out);
    cleanup_free char *arguments = NULL;
    char *program = NULL;
    int rc = resolve_program(shell, path, script_path, &program, &arguments, &out->extension, err);
    if (rc < 0) {
        free(program);
        return rc;
    }
    size_t argc = 1;
    out->argv = xcalloc(2, sizeof *out->argv);
    out->argv[0] = program;
    struct buf word = BUF_INIT;
    split_words(arguments, &word, &out->argv, &argc);
    buf_free(&word);
    return 0;
}

void shell_command_free(struct shell_command *cmd)
{
    str_list_free(cmd->argv);
    cmd->argv = NULL;
}
