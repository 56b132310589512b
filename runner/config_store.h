/* config_store: the runner's registration on disk, in the official runner's three files
 * (PROTOCOL.md §2.8): .runner (settings), .credentials (OAuth client) and
 * .credentials_rsaparams (the private key), mode 0600, written atomically; files written by
 * the official runner or GitHub (BOM, PascalCase, numbers and booleans as strings) read back. */
#ifndef HARRIER_RUNNER_CONFIG_STORE_H
#define HARRIER_RUNNER_CONFIG_STORE_H

#include "lib/error.h"
#include "protocol/runner_key.h"

#include <stdbool.h>
#include <stdint.h>

struct runner_settings {
    int64_t agent_id;
    char *agent_name;
    int64_t pool_id;
    char *pool_name;
    char *server_url; /* the tenant base URL */
    char *github_url;
    char *work_folder;
    char *server_url_v2;
    bool ephemeral, disable_update, use_v2_flow;
    bool is_hosted_server; /* read, or inferred as §2.8 says */
};

struct runner_credentials {
    char *scheme; /* "OAuth" */
    char *client_id;
    char *authorization_url;
    char *oauth_endpoint_url; /* where the token POST goes; NULL: authorization_url */
    bool require_fips;        /* PS256; absent means false (RS256), §3.1 */
};

/* Reads the three files of dir. key may be NULL when not wanted. */
int config_store_load(const char *dir, struct runner_settings *settings,
                      struct runner_credentials *credentials, struct runner_key **key,
                      struct error *err);
/* Writes the three files (camelCase, defaults omitted, as the official runner). */
int config_store_save(const char *dir, const struct runner_settings *settings,
                      const struct runner_credentials *credentials, const struct runner_key *key,
                      struct error *err);
/* True when dir has a .runner file. */
bool config_store_exists(const char *dir);
/* Deletes the three files; missing ones are fine. */
int config_store_remove(const char *dir, struct error *err);
/* Slots (harrier's --slots N): slot 1 is dir itself, as the official layout; slot k > 1 keeps
 * its three files in dir/.slots/k. Returns a new string. */
char *config_store_slot_dir(const char *dir, int slot);
/* How many slots are configured in dir: 1 + the consecutive .slots/k with a .runner; 0 when
 * dir has none. */
int config_store_slot_count(const char *dir);

/* Unpacks a JIT blob (§2.10: base64 of a JSON object of file name → base64 content) into dir,
 * each file as its raw bytes, mode 0600. Only the three known names are written. */
int config_store_write_jit(const char *dir, const char *blob, struct error *err);

void runner_settings_free(struct runner_settings *settings);
void runner_credentials_free(struct runner_credentials *credentials);

#endif
