#include "runner/cli.h"

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "runner/commands.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HARRIER_VERSION
#define HARRIER_VERSION "0.1.0"
#endif

static int cmd_help(const struct cli_command *cmd, struct cli_args *args);
static int cmd_version(const struct cli_command *cmd, struct cli_args *args);

static const struct cli_option no_options[] = {{0}};

static const struct cli_command commands[] = {
    {"config", "register this machine as a runner (as config.sh)",
     "[--url URL --token TOKEN] [options]   |   harrier config remove --token TOKEN",
     "Registers with github.com or GitHub Enterprise Server exactly as the official runner's\n"
     "config.sh does, and writes .runner, .credentials and .credentials_rsaparams.\n"
     "Every option can also be given as ACTIONS_RUNNER_INPUT_<OPTION>.",
     command_config_options, command_config, RUNNER_EXIT_TERMINATED},
    {"remove", "unregister this runner (as config.sh remove)", "--token TOKEN | --pat PAT",
     "Removes the registration from GitHub and deletes the local configuration.",
     command_remove_options, command_remove, RUNNER_EXIT_TERMINATED},
    {"run", "listen for jobs and run them (as run.sh)", "[--jitconfig BLOB] [--once] [options]",
     "Connects to GitHub with the registered credentials, long-polls for jobs and runs each in\n"
     "a sandboxed worker. Exit codes are the official runner's.",
     command_run_options, command_run, RUNNER_EXIT_TERMINATED},
    {"exec", "run a workflow locally, with no GitHub", "[options] [-W FILE]",
     "Reads .github/workflows/*.yml, plans the jobs GitHub would run for the event, and runs\n"
     "them on this machine with embedded artifact and cache services.\n"
     "Exit: 0 when every job succeeded, 1 when a job failed or the run was cancelled,\n"
     "2 for bad usage or an invalid workflow.",
     command_exec_options, command_exec, EXEC_EXIT_USAGE},
    {"worker", "run one job message (internal: started by run and exec)", "[--message FILE]",
     "Reads one job message (GitHub's AgentJobRequestMessage JSON) from standard input or\n"
     "FILE, runs the job and writes events as JSON lines on standard output.",
     command_worker_options, command_worker, EXEC_EXIT_USAGE},
    {"version", "print the version", "", "Prints harrier's version.", no_options, cmd_version,
     EXEC_EXIT_USAGE},
    {"help", "show help for a command", "[COMMAND]", "Shows help for harrier or a command.",
     no_options, cmd_help, EXEC_EXIT_USAGE},
    {0},
};

static const struct cli_command *find_command(const char *name)
{
    for (const struct cli_command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static void print_overview(FILE *out)
{
    fprintf(out, "harrier %s: a GitHub Actions-compatible self-hosted runner\n\n", HARRIER_VERSION);
    fprintf(out, "Usage: harrier COMMAND [options]\n\nCommands:\n");
    for (const struct cli_command *c = commands; c->name; c++)
        fprintf(out, "  %-9s %s\n", c->name, c->summary);
    fprintf(out, "\nRun 'harrier COMMAND --help' for a command's options.\n");
}

static void print_command_help(const struct cli_command *cmd, FILE *out)
{
    fprintf(out, "Usage: harrier %s %s\n\n%s\n", cmd->name, cmd->usage, cmd->description);
    if (!cmd->options[0].name)
        return;
    fprintf(out, "\nOptions:\n");
    for (const struct cli_option *o = cmd->options; o->name; o++) {
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name,
                     o->has_value ? " " : "", o->has_value ? o->value_name : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->has_value ? " " : "",
                     o->has_value ? o->value_name : "");
        fprintf(out, "  %-28s %s\n", left, o->help);
    }
    fprintf(out, "  %-28s %s\n", "-h, --help", "show this help");
}

int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
{
    struct buf msg = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "harrier %s: %s (see 'harrier %s --help')\n", cmd->name, buf_cstr(&msg),
            cmd->name);
    buf_free(&msg);
    return cmd->usage_exit;
}

static int option_index(const struct cli_command *cmd, const char *name, size_t name_len)
{
    for (int i = 0; cmd->options[i].name; i++)
        if (strlen(cmd->options[i].name) == name_len &&
            strncmp(cmd->options[i].name, name, name_len) == 0)
            return i;
    return -1;
}

static int short_index(const struct cli_command *cmd, char c)
{
    for (int i = 0; cmd->options[i].name; i++)
        if (cmd->options[i].short_name == c)
            return i;
    return -1;
}

static void set_value(struct cli_args *args, const struct cli_option *o, int i, const char *v)
{
    if (o->repeatable && args->values[i]) {
        char *joined = xasprintf("%s\n%s", args->values[i], v);
        free(args->owned[i]);
        args->owned[i] = joined;
        args->values[i] = joined;
        return;
    }
    args->values[i] = v;
}

/* ACTIONS_RUNNER_INPUT_<NAME>, matched ignoring case, with '-' taken out of the name as the
 * official runner's argument names have none ("no-default-labels" -> NODEFAULTLABELS). */
