/* runner_service: the client of GitHub's runner service over the classic VSS REST API
 * (PROTOCOL.md §1–4, §7): classifying --url, resource locations from connectionData,
 * wrapped-exception errors, and connections that authenticate with a fixed bearer token or
 * with the runner's OAuth credential (JWT client assertion, refreshed on 401). */
#ifndef HARRIER_PROTOCOL_RUNNER_SERVICE_H
#define HARRIER_PROTOCOL_RUNNER_SERVICE_H

#include "lib/error.h"
#include "lib/http.h"
#include "protocol/runner_key.h"

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

/* The runner version harrier reports (§9.1). */
#define RUNNER_SERVICE_VERSION "2.336.0"

/* Location GUIDs of §1.4. */
#define VSS_LOC_POOLS "a8c47e17-4d56-4a56-92bb-de7ea7dc65be"
#define VSS_LOC_AGENTS "e298ef32-5878-4cab-993c-043836571f42"
#define VSS_LOC_SESSIONS "134e239e-2df3-4794-a6f6-24f1f19ec8dc"
#define VSS_LOC_MESSAGES "c3a054f6-7a8a-49c0-944e-3a8e5d7adfd7"
#define VSS_LOC_JOBREQUESTS "fc825784-c92a-4299-9221-998a02d1b54f"
#define VSS_LOC_TIMELINES "83597576-cc2c-453c-bea6-2882ae6a1653"
#define VSS_LOC_RECORDS "8893bc5b-35b2-4be7-83cb-99e683551db4"
#define VSS_LOC_FEED "858983e4-19bd-4c5e-864c-507b59b58b12"
#define VSS_LOC_LOGS "46f5667d-263a-4684-91b1-dff7fdcf64e2"
#define VSS_LOC_ATTACHMENTS "7898f959-9cdf-4096-b29e-7f293031629e"
#define VSS_LOC_EVENTS "557624af-b29e-4c20-8ab0-0399d2204f3f"
#define VSS_LOC_ACTION_DOWNLOAD_INFO "27d7f831-88c1-4719-8ca1-6a061dad90eb"

/* §2.2: github.com-like hosts (not GHES), unless GITHUB_ACTIONS_RUNNER_FORCE_GHES is set. */
bool runner_url_is_hosted(const char *url);
/* The REST API root for a --url: https://api.<host> when hosted, <scheme>://<host[:port]>/api/v3
 * for GHES (the port is kept, a documented deviation). Caller frees; NULL with err set. */
char *runner_url_api_root(const char *github_url, struct error *err);
/* Percent-encodes everything but RFC 3986's unreserved characters. Caller frees. */
char *runner_url_escape(const char *text);

/* Routes discovered from connectionData (§1.3). */
struct vss_locations;
struct vss_locations *vss_locations_parse(const json_t *connection_data, struct error *err);
void vss_locations_free(struct vss_locations *locations);
/* base + the expanded template of location guid. route: name, value pairs, NULL-terminated
 * (a NULL value counts as missing: its segment is dropped). query: already encoded, or NULL.
 * Caller frees; NULL with err set when the service did not advertise the location. */
char *vss_locations_url(const struct vss_locations *locations, const char *base, const char *guid,
                        const char *const *route, const char *query, struct error *err);

/* The exception a VSS error body names (§1.5.1): typeKey, else the class in typeName; NULL when
 * the body is not a wrapped exception. Caller frees. */
char *vss_error_type_key(const struct http_response *resp);
/* Its errorCode (0 when absent). */
int vss_error_code(const struct http_response *resp);
/* Its message; NULL when the body is not a wrapped exception. Caller frees. */
char *vss_error_message(const struct http_response *resp);

/* err->code of a call whose OAuth token request was refused with invalid_client: the
 * registration was deleted (§3.3). */
enum { VSS_ERROR_REGISTRATION_DELETED = -0x7e01, VSS_ERROR_CLOCK_SKEW = -0x7e02 };
/* err->code of an action download info call the service refused for good (422,
 * UnresolvableActionDownloadInfoException or NonRetryableActionDownloadInfoException, §8.2):
 * the official runner does not try again. */
enum { VSS_ERROR_ACTION_UNRESOLVABLE = -0x7e03 };

struct vss_conn;

/* A connection to base (a tenant or job URL) through http, which lives on loop. */
struct vss_conn *vss_conn_new(uv_loop_t *loop, struct http_client *http, const char *base);
void vss_conn_free(struct vss_conn *conn);
/* Authenticate with this bearer token (a registration or job token). */
void vss_conn_set_token(struct vss_conn *conn, const char *token);
/* Authenticate with the runner's OAuth credential (§3); key is borrowed. The token is fetched
 * before the first call and again after a 401. */
