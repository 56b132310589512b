/* runner/config_store: the official runner's three files, written 0600 and atomically, and
 * read back from what the official runner or GitHub writes (BOM, PascalCase, strings). */
#include "lib/codec.h"
#include "lib/json.h"
#include "lib/mem.h"
#include "lib/path.h"
#include "runner/config_store.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *temp_dir(void)
{
    char *d = strdup("/tmp/harrier-cfg-XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char *path = path_join(dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    free(path);
}

static struct runner_key *key_once(void)
{
    static struct runner_key *key;
    struct error err = {0};
    if (!key)
        cr_assert_eq(runner_key_generate(&key, &err), 0);
    return key;
}

Test(config_store, save_then_load_round_trips_with_mode_0600)
{
    char *dir = temp_dir();
    struct runner_settings s = {.agent_id = 42,
                                .agent_name = "r1",
                                .pool_id = 1,
                                .pool_name = "Default",
                                .server_url = "http://h/t/x/",
                                .github_url = "http://h/o/r",
                                .work_folder = "_work",
                                .disable_update = true,
                                .is_hosted_server = false};
    struct runner_credentials c = {.scheme = "OAuth",
                                   .client_id = "c-1",
                                   .authorization_url = "http://h/t/x/_apis/oauth2/token",
                                   .require_fips = true};
    struct error err = {0};
    cr_assert_eq(config_store_save(dir, &s, &c, key_once(), &err), 0, "%s", err.message);
    const char *names[] = {".runner", ".credentials", ".credentials_rsaparams"};
    for (int i = 0; i < 3; i++) {
        char *p = path_join(dir, names[i]);
        struct stat st;
        cr_assert_eq(stat(p, &st), 0);
        cr_assert_eq(st.st_mode & 0777, 0600, "%s", names[i]);
        free(p);
    }
    /* Defaults are omitted as the official runner omits them. */
    char *p = path_join(dir, ".runner");
    json_t *r = json_load_path(p, &err);
    cr_assert_null(json_object_get(r, "ephemeral"));
    cr_assert(json_is_false(json_object_get(r, "isHostedServer")));
    cr_assert(json_is_true(json_object_get(r, "disableUpdate")));
    json_decref(r);
    free(p);
    struct runner_settings s2;
    struct runner_credentials c2;
    struct runner_key *k2 = NULL;
    cr_assert_eq(config_store_load(dir, &s2, &c2, &k2, &err), 0, "%s", err.message);
    cr_assert_eq(s2.agent_id, 42);
    cr_assert_str_eq(s2.agent_name, "r1");
    cr_assert_str_eq(s2.server_url, "http://h/t/x/");
    cr_assert(s2.disable_update && !s2.ephemeral && !s2.is_hosted_server);
    cr_assert_str_eq(c2.client_id, "c-1");
    cr_assert(c2.require_fips);
    char *m1 = runner_key_modulus_base64(key_once()), *m2 = runner_key_modulus_base64(k2);
    cr_assert_str_eq(m1, m2);
    free(m1);
    free(m2);
    runner_key_free(k2);
    runner_settings_free(&s2);
    runner_credentials_free(&c2);
    cr_assert_eq(config_store_remove(dir, &err), 0);
    cr_assert_not(config_store_exists(dir));
    rmdir(dir);
    free(dir);
}

Test(config_store, reads_github_generated_pascal_case_with_bom_and_strings)
{
    char *dir = temp_dir();
    write_text(dir, ".runner",
               "\xEF\xBB\xBF{\"AgentId\": \"42\", \"AgentName\": \"jit\", \"PoolId\": \"1\", "
               "\"ServerUrl\": \"https://pipelinesghubeus2.actions.githubusercontent.com/abc/\", "
               "\"WorkFolder\": \"_work\", \"Ephemeral\": \"True\", \"DisableUpdate\": \"False\"}");
    write_text(dir, ".credentials",
               "{\"Scheme\": \"OAuth\", \"Data\": {\"ClientId\": \"c\", \"AuthorizationUrl\": "
               "\"https://x/token\"}}");
    struct runner_settings s;
    struct runner_credentials c;
    struct error err = {0};
    unsetenv("GITHUB_ACTIONS_RUNNER_FORCE_GHES");
    cr_assert_eq(config_store_load(dir, &s, &c, NULL, &err), 0, "%s", err.message);
    cr_assert_eq(s.agent_id, 42);
    cr_assert_eq(s.pool_id, 1);
    cr_assert(s.ephemeral && !s.disable_update);
    /* No gitHubUrl: hosted inferred from the serverUrl's host (§2.8). */
    cr_assert(s.is_hosted_server);
    /* No RequireFipsCryptography: RS256 (§3.1). */
    cr_assert_not(c.require_fips);
    runner_settings_free(&s);
    runner_credentials_free(&c);
    write_text(dir, ".runner", "{\"AgentId\": 1, \"ServerUrl\": \"http://127.0.0.1:9/t/x/\"}");
    cr_assert_eq(config_store_load(dir, &s, &c, NULL, &err), 0);
    cr_assert_not(s.is_hosted_server, "a loopback tenant is GHES-like");
    runner_settings_free(&s);
    runner_credentials_free(&c);
    config_store_remove(dir, &err);
    rmdir(dir);
    free(dir);
}

Test(config_store, not_configured_and_broken_credentials_say_so)
{
    char *dir = temp_dir();
    struct runner_settings s;
    struct runner_credentials c;
    struct error err = {0};
    cr_assert_lt(config_store_load(dir, &s, &c, NULL, &err), 0);
    cr_assert(strstr(err.message, "harrier config"));
    write_text(dir, ".runner", "{\"agentId\": 1}");
    write_text(dir, ".credentials", "{\"scheme\": \"OAuthAccessToken\", \"data\": {}}");
    cr_assert_lt(config_store_load(dir, &s, &c, NULL, &err), 0);
    cr_assert(strstr(err.message, "OAuth"));
    runner_settings_free(&s);
    runner_credentials_free(&c);
    config_store_remove(dir, &err);
    rmdir(dir);
    free(dir);
}

Test(config_store, jit_blob_unpacks_the_three_files_as_raw_bytes)
{
    char *dir = temp_dir();
    const char *runner = "{\"AgentId\": \"7\", \"ServerUrl\": \"http://h/t/x/\"}";
    const char *cred = "\xEF\xBB\xBF{\"Scheme\": \"OAuth\", \"Data\": {\"ClientId\": \"c\", "
                       "\"AuthorizationUrl\": \"http://h/tok\", \"RequireFipsCryptography\": "
                       "\"True\"}}";
    json_t *params = runner_key_params_new(key_once());
    char *key_text = json_dumps(params, 0);
    json_decref(params);
    char *r64 = codec_base64_encode(runner, strlen(runner));
    char *c64 = codec_base64_encode(cred, strlen(cred));
    char *k64 = codec_base64_encode(key_text, strlen(key_text));
    json_t *files = json_pack("{s:s, s:s, s:s}", ".runner", r64, ".credentials", c64,
                              ".credentials_rsaparams", k64);
    char *outer = json_dumps(files, 0);
    char *blob = codec_base64_encode(outer, strlen(outer));
    struct error err = {0};
    cr_assert_eq(config_store_write_jit(dir, blob, &err), 0, "%s", err.message);
    char *p = path_join(dir, ".credentials");
    size_t len = 0;
    char *back = path_read_file(p, &len, &err);
    cr_assert_eq(len, strlen(cred));
    cr_assert_eq(memcmp(back, cred, len), 0, "written as the raw decoded bytes");
    struct runner_settings s;
    struct runner_credentials c;
    struct runner_key *k = NULL;
    cr_assert_eq(config_store_load(dir, &s, &c, &k, &err), 0, "%s", err.message);
    cr_assert_eq(s.agent_id, 7);
    cr_assert(c.require_fips);
    runner_key_free(k);
    runner_settings_free(&s);
    runner_credentials_free(&c);
    cr_assert_lt(config_store_write_jit(dir, "bm90IGpzb24=", &err), 0);
    cr_assert(strstr(err.message, "JIT"));
    free(back);
    free(p);
    free(blob);
    free(outer);
    json_decref(files);
    free(r64);
    free(c64);
    free(k64);
    free(key_text);
    config_store_remove(dir, &err);
    rmdir(dir);
    free(dir);
}
