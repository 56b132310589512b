/* The local-mode commands: exec (plan and run a workflow) and worker (run one job). */
#include "runner/commands.h"

#include "lib/path.h"
#include "runner/dotenv.h"
#include "runner/exec.h"
#include "runner/job_message.h"
#include "runner/worker.h"

#include <stdio.h>
#include "lib/buf.h"
#include "lib/mem.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct cli_option command_exec_options[] = {
    {"workflow", 'W', true, false, false, "FILE", "run this workflow file"},
    {"job", 'j', true, false, false, "JOB", "run only this job (and what it needs)"},
    {"event", 0, true, false, false, "NAME", "event that triggers the run (default: push)"},
    {"eventpath", 'e', true, false, false, "FILE", "event payload JSON"},
    {"secret", 's', true, true, false, "K=V", "a secret (repeatable)"},
    {"secret-file", 0, true, false, false, "FILE", "secrets from a K=V file"},
    {"var", 0, true, true, false, "K=V", "a configuration variable (repeatable)"},
    {"input", 0, true, true, false, "K=V", "a workflow_dispatch input (repeatable)"},
    {"matrix", 0, true, true, false, "K:V", "run only matrix combinations with K=V"},
    {"jobs", 0, true, false, false, "N", "jobs to run at once (default: cores)"},
    {"list", 'l', false, false, false, NULL, "list the jobs and stop"},
    {"graph", 'g', false, false, false, NULL, "draw the job graph and stop"},
    {"dry-run", 'n', false, false, false, NULL, "plan and show, run nothing"},
    {"logs-dir", 0, true, false, false, "DIR", "write a log file per step into DIR"},
    {"json", 0, false, false, false, NULL, "print the raw event stream"},
    {"messages-dir", 0, true, false, false, "DIR", "also write each job message (JSON) there"},
    {"needs", 0, true, false, false, "FILE",
     "jobs done elsewhere: {job: {result, outputs}} (JSON)"},
    {"sandbox", 0, true, false, false, "LEVEL", "none, process (default) or strict"},
    {"work", 0, true, false, false, "DIR", "jobs' work folders (default: ~/.cache/harrier/work)"},
    {"var-file", 0, true, false, false, "FILE", "configuration variables from a K=V file"},
    {"verbose", 'v', false, false, false, NULL, "show each step's script and debug lines"},
    {"actions-url", 0, true, false, false, "URL", "where actions come from ({owner} {repo} {ref})"},
    {"node", 0, true, false, false, "PATH", "node for JavaScript actions (default: on PATH)"},
    {"offline", 0, false, false, false, NULL, "use only the action cache"},
    {"no-checkout-copy", 0, false, false, false, NULL, "never copy the tree for actions/checkout"},
    {0},
};

const struct cli_option command_worker_options[] = {
    {"message", 0, true, false, false, "FILE", "read the job message from FILE (default: stdin)"},
    {"work", 0, true, false, false, "DIR", "the work folder (default: ./_work)"},
    {"name", 0, true, false, false, "NAME", "the runner's name (runner.name)"},
    {"sandbox", 0, true, false, false, "LEVEL", "none, process (default) or strict"},
    {"actions-cache", 0, true, false, false, "DIR", "the action cache (default: WORK/_actions)"},
    {"checkout", 0, true, false, false, "DIR", "the local checkout (for actions/checkout)"},
    {"actions-url", 0, true, false, false, "URL", "where actions come from ({owner} {repo} {ref})"},
    {"node", 0, true, false, false, "PATH", "node for JavaScript actions (default: on PATH)"},
    {"offline", 0, false, false, false, NULL, "use only the action cache"},
    {"no-checkout-copy", 0, false, false, false, NULL, "never copy the tree for actions/checkout"},
    {0},
};

/* Adds each "K=V" line of a repeatable flag's joined value to object. */
static int add_pairs(const struct cli_command *cmd, const char *joined, const char *flag,
                     json_t *object)
{
    if (!joined)
        return 0;
    size_t n;
    char **pairs = str_split(joined, '\n', &n);
    struct error err = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (dotenv_parse_pair(pairs[i], flag, object, &err) < 0)
            rc = cli_usage_error(cmd, "%s", err.message);
    str_list_free(pairs);
    return rc;
}

static int add_file(const struct cli_command *cmd, const char *path, json_t *object)
{
    if (!path)
        return 0;
    struct error err = {0};
    cleanup_free char *text = path_read_file(path, NULL, &err);
    if (!text || dotenv_parse(text, path, object, &err) < 0) {
        char line[ERROR_MESSAGE_MAX + ERROR_WHERE_MAX + 32];
        return cli_usage_error(cmd, "%s", error_format(&err, line, sizeof line));
    }
    return 0;
}

/* --matrix k:v pairs. */
static int add_matrix_filters(const struct cli_command *cmd, const char *joined, json_t *object)
{
    if (!joined)
        return 0;
    size_t n;
    char **pairs = str_split(joined, '\n', &n);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *colon = strchr(pairs[i], ':');
        if (!colon || colon == pairs[i]) {
            rc = cli_usage_error(cmd, "--matrix '%s' must look like KEY:VALUE", pairs[i]);
            break;
        }
        *colon = '\0';
        json_object_set_new(object, pairs[i], json_string(colon + 1));
    }
    str_list_free(pairs);
    return rc;
}

