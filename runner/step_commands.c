#include "runner/step_commands.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char STEP_COMMANDS_DISABLED_MESSAGE[] =
    "The `%s` command is disabled. Please upgrade to using Environment Files or opt into "
    "unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` environment "
    "variable to `true`. For more information see: "
    "https://github.blog/changelog/2020-10-01-github-actions-deprecating-set-env-and-add-path-"
    "commands/";
const char STEP_COMMANDS_DEPRECATED_MESSAGE[] =
    "The `%s` command is deprecated and will be disabled soon. Please upgrade to using "
    "Environment Files. For more information see: "
    "https://github.blog/changelog/"
    "2022-10-11-github-actions-deprecating-save-state-and-set-output-commands/";
const char STEP_COMMANDS_STOP_TOKEN_MESSAGE[] =
    "You cannot use a endToken that is an empty string, the string 'pause-logging', or another "
    "workflow command. For more information see: "
    "https://docs.github.com/actions/learn-github-actions/"
    "workflow-commands-for-github-actions#example-stopping-and-starting-workflow-commands or opt "
    "into insecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS` "
    "environment variable to `true`.";

enum { MAX_REGISTERED = 32 };

struct property {
    char *key;
    char *value;
};

/* A parsed command (ActionCommand): its name as written, properties (keys compared ignoring
 * case; a repeated key keeps its first spelling and its last value) and data. */
struct command {
    char *name;
    struct property props[16];
    size_t prop_count;
    char *data;
};

struct step_commands {
    struct masker *masker;
    struct step_commands_options options;
    char *registered[MAX_REGISTERED]; /* command names taken as commands, plus the stop token */
    size_t registered_count;
    bool stopped;
    char *stop_token;
    bool echo;
    struct arena arena; /* this line's strings */
    struct step_action *actions;
    size_t count, cap;
};

/* ---- text helpers ---- */

/* Length of the .NET white-space character (Char.IsWhiteSpace) at s, or 0. */
static size_t space_at(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (!len)
        return 0;
    if (u[0] == ' ' || (u[0] >= '\t' && u[0] <= '\r'))
        return 1;
    if (len >= 2 && u[0] == 0xC2 && (u[1] == 0x85 || u[1] == 0xA0))
        return 2;
    if (len >= 3 && u[0] == 0xE1 && u[1] == 0x9A && u[2] == 0x80)
        return 3;
    if (len >= 3 && u[0] == 0xE2 && u[1] == 0x80 &&
        ((u[2] >= 0x80 && u[2] <= 0x8A) || u[2] == 0xA8 || u[2] == 0xA9 || u[2] == 0xAF))
        return 3;
    if (len >= 3 && u[0] == 0xE2 && u[1] == 0x81 && u[2] == 0x9F)
        return 3;
    if (len >= 3 && u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x80)
        return 3;
    return 0;
}

static const char *trim_start(const char *s)
{
    size_t n;
    while ((n = space_at(s, strlen(s))) > 0)
        s += n;
    return s;
}

/* String.Trim(): a copy in the arena. */
static char *trim(struct arena *arena, const char *s)
{
    s = trim_start(s);
    size_t len = strlen(s), end = 0;
    for (size_t i = 0; i < len;) {
        size_t n = space_at(s + i, len - i);
        if (n) {
            i += n;
        } else {
            i++;
            end = i;
        }
    }
    return arena_strndup(arena, s, end);
}

static bool is_null_or_white_space(const char *s)
{
    return !s || !*trim_start(s);
}

static char *replace_all(struct arena *arena, const char *s, const char *from, const char *to)
{
    if (!strstr(s, from))
        return (char *)s;
    struct buf out = BUF_INIT;
    size_t from_len = strlen(from);
    for (const char *hit; (hit = strstr(s, from)) != NULL; s = hit + from_len) {
        buf_append(&out, s, (size_t)(hit - s));
        buf_puts(&out, to);
    }
    buf_puts(&out, s);
    char *result = arena_strdup(arena, out.data);
    buf_free(&out);
    return result;
}

struct escape {
    const char *token, *replacement;
};

/* ActionCommand's unescaping: each mapping replaced over the whole text, in this order. */
static const struct escape data_escapes[] = {{"\r", "%0D"}, {"\n", "%0A"}, {"%", "%25"}, {0, 0}};
static const struct escape property_escapes[] = {{"\r", "%0D"}, {"\n", "%0A"}, {":", "%3A"},
                                                 {",", "%2C"},  {"%", "%25"},  {0, 0}};