static const char *env_value(const char *option)
{
    struct buf want = BUF_INIT;
    buf_puts(&want, "ACTIONS_RUNNER_INPUT_");
    for (const char *p = option; *p; p++)
        if (*p != '-')
            buf_putc(&want, *p);
    extern char **environ;
    const char *found = NULL;
    for (char **e = environ; *e && !found; e++) {
        const char *eq = strchr(*e, '=');
        if (eq && (size_t)(eq - *e) == want.len && strncasecmp(*e, want.data, want.len) == 0)
            found = eq + 1;
    }
    buf_free(&want);
    return found;
}

static int parse_args(const struct cli_command *cmd, int argc, char **argv, struct cli_args *args,
                      bool *want_help)
{
    args->positional = xcalloc((size_t)argc + 1, sizeof *args->positional);
    bool options_done = false;
    for (int a = 0; a < argc; a++) {
        char *arg = argv[a];
        if (options_done || arg[0] != '-' || strcmp(arg, "-") == 0) {
            args->positional[args->positional_count++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            *want_help = true;
            return 0;
        }
        int i;
        const char *inline_value = NULL;
        if (arg[1] == '-') {
            const char *name = arg + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            i = option_index(cmd, name, len);
            inline_value = eq ? eq + 1 : NULL;
        } else {
            i = arg[2] == '\0' ? short_index(cmd, arg[1]) : -1;
        }
        if (i < 0)
            return cli_usage_error(cmd, "unknown option '%s'", arg);
        const struct cli_option *o = &cmd->options[i];
        if (!o->has_value) {
            if (inline_value)
                return cli_usage_error(cmd, "option --%s takes no value", o->name);
            args->values[i] = "true";
            continue;
        }
        if (!inline_value) {
            if (a + 1 >= argc)
                return cli_usage_error(cmd, "option --%s needs a value (%s)", o->name,
                                       o->value_name);
            inline_value = argv[++a];
        }
        set_value(args, o, i, inline_value);
    }
    for (int i = 0; cmd->options[i].name; i++) {
        const struct cli_option *o = &cmd->options[i];
        const char *v = o->from_env && !args->values[i] ? env_value(o->name) : NULL;
        if (!v)
            continue;
        if (!o->has_value && !str_eq_nocase(v, "true") && !str_eq_nocase(v, "false"))
            return cli_usage_error(cmd, "ACTIONS_RUNNER_INPUT_%s must be true or false", o->name);
        if (!o->has_value && str_eq_nocase(v, "false"))
            continue;
        args->values[i] = o->has_value ? v : "true";
    }
    return 0;
}

static void args_free(struct cli_args *args)
{
    for (int i = 0; i < CLI_MAX_OPTIONS; i++)
        free(args->owned[i]);
    free(args->positional);
}

const char *cli_get(const struct cli_command *cmd, const struct cli_args *args, const char *name)
{
    int i = option_index(cmd, name, strlen(name));
    return i < 0 ? NULL : args->values[i];
}

bool cli_flag(const struct cli_command *cmd, const struct cli_args *args, const char *name)
{
    return cli_get(cmd, args, name) != NULL;
}

static int cmd_version(const struct cli_command *cmd, struct cli_args *args)
{
    (void)cmd;
    (void)args;
    printf("harrier %s\n", HARRIER_VERSION);
    return 0;
}

static int cmd_help(const struct cli_command *cmd, struct cli_args *args)
{
    if (args->positional_count == 0) {
        print_overview(stdout);
        return 0;
    }
    const struct cli_command *target = find_command(args->positional[0]);
    if (!target)
        return cli_usage_error(cmd, "unknown command '%s'", args->positional[0]);
    print_command_help(target, stdout);
    return 0;
}

int cli_main(int argc, char **argv)
{
    const char *level = getenv("HARRIER_LOG");
    if (level && log_level_parse(level) >= 0)
        log_set_level((enum log_level)log_level_parse(level));
    if (argc < 2) {
        print_overview(stderr);
        return EXEC_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        name = "help";
    else if (strcmp(name, "--version") == 0)
        name = "version";
    const struct cli_command *cmd = find_command(name);
    if (!cmd) {
        fprintf(stderr, "harrier: unknown command '%s' (see 'harrier help')\n", name);
        return EXEC_EXIT_USAGE;
    }
    /* `harrier config remove` is the official runner's spelling of `remove`. */
    if (strcmp(cmd->name, "config") == 0 && argc > 2 && strcmp(argv[2], "remove") == 0) {
        cmd = find_command("remove");
        argv++;
        argc--;
    }
    struct cli_args args = {0};
    bool want_help = false;
    int rc = parse_args(cmd, argc - 2, argv + 2, &args, &want_help);
    if (rc == 0 && want_help)
        print_command_help(cmd, stdout);
    else if (rc == 0)
        rc = cmd->run(cmd, &args);
    args_free(&args);
    return rc;
}
