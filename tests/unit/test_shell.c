#include "runner/shell.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *path = "/usr/local/bin:/usr/bin:/bin";

Test(shell, bash_as_github_runs_it)
{
    struct shell_command c;
    struct error err = {0};
    cr_assert_eq(shell_resolve("bash", path, "/t/s.sh", &c, &err), 0, "%s", err.message);
    cr_assert(strstr(c.argv[0], "/bash") != NULL);
    const char *want[] = {"--noprofile", "--norc", "-eo", "pipefail", "/t/s.sh"};
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(c.argv[i + 1], want[i]);
    cr_assert_null(c.argv[6]);
    cr_assert_str_eq(c.extension, ".sh");
    shell_command_free(&c);
}

Test(shell, default_is_bash_when_present_else_sh)
{
    struct shell_command c;
    struct error err = {0};
    /* As GitHub, with no `shell:` at all: `bash -e {0}`, without pipefail. */
    cr_assert_eq(shell_resolve(NULL, path, "/t/s.sh", &c, &err), 0);
    cr_assert(strstr(c.argv[0], "/bash") != NULL);
    cr_assert_str_eq(c.argv[1], "-e");
    cr_assert_str_eq(c.argv[2], "/t/s.sh");
    cr_assert_null(c.argv[3]);
    shell_command_free(&c);
    char dir[] = "/tmp/harrier-shell-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char *cmd = NULL;
    cr_assert_neq(asprintf(&cmd, "ln -s /bin/sh %s/sh", dir), -1);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
    cr_assert_eq(shell_resolve("", dir, "/t/s.sh", &c, &err), 0, "%s", err.message);
    cr_assert(strstr(c.argv[0], "/sh") != NULL);
    cr_assert_str_eq(c.argv[1], "-e");
    cr_assert_str_eq(c.argv[2], "/t/s.sh");
    shell_command_free(&c);
}

Test(shell, python_falls_back_to_python3_and_says_when_missing)
{
    struct shell_command c;
    struct error err = {0};
    cr_assert_eq(shell_resolve("python", path, "/t/s.py", &c, &err), 0, "%s", err.message);
    cr_assert(strstr(c.argv[0], "python") != NULL);
    cr_assert_str_eq(c.argv[1], "/t/s.py");
    cr_assert_str_eq(c.extension, ".py");
    shell_command_free(&c);
    cr_assert_lt(shell_resolve("python", "/nonexistent", "/t/s.py", &c, &err), 0);
    cr_assert_str_eq(err.message, "python (nor python3) not found in PATH: install it, or pick "
                                  "another `shell:` for this step");
}

Test(shell, custom_template)
{
    struct shell_command c;
    struct error err = {0};
    cr_assert_eq(shell_resolve("perl -w {0} \"two words\"", path, "/t/s", &c, &err), 0, "%s",
                 err.message);
    cr_assert(strstr(c.argv[0], "/perl") != NULL);
    cr_assert_str_eq(c.argv[1], "-w");
    cr_assert_str_eq(c.argv[2], "/t/s");
    cr_assert_str_eq(c.argv[3], "two words");
    shell_command_free(&c);
    cr_assert_lt(shell_resolve("perl -w", path, "/t/s", &c, &err), 0);
    cr_assert(strstr(err.message, "format string containing '{0}'") != NULL);
}
