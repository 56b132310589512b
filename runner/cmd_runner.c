/* The runner-mode commands: config, remove, run (PROTOCOL.md §2–4). */
#include "runner/commands.h"

#include <stdio.h>

const struct cli_option command_config_options[] = {
    {"url", 0, true, false, true, "URL", "repository, organization or enterprise URL"},
    {"token", 0, true, false, true, "TOKEN", "registration token"},
    {"pat", 0, true, false, true, "PAT", "personal access token (instead of --token)"},
    {"name", 0, true, false, true, "NAME", "runner name (default: host name)"},
    {"labels", 0, true, false, true, "LIST", "extra labels, comma-separated"},
    {"no-default-labels", 0, false, false, true, NULL, "do not add self-hosted, Linux, X64"},
    {"runnergroup", 0, true, false, true, "GROUP", "runner group (default: Default)"},
    {"work", 0, true, false, true, "DIR", "work folder (default: _work)"},
    {"ephemeral", 0, false, false, true, NULL, "take one job, then unregister"},
    {"replace", 0, false, false, true, NULL, "replace a runner of the same name"},
    {"unattended", 0, false, false, true, NULL, "never prompt"},
    {"disableupdate", 0, false, false, true, NULL, "never self-update"},
    {0},
};

const struct cli_option command_remove_options[] = {
    {"token", 0, true, false, true, "TOKEN", "removal token"},
    {"pat", 0, true, false, true, "PAT", "personal access token (instead of --token)"},
    {"unattended", 0, false, false, true, NULL, "never prompt"},
    {0},
};

const struct cli_option command_run_options[] = {
    {"jitconfig", 0, true, false, true, "BLOB", "just-in-time configuration; runs one job"},
    {"once", 0, false, false, true, NULL, "run one job, then exit"},
    {"slots", 0, true, false, false, "N", "run up to N jobs at once (N registrations)"},
    {"sandbox", 0, true, false, false, "LEVEL", "none, process (default) or strict"},
    {0},
};

int command_config(const struct cli_command *cmd, struct cli_args *args)
{
    (void)args;
    fprintf(stderr, "harrier %s: runner mode is not built yet; use 'harrier exec' for now\n",
            cmd->name);
    return RUNNER_EXIT_TERMINATED;
}

int command_remove(const struct cli_command *cmd, struct cli_args *args)
{
    return command_config(cmd, args);
}

int command_run(const struct cli_command *cmd, struct cli_args *args)
{
    return command_config(cmd, args);
}
