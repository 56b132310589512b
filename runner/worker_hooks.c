#include "runner/worker_hooks_internal.h"

#include "lib/buf.h"
#include "lib/json.h"
#include "lib/mem.h"
#include "lib/path.h"
#include "runner/events.h"
#include "runner/file_commands.h"
#include "runner/shell.h"
#include "runner/step_commands.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct worker_hooks {
    char *path[WORKER_HOOK_COUNT]; /* NULL: not configured */
    bool done[WORKER_HOOK_COUNT];
};

/* The official runner's names (JobExtension.cs, JobHookProvider.cs, Constants.Hooks): the
 * variable, the step's display name, and what the step's first line calls the hook. The
 * started hook is a pre-job step, the completed hook the last post-job step. */
static const struct {
    const char *variable;
    const char *display_name;
    const char *what;
    enum events_stage stage;
} hook_kinds[WORKER_HOOK_COUNT] = {
    [WORKER_HOOK_JOB_STARTED] = {"ACTIONS_RUNNER_HOOK_JOB_STARTED", "Set up runner",
                                 "job started hook", EVENTS_STAGE_PRE},
    [WORKER_HOOK_JOB_COMPLETED] = {"ACTIONS_RUNNER_HOOK_JOB_COMPLETED", "Complete runner",
                                   "job completed hook", EVENTS_STAGE_POST},
};

/* What a hook's running step points at: no context name (no steps.<id> entry, no outputs, no
 * GITHUB_ACTION), run on always() as JobExtension.cs adds them. */
static const struct job_step hook_steps[WORKER_HOOK_COUNT] = {
    [WORKER_HOOK_JOB_STARTED] = {.id = "__job_started_hook",
                                 .condition = "always()",
                                 .kind = JOB_STEP_SCRIPT},
    [WORKER_HOOK_JOB_COMPLETED] = {.id = "__job_completed_hook",
                                   .condition = "always()",
                                   .kind = JOB_STEP_SCRIPT},
};

/* GetDefaultShellForScript (HostContext.cs) and ScriptHandler.cs: the interpreter by the
 * script's extension, the first of its programs found on PATH, with the plain arguments the
 * docs name ("bash -e {0}", not a run step's --noprofile --norc -o pipefail). The official
 * runner's .js hooks run on its bundled node; harrier's on --node, or the node on PATH. */
static const struct {
    const char *extension;
    const char *programs[2];
    const char *arguments[3]; /* after the program; {0} is the script */
    const char *shown;        /* the arguments as the step's log shows them */
} interpreters[] = {
    {".sh", {"bash", "sh"}, {"-e", "{0}"}, "-e {0}"},
    {".ps1", {"pwsh", "powershell"}, {"-command", ". '{0}'"}, "-command \". '{0}'\""},
    {".js", {"node"}, {"{0}"}, "{0}"},
};

struct worker_hooks *worker_hooks_new(void)
{
    struct worker_hooks *h = NULL;
    for (int i = 0; i < WORKER_HOOK_COUNT; i++) {
        const char *value = getenv(hook_kinds[i].variable);
        if (!value || !*value)
            continue;
        if (!h)
            h = xcalloc(1, sizeof *h);
        /* The script runs in the workspace: a relative path means the worker's folder, where
         * the official runner's existence check looks for it. */
        char cwd[4096];
        h->path[i] =
            value[0] != '/' && getcwd(cwd, sizeof cwd) ? path_join(cwd, value) : xstrdup(value);
    }
    return h;
}

void worker_hooks_free(struct worker_hooks *hooks)
{
    if (!hooks)
        return;
    for (int i = 0; i < WORKER_HOOK_COUNT; i++)
        free(hooks->path[i]);
    free(hooks);
}

/* The official runner keeps both hooks running when the service cancels the job (they run on
 * always()) and cancels both when its listener is stopped, then skips the completed hook
 * (actions/runner#2595). Harrier's worker gets the same SIGINT either way: the started hook is
 * cut short like any step, so that the completed hook gets the time left before the listener's
 * kill deadline; the completed hook, the clean-up, is left to finish. */
bool worker_hook_outlives_cancel(const struct running_step *rs)
{
    return rs->step == &hook_steps[WORKER_HOOK_JOB_COMPLETED];
}

