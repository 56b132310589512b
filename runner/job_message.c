#include "runner/job_message.h"

#include "lib/buf.h"
#include "lib/json.h"
#include "workflow/context_data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *dup_string(struct job_message *m, const json_t *obj, const char *key)
{
    const char *s = json_get_string(obj, key);
    return s ? arena_strdup(&m->arena, s) : NULL;
}

/* A token member, or NULL when absent or null. */
static int read_token(struct job_message *m, json_t *obj, const char *key, struct token **out,
                      struct error *err)
{
    *out = NULL;
    json_t *v = json_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    *out = token_from_json(&m->arena, v, err);
    if (!*out)
        return error_prefix(err, "member '%s'", key);
    return 0;
}

/* "action" or 4 */
static bool is_action_step(json_t *type)
{
    if (!type || json_is_null(type))
        return true;
    if (json_is_integer(type))
        return json_integer_value(type) == 4;
    return json_is_string(type) && str_eq_nocase(json_string_value(type), "action");
}

static int reference_kind(json_t *type, enum job_step_kind *kind)
{
    static const struct {
        const char *name;
        int code;
        enum job_step_kind kind;
    } kinds[] = {{"repository", 1, JOB_STEP_REPOSITORY},
                 {"containerRegistry", 2, JOB_STEP_CONTAINER},
                 {"script", 3, JOB_STEP_SCRIPT}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if ((json_is_integer(type) && json_integer_value(type) == kinds[i].code) ||
            (json_is_string(type) && str_eq_nocase(json_string_value(type), kinds[i].name))) {
            *kind = kinds[i].kind;
            return 0;
        }
    }
    return -1;
}

static int decode_step(struct job_message *m, json_t *js, struct job_step *step, size_t index,
                       struct error *err)
{
    json_t *ref = json_get(js, "reference");
    if (!json_is_object(ref) || reference_kind(json_get(ref, "type"), &step->kind) < 0)
        return error_set(err, EINVAL, "steps[%zu]: missing or unknown 'reference.type'", index);
    step->id = dup_string(m, js, "id");
    step->name = dup_string(m, js, "name");
    step->display_name = dup_string(m, js, "displayName");
    step->context_name = dup_string(m, js, "contextName");
    if (!step->context_name)
        step->context_name = step->name;
    if (!step->id || !step->context_name)
        return error_set(err, EINVAL, "steps[%zu]: 'id' and 'name' or 'contextName' are required",
                         index);
    step->condition = dup_string(m, js, "condition");
    if (!step->condition || !*step->condition)
        step->condition = "success()";
    step->repository_name = dup_string(m, ref, "name");
    step->repository_ref = dup_string(m, ref, "ref");
    step->repository_type = dup_string(m, ref, "repositoryType");
    step->repository_path = dup_string(m, ref, "path");
    if (!step->repository_path)
        step->repository_path = "";
    step->image = dup_string(m, ref, "image");
    if (step->kind == JOB_STEP_REPOSITORY && !step->repository_name &&
        !(step->repository_type && str_eq_nocase(step->repository_type, "self")))
        return error_set(err, EINVAL, "steps[%zu]: a repository reference needs 'name'", index);
    if (step->kind == JOB_STEP_CONTAINER && !step->image)
        return error_set(err, EINVAL, "steps[%zu]: a container reference needs 'image'", index);
    static const char *const token_members[] = {"continueOnError", "timeoutInMinutes",
                                                "displayNameToken", "environment", "inputs"};
    struct token **slots[] = {&step->continue_on_error, &step->timeout_minutes,
                              &step->display_name_token, &step->environment, &step->inputs};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        if (read_token(m, js, token_members[i], slots[i], err) < 0)
            return error_prefix(err, "steps[%zu]", index);
    return 0;
}

static int decode_steps(struct job_message *m, struct error *err)
{
    json_t *steps = json_get(m->json, "steps");
    if (!json_is_array(steps))
        return error_set(err, EINVAL, "the job message has no 'steps' array");
    m->steps = arena_alloc(&m->arena, (json_array_size(steps) + 1) * sizeof *m->steps);
    for (size_t i = 0; i < json_array_size(steps); i++) {
        json_t *js = json_array_get(steps, i);
        if (!json_is_object(js))
            return error_set(err, EINVAL, "steps[%zu] is not an object", i);
        json_t *type = json_get(js, "type");
        if (!is_action_step(type)) {
            if (json_is_string(type) &&
                str_eq_nocase(json_string_value(type), "backgroundStepControl"))
                return error_set(err, ENOTSUP,
                                 "steps[%zu]: background steps are not supported by harrier yet",
                                 i);
            continue; /* unknown step types are ignored, as the official runner does */
        }
        if (decode_step(m, js, &m->steps[m->step_count], i, err) < 0)
            return err->code;
        m->step_count++;
    }
    return 0;
}