void vss_conn_set_oauth(struct vss_conn *conn, const struct runner_key *key, const char *client_id,
                        const char *authorization_url, bool ps256);
/* Forgets the OAuth token (ForceTokenRefresh). */
void vss_conn_drop_token(struct vss_conn *conn);
/* Fetches connectionData from base and keeps its locations; runs the loop until done. */
int vss_conn_connect_sync(struct vss_conn *conn, struct error *err);
bool vss_conn_connected(const struct vss_conn *conn);
/* The same, on the loop: done(0 or negative, err, user) once the locations are known. */
typedef void vss_connect_fn(int rc, const struct error *err, void *user);
int vss_conn_connect_start(struct vss_conn *conn, vss_connect_fn *done, void *user,
                           struct error *err);
/* As vss_locations_url, on the connection's base and locations. */
char *vss_conn_url(const struct vss_conn *conn, const char *guid, const char *const *route,
                   const char *query, struct error *err);

struct vss_call_options {
    const char *method;
    const char *url;
    const json_t *json;       /* a JSON body, or: */
    const void *body;         /* raw bytes, with */
    size_t body_len;          /*   their length and */
    const char *content_type; /*   type (default application/octet-stream) */
    unsigned timeout_ms;      /* 0: 100 s */
    int retries;              /* for idempotent methods: transient errors */
    bool anonymous;           /* no Authorization header (connectionData) */
    http_done_fn on_done;     /* err: no response, or the OAuth token could not be had */
    void *user;
};

struct vss_call;
/* Starts a call on the connection's loop; NULL with err set when it cannot start. */
struct vss_call *vss_call_start(struct vss_conn *conn, const struct vss_call_options *options,
                                struct error *err);
/* Stops a call; its on_done still comes, with -ECANCELED. */
void vss_call_cancel(struct vss_call *call);
/* One call, running the loop until it ends. 0 when a response came (any status; *out holds it,
 * free with http_response_free), negative with err set otherwise. */
int vss_call_sync(struct vss_conn *conn, const struct vss_call_options *options,
                  struct http_response *out, struct error *err);

/* --- action download info (§8.2) ----------------------------------------------------------- */

/* The plan a job belongs to: the route of job-scoped calls. scope NULL = the empty GUID, hub
 * NULL = "actions". */
struct vss_plan_ids {
    const char *scope, *hub, *plan, *job;
};

/* One repository action to resolve: owner/repo, the ref as written, the sub-folder ("" none). */
struct vss_action_reference {
    const char *name_with_owner, *ref, *path;
};

/* What the service said about one action. key is "<nameWithOwner>@<ref>" as the service keyed
 * it (the runner looks it up exactly, case-sensitively). token and the package members are NULL
 * when absent. */
struct vss_action_download_info {
    char *key;
    char *name_with_owner, *resolved_name_with_owner, *ref, *resolved_sha;
    char *tarball_url, *zipball_url;
    char *token;
    char *package_version, *package_digest;
};

struct vss_action_download_infos {
    struct vss_action_download_info *items;
    size_t count;
};

/* Reads a 200 answer's body; negative with err when it is not the expected JSON. */
int vss_action_download_infos_parse(const char *body, size_t len,
                                    struct vss_action_download_infos *out, struct error *err);
void vss_action_download_infos_free(struct vss_action_download_infos *infos);

/* done: rc 0 with infos (the callee frees them after done returns), or negative with err
 * (VSS_ERROR_ACTION_UNRESOLVABLE: do not try again; -ECANCELED: cancelled). */
typedef void vss_action_download_info_fn(int rc, const struct error *err,
                                         const struct vss_action_download_infos *infos, void *user);

struct vss_action_download_info_call;
/* POSTs the references to actiondownloadinfo with the connection's (job) token, after
 * fetching connectionData when the connection has no locations yet. One try: the caller
 * decides about another. NULL with err set when it cannot start (done is then not called). */
struct vss_action_download_info_call *
vss_action_download_info_start(struct vss_conn *conn, const struct vss_plan_ids *ids,
                               const struct vss_action_reference *actions, size_t count,
                               vss_action_download_info_fn *done, void *user, struct error *err);
/* Stops it; done still comes, from the loop, with -ECANCELED. */
void vss_action_download_info_cancel(struct vss_action_download_info_call *call);

#endif