int command_exec(const struct cli_command *cmd, struct cli_args *args)
{
    if (args->positional_count > 0)
        return cli_usage_error(cmd, "unexpected argument '%s'", args->positional[0]);
    json_t *secrets = json_object(), *vars = json_object(), *inputs = json_object();
    json_t *matrix = json_object();
    struct exec_options o = {
        .workflow_file = cli_get(cmd, args, "workflow"),
        .job = cli_get(cmd, args, "job"),
        .event_name = cli_get(cmd, args, "event") ? cli_get(cmd, args, "event") : "push",
        .event_path = cli_get(cmd, args, "eventpath"),
        .secrets = secrets,
        .vars = vars,
        .inputs = inputs,
        .matrix_filter = matrix,
        .list = cli_flag(cmd, args, "list"),
        .graph = cli_flag(cmd, args, "graph"),
        .dry_run = cli_flag(cmd, args, "dry-run"),
        .json = cli_flag(cmd, args, "json"),
        .verbose = cli_flag(cmd, args, "verbose"),
        .logs_dir = cli_get(cmd, args, "logs-dir"),
        .messages_dir = cli_get(cmd, args, "messages-dir"),
        .needs_path = cli_get(cmd, args, "needs"),
        .work_dir = cli_get(cmd, args, "work"),
        .actions_url = cli_get(cmd, args, "actions-url"),
        .node = cli_get(cmd, args, "node"),
        .offline = cli_flag(cmd, args, "offline"),
        .no_checkout_copy = cli_flag(cmd, args, "no-checkout-copy"),
        .color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR"),
    };
    int rc = add_file(cmd, cli_get(cmd, args, "secret-file"), secrets);
    if (rc == 0)
        rc = add_pairs(cmd, cli_get(cmd, args, "secret"), "--secret", secrets);
    if (rc == 0)
        rc = add_file(cmd, cli_get(cmd, args, "var-file"), vars);
    if (rc == 0)
        rc = add_pairs(cmd, cli_get(cmd, args, "var"), "--var", vars);
    if (rc == 0)
        rc = add_pairs(cmd, cli_get(cmd, args, "input"), "--input", inputs);
    if (rc == 0)
        rc = add_matrix_filters(cmd, cli_get(cmd, args, "matrix"), matrix);
    const char *jobs = cli_get(cmd, args, "jobs");
    if (rc == 0 && jobs) {
        char *end;
        long n = strtol(jobs, &end, 10);
        if (*end || n < 1 || n > 1024)
            rc = cli_usage_error(cmd, "--jobs must be a number from 1 to 1024, not '%s'", jobs);
        o.max_jobs = (int)n;
    }
    if (rc == 0)
        rc = command_sandbox_level(cmd, cli_get(cmd, args, "sandbox"), &o.sandbox_level,
                                   &o.sandbox_fallback);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (rc == 0 && n <= 0)
        rc = cli_usage_error(cmd, "cannot find harrier's own binary (/proc/self/exe)");
    if (rc == 0) {
        self[n] = '\0';
        o.self_exe = self;
        rc = exec_run(&o);
    }
    json_decref(secrets);
    json_decref(vars);
    json_decref(inputs);
    json_decref(matrix);
    return rc;
}

/* The sandbox level from --sandbox; process by default, falling back (with one line saying
 * why) only when the admin did not ask for a level. */
int command_sandbox_level(const struct cli_command *cmd, const char *value,
                          enum sandbox_level *level, bool *fallback)
{
    *fallback = value == NULL;
    int parsed = sandbox_level_parse(value ? value : "process");
    if (parsed < 0)
        return cli_usage_error(cmd, "--sandbox must be none, process or strict, not '%s'", value);
    *level = (enum sandbox_level)parsed;
    return 0;
}

int command_worker(const struct cli_command *cmd, struct cli_args *args)
{
    const char *file = cli_get(cmd, args, "message");
    struct error err = {0};
    size_t len = 0;
    char *text = path_read_file(file ? file : "/dev/stdin", &len, &err);
    if (!text) {
        fprintf(stderr, "harrier worker: %s\n", err.message);
        return EXEC_EXIT_USAGE;
    }
    struct job_message *message = NULL;
    int rc = job_message_decode(text, len, &message, &err);
    free(text);
    if (rc < 0) {
        char line[ERROR_MESSAGE_MAX + ERROR_WHERE_MAX + 32];
        fprintf(stderr, "harrier worker: %s\n", error_format(&err, line, sizeof line));
        return EXEC_EXIT_USAGE;
    }
    /* Steps run in other folders: every path handed to them must be absolute. */
    const char *work = cli_get(cmd, args, "work") ? cli_get(cmd, args, "work") : "_work";
    char cwd[4096];
    cleanup_free char *work_root =
        work[0] == '/' || !getcwd(cwd, sizeof cwd) ? xstrdup(work) : path_join(cwd, work);
    struct worker_options options = {
        .work_root = work_root,
        .runner_name = cli_get(cmd, args, "name"),
        .events_fd = STDOUT_FILENO,
        .actions_cache = cli_get(cmd, args, "actions-cache"),
        .checkout_dir = cli_get(cmd, args, "checkout"),
        .actions_url = cli_get(cmd, args, "actions-url"),
        .node = cli_get(cmd, args, "node"),
        .offline = cli_flag(cmd, args, "offline"),
        .no_checkout_copy = cli_flag(cmd, args, "no-checkout-copy"),
    };
    if (command_sandbox_level(cmd, cli_get(cmd, args, "sandbox"), &options.sandbox_level,
                              &options.sandbox_fallback) < 0) {
        job_message_free(message);
        return EXEC_EXIT_USAGE;
    }
    bool succeeded = false;
    rc = worker_run(message, &options, &succeeded, &err);
    job_message_free(message);
    return rc < 0 || !succeeded ? EXEC_EXIT_JOB_FAILED : EXEC_EXIT_OK;
}