static int decode_token_list(struct job_message *m, const char *key, struct token ***out,
                             size_t *count, struct error *err)
{
    json_t *list = json_get(m->json, key);
    *count = 0;
    *out = NULL;
    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list))
        return error_set(err, EINVAL, "member '%s' must be an array", key);
    *out = arena_alloc(&m->arena, (json_array_size(list) + 1) * sizeof **out);
    for (size_t i = 0; i < json_array_size(list); i++) {
        struct token *t = token_from_json(&m->arena, json_array_get(list, i), err);
        if (!t)
            return error_prefix(err, "%s[%zu]", key, i);
        (*out)[(*count)++] = t;
    }
    return 0;
}

static int decode_contexts(struct job_message *m, struct error *err)
{
    m->contexts = json_object();
    json_t *data = json_get(m->json, "contextData");
    if (!data || json_is_null(data))
        return 0;
    if (!json_is_object(data))
        return error_set(err, EINVAL, "member 'contextData' must be an object");
    const char *name;
    json_t *value;
    json_object_foreach(data, name, value)
    {
        json_t *plain = context_data_decode(value, NULL, err);
        if (!plain)
            return error_prefix(err, "contextData.%s", name);
        json_object_set_new(m->contexts, name, plain);
    }
    return 0;
}

static int decode_connection(struct job_message *m, struct error *err)
{
    json_t *endpoints = json_get(json_get(m->json, "resources"), "endpoints");
    for (size_t i = 0; json_is_array(endpoints) && i < json_array_size(endpoints); i++) {
        json_t *e = json_array_get(endpoints, i);
        const char *name = json_get_string(e, "name");
        if (!name || !str_eq_nocase(name, "SystemVssConnection"))
            continue;
        m->connection_url = dup_string(m, e, "url");
        json_t *auth = json_get(e, "authorization");
        m->access_token = dup_string(m, json_get(auth, "parameters"), "AccessToken");
        m->connection_data = json_get(e, "data");
        return 0;
    }
    return error_set(
        err, EINVAL,
        "the job message has no 'SystemVssConnection' endpoint in resources.endpoints");
}

static int decode(struct job_message *m, struct error *err)
{
    m->message_type = dup_string(m, m->json, "messageType");
    m->job_id = dup_string(m, m->json, "jobId");
    m->job_display_name = dup_string(m, m->json, "jobDisplayName");
    m->job_name = dup_string(m, m->json, "jobName");
    if (!m->job_id || !m->job_name)
        return error_set(err, EINVAL, "the job message needs 'jobId' and 'jobName'");
    if (!m->job_display_name)
        m->job_display_name = m->job_name;
    json_get_int(m->json, "requestId", &m->request_id);
    json_t *plan = json_get(m->json, "plan");
    m->plan_id = dup_string(m, plan, "planId");
    m->plan_type = dup_string(m, plan, "planType");
    m->scope_identifier = dup_string(m, plan, "scopeIdentifier");
    json_get_int(plan, "version", &m->plan_version);
    m->timeline_id = dup_string(m, json_get(m->json, "timeline"), "id");
    m->variables = json_get(m->json, "variables");
    if (m->variables && !json_is_object(m->variables))
        return error_set(err, EINVAL, "member 'variables' must be an object");
    m->mask = json_get(m->json, "mask");
    json_t *files = json_get(m->json, "fileTable");
    m->file_table = arena_alloc(&m->arena, (json_array_size(files) + 1) * sizeof *m->file_table);
    for (size_t i = 0; i < json_array_size(files); i++) {
        const char *f = json_string_value(json_array_get(files, i));
        m->file_table[m->file_count++] = arena_strdup(&m->arena, f ? f : "");
    }
    int rc;
    if ((rc = decode_connection(m, err)) < 0 || (rc = decode_contexts(m, err)) < 0 ||
        (rc = decode_token_list(m, "environmentVariables", &m->environment, &m->environment_count,
                                err)) < 0 ||
        (rc = decode_token_list(m, "defaults", &m->defaults, &m->defaults_count, err)) < 0 ||
        (rc = read_token(m, m->json, "jobContainer", &m->job_container, err)) < 0 ||
        (rc = read_token(m, m->json, "jobServiceContainers", &m->job_services, err)) < 0 ||
        (rc = read_token(m, m->json, "jobOutputs", &m->job_outputs, err)) < 0)
        return rc;
    return decode_steps(m, err);
}

int job_message_decode(const char *text, size_t len, struct job_message **out, struct error *err)
{
    struct job_message *m = xcalloc(1, sizeof *m);
    arena_init(&m->arena, 0);
    m->json = json_load_text(text, len, "job message", err);
    int rc = m->json ? (json_is_object(m->json)
                            ? decode(m, err)
                            : error_set(err, EINVAL, "the job message is not a JSON object"))
                     : err->code;
    if (rc < 0) {
        error_prefix(err, "invalid job message");
        job_message_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void job_message_free(struct job_message *m)
{
    if (!m)
        return;
    json_decref(m->contexts);
    json_decref(m->json);
    arena_free(&m->arena);
    free(m);
}

const char *job_message_variable(const struct job_message *m, const char *name, bool *is_secret)
{
    json_t *v = json_get(m->variables, name);
    if (is_secret)
        *is_secret = false;
    if (!v)
        return NULL;
    if (is_secret)
        json_get_bool(v, "isSecret", is_secret);
    return json_get_string(v, "value");
}