static const struct escape legacy_escapes[] = {{";", "%3B"}, {"\r", "%0D"}, {"\n", "%0A"},
                                               {"]", "%5D"}, {"%", "%25"},  {0, 0}};

static char *unescape(struct arena *arena, const char *s, const struct escape *escapes)
{
    for (; escapes->token; escapes++)
        s = replace_all(arena, s, escapes->replacement, escapes->token);
    return (char *)s;
}

/* .NET int.TryParse (NumberStyles.Integer): white space around, an optional sign. */
static bool parse_int(const char *s, int *out)
{
    *out = 0;
    if (!s)
        return false;
    s = trim_start(s);
    bool negative = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    if (*s < '0' || *s > '9')
        return false;
    long long value = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        value = value * 10 + (*s - '0');
        if (value > (long long)INT_MAX + 1)
            return false;
    }
    if (*trim_start(s))
        return false;
    value = negative ? -value : value;
    if (value > INT_MAX || value < INT_MIN)
        return false;
    *out = (int)value;
    return true;
}

/* .NET bool.TryParse: "true"/"false" in any case, white space around allowed. */
static bool dotnet_bool_true(const char *s)
{
    if (!s)
        return false;
    struct arena arena;
    arena_init(&arena, 0);
    bool result = str_eq_nocase(trim(&arena, s), "true");
    arena_free(&arena);
    return result;
}

/* The runner's StringUtil.ConvertToBoolean. */
static bool convert_to_boolean(const char *s)
{
    return s &&
           (strcasecmp(s, "1") == 0 || strcasecmp(s, "true") == 0 || strcasecmp(s, "$true") == 0);
}

bool step_commands_unsecure_commands_allowed(const char *runner_env, const char *step_env)
{
    return dotnet_bool_true(runner_env) || dotnet_bool_true(step_env);
}

bool step_commands_unsecure_stop_tokens_allowed(const char *runner_env, const char *step_env)
{
    return convert_to_boolean(runner_env) || convert_to_boolean(step_env);
}

/* ---- actions ---- */

static struct step_action *action_add(struct step_commands *sc, enum step_action_kind kind)
{
    if (sc->count == sc->cap) {
        sc->cap = sc->cap ? sc->cap * 2 : 8;
        sc->actions = xrealloc(sc->actions, sc->cap * sizeof(*sc->actions));
    }
    struct step_action *a = &sc->actions[sc->count++];
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    return a;
}

static void emit_log(struct step_commands *sc, const char *text)
{
    action_add(sc, STEP_ACTION_LOG)->text = text;
}

