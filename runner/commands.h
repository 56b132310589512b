/* commands: the handlers behind harrier's subcommands and their option tables, one pair per
 * command; runner/cli.c lists them. Each handler returns the process exit code. */
#ifndef HARRIER_RUNNER_COMMANDS_H
#define HARRIER_RUNNER_COMMANDS_H

#include "runner/cli.h"
#include "sandbox/sandbox.h"

extern const struct cli_option command_config_options[];
extern const struct cli_option command_remove_options[];
extern const struct cli_option command_run_options[];
extern const struct cli_option command_exec_options[];
extern const struct cli_option command_worker_options[];

int command_config(const struct cli_command *cmd, struct cli_args *args);
int command_remove(const struct cli_command *cmd, struct cli_args *args);
int command_run(const struct cli_command *cmd, struct cli_args *args);
int command_exec(const struct cli_command *cmd, struct cli_args *args);
int command_worker(const struct cli_command *cmd, struct cli_args *args);

/* Reads --sandbox (NULL = the default, process, with fallback allowed). */
int command_sandbox_level(const struct cli_command *cmd, const char *value,
                          enum sandbox_level *level, bool *fallback);

#endif