/* The program and arguments for the script, or an error worded as the official runner's. */
static int hook_command(struct worker *w, const char *script, char ***argv, const char **shown,
                        struct error *err)
{
    size_t i = 0, n = sizeof interpreters / sizeof interpreters[0];
    while (i < n && !str_ends_with(script, interpreters[i].extension))
        i++;
    if (i == n)
        return error_set(err, EINVAL,
                         "%s is not a valid path to a script. Make sure it ends in '.sh', '.ps1' "
                         "or '.js'.",
                         script);
    cleanup_free char *search = file_commands_path_join(&w->path, getenv("PATH"));
    const char *last = NULL;
    char *program = NULL;
    for (size_t p = 0; p < 2 && interpreters[i].programs[p] && !program; p++) {
        last = interpreters[i].programs[p];
        if (strcmp(last, "node") == 0 && w->opt->node)
            last = w->opt->node;
        program = shell_which(last, search);
    }
    if (!program)
        return error_set(err, ENOENT, "%s: command not found", last);
    *argv = xcalloc(4, sizeof **argv);
    (*argv)[0] = program;
    for (size_t a = 0; a < 3 && interpreters[i].arguments[a]; a++)
        (*argv)[a + 1] = str_replace_all(interpreters[i].arguments[a], "{0}", script);
    *shown = interpreters[i].shown;
    return 0;
}

/* JobHookProvider.RunHook: the script must exist; it runs in the workspace with the default
 * variables (GITHUB_*, RUNNER_*, the file-command files) but not the workflow's env:, and
 * its workflow and file commands apply as a step's do (GITHUB_ENV and GITHUB_PATH reach the
 * job's later steps). */
static int hook_spawn(struct running_step *rs, const char *script, struct error *err)
{
    struct worker *w = rs->w;
    struct stat st;
    if (stat(script, &st) < 0 || S_ISDIR(st.st_mode))
        return error_set(err, ENOENT, "File doesn't exist: '%s'", script);
    char **argv = NULL;
    const char *shown = NULL;
    if (hook_command(w, script, &argv, &shown, err) < 0)
        return err->code;
    cleanup_free char *group = xasprintf("##[group]Run '%s'", script);
    worker_log_line(w, rs, group);
    cleanup_free char *shell = xasprintf("shell: %s %s", argv[0], shown);
    worker_log_line(w, rs, shell);
    worker_log_line(w, rs, "##[endgroup]");
    struct step_commands_options sco = {
        .enhanced_annotations = true,
        .workspace = w->workspace,
        .repository = json_get_string(json_get(w->contexts, "github"), "repository"),
        .allow_unsecure_commands = step_commands_unsecure_commands_allowed(
            getenv("ACTIONS_ALLOW_UNSECURE_COMMANDS"), NULL),
    };
    rs->commands = step_commands_new(w->masker, &sco);
    int rc = worker_create_file_command_files(rs, err);
    if (rc == 0)
        rc = worker_spawn_process(rs, (const char *const *)argv, w->workspace, err);
    str_list_free(argv);
    return rc;
}

static struct frame *job_frame(struct worker *w)
{
    struct frame *f = w->frame;
    while (f->parent)
        f = f->parent;
    return f;
}

bool worker_hook_start(struct worker *w, enum worker_hook which, enum step_start *started)
{
    struct worker_hooks *h = w->hooks;
    if (!h || !h->path[which] || h->done[which])
        return false;
    h->done[which] = true;
    struct running_step *rs = xcalloc(1, sizeof *rs);
    rs->w = w;
    rs->step = &hook_steps[which];
    rs->stage = hook_kinds[which].stage;
    rs->frame = job_frame(w);
    worker_enter_frame(w, rs->frame);
    rs->number = ++w->step_counter;
    rs->outputs = json_object();
    rs->env = json_object(); /* no workflow or job env:, as the official runner runs hooks */
    rs->display_name = xstrdup(hook_kinds[which].display_name);
    worker_set_action_context(rs);
    events_step_started(w->events, rs->number, rs->step->id, rs->display_name, rs->stage, NULL);
    /* "Log to users so that they know how this step was injected" (JobHookProvider.cs). */
    cleanup_free char *line = xasprintf(
        "A %s has been configured by the self-hosted runner administrator", hook_kinds[which].what);
    worker_log_line(w, rs, line);
    struct error err = {0};
    if (hook_spawn(rs, h->path[which], &err) == 0) {
        w->current = rs;
        *started = STEP_RUNNING;
        return true;
    }
    worker_report_error(w, rs, &err);
    worker_finish_step(rs, EVENTS_FAILURE);
    worker_running_step_free(rs);
    *started = STEP_FINISHED;
    return true;
}