static void emit_logf(struct step_commands *sc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void emit_logf(struct step_commands *sc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cleanup_free char *text = xvasprintf(fmt, ap);
    va_end(ap);
    emit_log(sc, arena_strdup(&sc->arena, text));
}

/* context.Debug: one "##[debug]" line per line of the message, when step debug is on. */
static void emit_debug(struct step_commands *sc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void emit_debug(struct step_commands *sc, const char *fmt, ...)
{
    if (!sc->options.debug)
        return;
    va_list ap;
    va_start(ap, fmt);
    cleanup_free char *message = xvasprintf(fmt, ap);
    va_end(ap);
    const char *text = replace_all(&sc->arena, message, "\r\n", "\n");
    for (;;) {
        const char *nl = strchr(text, '\n');
        size_t len = nl ? (size_t)(nl - text) : strlen(text);
        emit_logf(sc, "##[debug]%.*s", (int)len, text);
        if (!nl)
            break;
        text = nl + 1;
    }
}

static const char *const level_tags[] = {"##[error]", "##[warning]", "##[notice]"};

/* context.AddIssue: the annotation, and its line in the log when it has a message. */
static void emit_issue(struct step_commands *sc, const struct step_annotation *annotation)
{
    if (annotation->message && *annotation->message)
        emit_logf(sc, "%s%s", level_tags[annotation->level], annotation->message);
    action_add(sc, STEP_ACTION_ANNOTATION)->annotation = *annotation;
}

static void emit_simple_issue(struct step_commands *sc, enum annotation_level level,
                              const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void emit_simple_issue(struct step_commands *sc, enum annotation_level level,
                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cleanup_free char *message = xvasprintf(fmt, ap);
    va_end(ap);
    struct step_annotation annotation = {.level = level,
                                         .message = arena_strdup(&sc->arena, message)};
    emit_issue(sc, &annotation);
}

static const char *failure(struct step_commands *sc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const char *failure(struct step_commands *sc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cleanup_free char *message = xvasprintf(fmt, ap);
    va_end(ap);
    return arena_strdup(&sc->arena, message);
}

/* ---- properties ---- */

static const char *prop_get(const struct command *cmd, const char *key)
{
    for (size_t i = 0; i < cmd->prop_count; i++)
        if (strcasecmp(cmd->props[i].key, key) == 0)
            return cmd->props[i].value;
    return NULL;
}

static void prop_set(struct command *cmd, char *key, char *value)
{
    for (size_t i = 0; i < cmd->prop_count; i++) {
        if (strcasecmp(cmd->props[i].key, key) == 0) {
            cmd->props[i].value = value;
            return;
        }
    }
    if (cmd->prop_count < sizeof(cmd->props) / sizeof(cmd->props[0]))
        cmd->props[cmd->prop_count++] = (struct property){key, value};
}

static void prop_remove(struct command *cmd, const char *key)
{
    for (size_t i = 0; i < cmd->prop_count; i++) {
        if (strcasecmp(cmd->props[i].key, key) == 0) {
            cmd->props[i] = cmd->props[--cmd->prop_count];
            return;
        }
    }
}

/* "k=v<sep>k=v": empty pieces skipped; each piece split at its first '=' as .NET's
 * Split('=', 2, RemoveEmptyEntries) does (leading '='s and a run of '=' after the key are
 * skipped); a piece without both a key and a value is ignored. */
static void parse_properties(struct arena *arena, struct command *cmd, const char *s, char sep,
                             const struct escape *escapes)
{
    while (*s) {
        const char *end = strchr(s, sep);
        size_t len = end ? (size_t)(end - s) : strlen(s);
        char *piece = arena_strndup(arena, s, len);
        s += len + (end ? 1 : 0);
        char *key = piece + strspn(piece, "=");
        char *eq = strchr(key, '=');
        if (!eq || eq == key)
            continue;
        *eq = '\0';
        char *value = eq + 1 + strspn(eq + 1, "=");
        if (!*value)
            continue;
        prop_set(cmd, key, unescape(arena, value, escapes));
    }
}

static bool registered(const struct step_commands *sc, const char *name)
{
    for (size_t i = 0; i < sc->registered_count; i++)
        if (strcasecmp(sc->registered[i], name) == 0)
            return true;
    return false;
}

static void register_name(struct step_commands *sc, const char *name)
{
    if (!registered(sc, name) && sc->registered_count < MAX_REGISTERED)
        sc->registered[sc->registered_count++] = xstrdup(name);
}

static void unregister_name(struct step_commands *sc, const char *name)
{
    for (size_t i = 0; i < sc->registered_count; i++) {
        if (strcasecmp(sc->registered[i], name) == 0) {
            free(sc->registered[i]);
            sc->registered[i] = sc->registered[--sc->registered_count];
            return;
        }
    }
}

/* ActionCommand.TryParseV2: "::name k=v,k=v::data" after leading white space. */
static bool parse_v2(struct step_commands *sc, const char *line, struct command *cmd)
{
    line = trim_start(line);
    if (strncmp(line, "::", 2) != 0)
        return false;
    const char *end = strstr(line + 2, "::");
    if (!end)
        return false;
    char *info = arena_strndup(&sc->arena, line + 2, (size_t)(end - line - 2));
    char *space = strchr(info, ' ');
    if (space)
        *space = '\0';
    if (!registered(sc, info))
        return false;
    memset(cmd, 0, sizeof(*cmd));
    cmd->name = info;
    if (space && space != info)
        parse_properties(&sc->arena, cmd, trim(&sc->arena, space + 1), ',', property_escapes);
    cmd->data = unescape(&sc->arena, end + 2, data_escapes);
    return true;
}

/* ActionCommand.TryParse, the older form: "##[name k=v;k=v]data" anywhere in the line. */
static bool parse_legacy(struct step_commands *sc, const char *line, struct command *cmd)
{
    const char *prefix = strstr(line, "##[");
    if (!prefix)
        return false;
    const char *bracket = strchr(prefix, ']');
    if (!bracket)
        return false;
    char *info = arena_strndup(&sc->arena, prefix + 3, (size_t)(bracket - prefix - 3));
    char *space = strchr(info, ' ');
    if (space)
        *space = '\0';
    if (!registered(sc, info))
        return false;
    memset(cmd, 0, sizeof(*cmd));
    cmd->name = info;
    if (space && space != info)
        parse_properties(&sc->arena, cmd, space + 1, ';', legacy_escapes);
    cmd->data = unescape(&sc->arena, bracket + 1, legacy_escapes);
    return true;
}

/* ---- the commands (each returns NULL, or the message of the exception the official runner
 * throws, which fails the step) ---- */

typedef const char *command_handler(struct step_commands *sc, struct command *cmd);

static const char *handle_set_env(struct step_commands *sc, struct command *cmd)
{
    if (!sc->options.allow_unsecure_commands)
        return failure(sc, STEP_COMMANDS_DISABLED_MESSAGE, "set-env");
    const char *name = prop_get(cmd, "name");
    if (!name || !*name)
        return "Required field 'name' is missing in ##[set-env] command.";
    if (strcasecmp(name, "NODE_OPTIONS") == 0) {
        emit_simple_issue(sc, ANNOTATION_ERROR,
                          "Can't update NODE_OPTIONS environment variable using ::set-env:: "
                          "command.");
        return NULL;
    }
    struct step_action *a = action_add(sc, STEP_ACTION_SET_ENV);
    a->name = name;
    a->text = cmd->data;
    emit_debug(sc, "%s='%s'", name, cmd->data);
    return NULL;
}

static bool is_identifier(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    return s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")] == '\0';
}

static const char *handle_set_output(struct step_commands *sc, struct command *cmd)
{
    if (sc->options.deprecate_step_output_commands)
        emit_simple_issue(sc, ANNOTATION_WARNING, STEP_COMMANDS_DEPRECATED_MESSAGE, "set-output");
    const char *name = prop_get(cmd, "name");
    if (!name || !*name)
        return "Required field 'name' is missing in ##[set-output] command.";
    struct step_action *a = action_add(sc, STEP_ACTION_SET_OUTPUT);
    a->name = name;
    a->text = cmd->data;
    const char *step = sc->options.step_context_name;
    if (!step || !*step || strncmp(step, "__", 2) == 0)
        emit_debug(sc, "='%s'", cmd->data); /* generated step ids have no reference */
    else if (is_identifier(name))
        emit_debug(sc, "steps.%s.outputs.%s='%s'", step, name, cmd->data);
    else
        emit_debug(sc, "steps['%s']['outputs']['%s']='%s'", step, name, cmd->data);
    return NULL;
}

static const char *handle_save_state(struct step_commands *sc, struct command *cmd)
{
    if (sc->options.deprecate_step_output_commands)
        emit_simple_issue(sc, ANNOTATION_WARNING, STEP_COMMANDS_DEPRECATED_MESSAGE, "save-state");
    const char *name = prop_get(cmd, "name");
    if (!name || !*name)
        return "Required field 'name' is missing in ##[save-state] command.";
    struct step_action *a = action_add(sc, STEP_ACTION_SAVE_STATE);
    a->name = name;
    a->text = cmd->data;
    emit_debug(sc, "Save intra-action state %s = %s", name, cmd->data);
    return NULL;
}

static const char *handle_add_path(struct step_commands *sc, struct command *cmd)
{
    if (!sc->options.allow_unsecure_commands)
        return failure(sc, STEP_COMMANDS_DISABLED_MESSAGE, "add-path");
    if (!*cmd->data)
        return "Value cannot be null. (Parameter 'path')";
    action_add(sc, STEP_ACTION_ADD_PATH)->text = cmd->data;
    return NULL;
}

static const char *handle_add_mask(struct step_commands *sc, struct command *cmd)
{
    if (is_null_or_white_space(cmd->data)) {
        emit_simple_issue(sc, ANNOTATION_WARNING,
                          "Can't add secret mask for empty string in ##[add-mask] command.");
        return NULL;
    }
    if (sc->echo)
        emit_log(sc, "::add-mask::***");
    masker_add_secret(sc->masker, cmd->data, strlen(cmd->data), false);
    return NULL;
}

static const char *handle_add_matcher(struct step_commands *sc, struct command *cmd)
{
    if (!*cmd->data) {
        emit_simple_issue(sc, ANNOTATION_WARNING, "File path must be specified.");
        return NULL;
    }
    action_add(sc, STEP_ACTION_ADD_MATCHER)->text = cmd->data;
    return NULL;
}

static const char *handle_remove_matcher(struct step_commands *sc, struct command *cmd)
{
    const char *owner = prop_get(cmd, "owner");
    bool has_owner = owner && *owner, has_file = *cmd->data;
    if (has_owner && has_file) {
        emit_simple_issue(sc, ANNOTATION_WARNING,
                          "Either specify an owner name or a file path in ##[remove-matcher] "
                          "command. Both values cannot be set.");
    } else if (!has_owner && !has_file) {
        emit_simple_issue(sc, ANNOTATION_WARNING,
                          "Either an owner name or a file path must be specified in "
                          "##[remove-matcher] command.");
    } else {
        struct step_action *a = action_add(sc, STEP_ACTION_REMOVE_MATCHER);
        a->name = has_owner ? owner : NULL;
        a->text = has_owner ? NULL : cmd->data;
    }
    return NULL;
}

static const char *handle_debug(struct step_commands *sc, struct command *cmd)
{
    emit_debug(sc, "%s", cmd->data);
    return NULL;
}

/* IssueCommandExtension.ValidateLinesAndColumns, step for step (including that a line taken
 * from endLine is not re-parsed for the comparison that follows). */
static void validate_lines_and_columns(struct step_commands *sc, struct command *cmd)
{
    const char *name = cmd->name;
    const char *line = prop_get(cmd, "line"), *end_line = prop_get(cmd, "endLine");
    const char *column = prop_get(cmd, "col"), *end_column = prop_get(cmd, "endColumn");
    int line_number, end_line_number, column_number, end_column_number;
    bool has_start_line = parse_int(line, &line_number);
    bool has_end_line = parse_int(end_line, &end_line_number);
    bool has_start_column = parse_int(column, &column_number);
    bool has_end_column = parse_int(end_column, &end_column_number);
    bool has_column = has_start_column || has_end_column;

    if (has_end_line && !has_start_line) {
        emit_debug(sc, "Invalid %s command value. 'endLine' can only be set if 'line' is provided",
                   name);
        prop_set(cmd, "line", (char *)end_line);
        has_start_line = true;
        line = end_line;
    }
    if (has_end_column && !has_start_column) {
        emit_debug(sc, "Invalid %s command value. 'endColumn' can only be set if 'col' is provided",
                   name);
        prop_set(cmd, "col", (char *)end_column);
        has_start_column = true;
    }
    if (!has_start_line && has_column) {
        emit_debug(sc,
                   "Invalid %s command value. 'col' and 'endColumn' can only be set if 'line' "
                   "value is provided.",
                   name);
        prop_remove(cmd, "col");
        prop_remove(cmd, "endColumn");
    }
    if (has_end_line && (!line || strcmp(line, end_line) != 0) && has_column) {
        emit_debug(sc,
                   "Invalid %s command value. 'col' and 'endColumn' cannot be set if 'line' and "
                   "'endLine' are different values.",
                   name);
        prop_remove(cmd, "col");
        prop_remove(cmd, "endColumn");
    }
    if (has_start_line && has_end_line && end_line_number < line_number) {
        emit_debug(sc, "Invalid %s command value. 'endLine' cannot be less than 'line'.", name);
        prop_remove(cmd, "line");
        prop_remove(cmd, "endLine");
    }
    if (has_start_column && has_end_column && end_column_number < column_number) {
        emit_debug(sc, "Invalid %s command value. 'endColumn' cannot be less than 'col'.", name);
        prop_remove(cmd, "col");
        prop_remove(cmd, "endColumn");
    }
}

/* IOUtil.MakeRelative: path relative to folder when under it, else path itself. */
static const char *make_relative(const char *path, const char *folder)
{
    size_t n = strlen(folder);
    if (strncmp(path, folder, n) != 0)
        return path;
    if (path[n] == '\0')
        return "";
    if (n > 0 && folder[n - 1] == '/')
        return path + n;
    if (path[n] == '/')
        return path + n + 1;
    return path;
}

static int int_prop(const struct command *cmd, const char *key)
{
    int value;
    return parse_int(prop_get(cmd, key), &value) ? value : 0;
}

static const char *handle_issue(struct step_commands *sc, struct command *cmd,
                                enum annotation_level level)
{
    validate_lines_and_columns(sc, cmd);
    if (!sc->options.enhanced_annotations)
        emit_debug(sc, "Enhanced Annotations not enabled on the server. The 'title', "
                       "'end_line', and 'end_column' fields are unsupported.");
    struct step_annotation annotation = {.level = level, .message = cmd->data};
    const char *file = prop_get(cmd, "file");
    if (file && *file && sc->options.workspace) {
        const char *relative = make_relative(file, sc->options.workspace);
        if (relative != file) {
            if (sc->options.repository && *sc->options.repository)
                annotation.repo = sc->options.repository;
            if (*relative)
                file = relative;
        }
    }
    annotation.file = file && *file ? file : NULL;
    annotation.title = prop_get(cmd, "title");
    annotation.line = int_prop(cmd, "line");
    annotation.end_line = int_prop(cmd, "endLine");
    annotation.col = int_prop(cmd, "col");
    annotation.end_column = int_prop(cmd, "endColumn");
    emit_issue(sc, &annotation);
    return NULL;
}

static const char *handle_error(struct step_commands *sc, struct command *cmd)
{
    return handle_issue(sc, cmd, ANNOTATION_ERROR);
}

static const char *handle_warning(struct step_commands *sc, struct command *cmd)
{
    return handle_issue(sc, cmd, ANNOTATION_WARNING);
}

static const char *handle_notice(struct step_commands *sc, struct command *cmd)
{
    return handle_issue(sc, cmd, ANNOTATION_NOTICE);
}

static const char *handle_group(struct step_commands *sc, struct command *cmd)
{
    emit_logf(sc, "##[group]%s", cmd->data);
    action_add(sc, STEP_ACTION_GROUP)->text = cmd->data;
    return NULL;
}

static const char *handle_endgroup(struct step_commands *sc, struct command *cmd)
{
    (void)cmd;
    emit_log(sc, "##[endgroup]");
    action_add(sc, STEP_ACTION_END_GROUP);
    return NULL;
}

static const char *handle_echo(struct step_commands *sc, struct command *cmd)
{
    if (!*cmd->data)
        return "Value cannot be null. (Parameter 'value')";
    const char *value = trim(&sc->arena, cmd->data);
    if (strcasecmp(value, "on") == 0) {
        sc->echo = true;
        emit_debug(sc, "Setting echo command value to 'on'");
    } else if (strcasecmp(value, "off") == 0) {
        sc->echo = false;
        emit_debug(sc, "Setting echo command value to 'off'");
    } else {
        return failure(sc,
                       "Invalid echo command value. Possible values can be: 'on', 'off'. Current "
                       "value is: '%s'.",
                       cmd->data);
    }
    return NULL;
}

/* The official runner's command extensions. omit_echo: not echoed even with echo on. */
static const struct command_extension {
    const char *name;
    bool omit_echo;
    command_handler *handle;
} extensions[] = {
    {"set-env", false, handle_set_env},
    {"set-output", false, handle_set_output},
    {"save-state", false, handle_save_state},
    {"add-path", false, handle_add_path},
    {"add-mask", true, handle_add_mask},
    {"add-matcher", false, handle_add_matcher},
    {"remove-matcher", false, handle_remove_matcher},
    {"warning", true, handle_warning},
    {"error", true, handle_error},
    {"notice", true, handle_notice},
    {"debug", true, handle_debug},
    {"group", false, handle_group},
    {"endgroup", false, handle_endgroup},
    {"echo", false, handle_echo},
};

static const char STOP_COMMAND[] = "stop-commands";

/* ---- processing a line ---- */

struct step_commands *step_commands_new(struct masker *masker,
                                        const struct step_commands_options *options)
{
    struct step_commands *sc = xcalloc(1, sizeof(*sc));
    sc->masker = masker;
    sc->options = *options;
    sc->options.step_context_name =
        options->step_context_name ? xstrdup(options->step_context_name) : NULL;
    sc->options.workspace = options->workspace ? xstrdup(options->workspace) : NULL;
    sc->options.repository = options->repository ? xstrdup(options->repository) : NULL;
    sc->echo = options->echo;
    arena_init(&sc->arena, 0);
    register_name(sc, STOP_COMMAND);
    for (size_t i = 0; i < sizeof(extensions) / sizeof(extensions[0]); i++)
        register_name(sc, extensions[i].name);
    return sc;
}

void step_commands_free(struct step_commands *sc)
{
    if (!sc)
        return;
    for (size_t i = 0; i < sc->registered_count; i++)
        free(sc->registered[i]);
    free((char *)sc->options.step_context_name);
    free((char *)sc->options.workspace);
    free((char *)sc->options.repository);
    free(sc->stop_token);
    free(sc->actions);
    arena_free(&sc->arena);
    free(sc);
}

static void fail_step(struct step_commands *sc, const char *message)
{
    emit_simple_issue(sc, ANNOTATION_ERROR, "%s", message);
    action_add(sc, STEP_ACTION_FAIL_STEP);
}

/* ::stop-commands::TOKEN. An empty token, 'pause-logging' or a command name is refused
 * unless ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS allows it; a refused token fails the step,
 * as the official runner's uncaught exception does. */
static void stop_commands(struct step_commands *sc, const char *input, const char *token)
{
    bool invalid = registered(sc, token) || !*token || strcasecmp(token, "pause-logging") == 0;
    if (invalid && !sc->options.allow_unsecure_stop_tokens) {
        fail_step(sc, STEP_COMMANDS_STOP_TOKEN_MESSAGE);
        return;
    }
    free(sc->stop_token);
    sc->stop_token = xstrdup(token);
    sc->stopped = true;
    register_name(sc, token);
    if (strlen(token) > 6) /* as String.Length > 6 (bytes here: never masks less) */
        masker_add_value(sc->masker, token, strlen(token));
    emit_log(sc, input);
    emit_debug(sc, "Paused processing commands until the token you called ::stopCommands:: with "
                   "is received");
}

static const struct command_extension *extension_find(const char *name)
{
    for (size_t i = 0; i < sizeof(extensions) / sizeof(extensions[0]); i++)
        if (strcasecmp(extensions[i].name, name) == 0)
            return &extensions[i];
    return NULL;
}

/* ActionCommandManager.TryProcessCommand: false when the line is plain output. */
static bool process_command(struct step_commands *sc, const char *input)
{
    if (!strstr(input, "##[") && !strstr(input, "::"))
        return false;
    struct command cmd;
    if (!parse_v2(sc, input, &cmd) && !parse_legacy(sc, input, &cmd))
        return false;
    if (!sc->options.enhanced_annotations && strcmp(cmd.name, "notice") == 0) {
        emit_debug(sc, "Enhanced Annotations not enabled on the server: 'notice' command will "
                       "not be processed.");
        return false;
    }
    if (sc->stopped) {
        if (sc->stop_token && *sc->stop_token && strcasecmp(cmd.name, sc->stop_token) == 0) {
            emit_log(sc, input);
            emit_debug(sc, "Resume processing commands");
            unregister_name(sc, sc->stop_token);
            sc->stopped = false;
            free(sc->stop_token);
            sc->stop_token = NULL;
            return true;
        }
        emit_debug(sc, "Process commands has been stopped and waiting for '##[%s]' to resume.",
                   sc->stop_token ? sc->stop_token : "");
        return false;
    }
    if (strcasecmp(cmd.name, STOP_COMMAND) == 0) {
        stop_commands(sc, input, cmd.data);
        return true;
    }
    const struct command_extension *ext = extension_find(cmd.name);
    if (!ext) {
        emit_simple_issue(sc, ANNOTATION_WARNING,
                          "Can't find command extension for ##[%s.command].", cmd.name);
        return true;
    }
    if (sc->echo && !ext->omit_echo)
        emit_log(sc, input);
    const char *exception = ext->handle(sc, &cmd);
    if (exception) {
        emit_simple_issue(sc, ANNOTATION_ERROR, "Unable to process command '%s' successfully.",
                          ext->omit_echo ? ext->name : input);
        fail_step(sc, exception);
    }
    return true;
}

struct step_command_result step_commands_process(struct step_commands *sc, const char *line,
                                                 size_t len)
{
    arena_free(&sc->arena);
    sc->count = 0;
    char *input = arena_strndup(&sc->arena, line, len);
    bool is_command = process_command(sc, input);
    if (!is_command) {
        /* As OutputManager: a step cannot fake the runner's own start/end-action markers. */
        const char *text = replace_all(&sc->arena, input, "##[start-action", "##[\\start-action");
        emit_log(sc, replace_all(&sc->arena, text, "##[end-action", "##[\\end-action"));
    }
    return (struct step_command_result){is_command, sc->actions, sc->count};
}
