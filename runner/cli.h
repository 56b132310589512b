/* cli: harrier's command line. Finds the subcommand in a table, parses its options from a
 * table of its own (also read from ACTIONS_RUNNER_INPUT_<NAME> where the official runner
 * does), and maps failures to each command's exit codes. The only place that prints an
 * error from below, once. */
#ifndef HARRIER_RUNNER_CLI_H
#define HARRIER_RUNNER_CLI_H

#include <stdbool.h>

/* Exit codes of `harrier exec`. */
enum { EXEC_EXIT_OK = 0, EXEC_EXIT_JOB_FAILED = 1, EXEC_EXIT_USAGE = 2 };

/* Exit codes of `config`, `remove` and `run`: the official runner's (PROTOCOL.md §2.1),
 * because supervisors act on them; 2 means "retry", never "usage". */
enum {
    RUNNER_EXIT_OK = 0,
    RUNNER_EXIT_TERMINATED = 1,
    RUNNER_EXIT_RETRYABLE = 2,
    RUNNER_EXIT_SESSION_CONFLICT = 5,
    RUNNER_EXIT_VERSION_DEPRECATED = 7,
};

enum { CLI_MAX_OPTIONS = 40 };

/* One option of a command. Flags (has_value false) take no argument on the command line
 * and "true"/"false" from the environment. */
struct cli_option {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 when none */
    bool has_value;
    bool repeatable; /* values joined with '\n' in order */
    bool from_env;   /* also ACTIONS_RUNNER_INPUT_<NAME> (official runner parity) */
    const char *value_name;
    const char *help;
};

struct cli_args {
    const char *values[CLI_MAX_OPTIONS]; /* NULL when not given; "true" for a flag */
    char *owned[CLI_MAX_OPTIONS];        /* joined repeatable values */
    char **positional;
    int positional_count;
};

struct cli_command;
typedef int (*cli_handler)(const struct cli_command *cmd, struct cli_args *args);

struct cli_command {
    const char *name;
    const char *summary;
    const char *usage; /* after "harrier <name> " */
    const char *description;
    const struct cli_option *options; /* terminated by {0} */
    cli_handler run;
    int usage_exit; /* exit code for bad usage */
};

int cli_main(int argc, char **argv);

/* The value of option `name` of cmd, or NULL. */
const char *cli_get(const struct cli_command *cmd, const struct cli_args *args, const char *name);
bool cli_flag(const struct cli_command *cmd, const struct cli_args *args, const char *name);

/* Prints "harrier <cmd>: message" and a hint, returns cmd->usage_exit. */
int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
