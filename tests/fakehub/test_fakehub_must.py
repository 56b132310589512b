"""One or more tests for each MUST of PROTOCOL.md §11.2 that concerns the classic flow, numbered
as there; each refusal is also checked in fakehub's request log."""
import base64
import json
import threading
import time
import uuid

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import fakehub as fh
import spec_client as sc
from fh_helpers import deliver_job

ALL_GUIDS = set(sc.LOC.values())


def refused_with(admin, text):
    return [x for x in admin.refusals() if text in x["refused"]]


# --- 1. connectionData --------------------------------------------------------------------------

@pytest.mark.parametrize("options", ["0", "1"])
def test_1_connection_data_anonymous_and_full(hub, options):
    r = sc.request("GET", hub.tenant_url + f"_apis/connectionData?connectOptions={options}&lastChangeId=-1")
    assert r.status == 200
    defs = r.json()["locationServiceData"]["serviceDefinitions"]
    assert ALL_GUIDS <= {d["identifier"] for d in defs}
    for d in defs:
        assert d["resourceVersion"] >= 1 and d["minVersion"] == "1.0"
        assert tuple(map(int, d["maxVersion"].split("."))) >= (7, 1)


def test_1_connection_data_at_the_job_base_url(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    url = next(e for e in job["resources"]["endpoints"] if e["name"] == "SystemVssConnection")["url"]
    reply = sc.request("GET", url.rstrip("/") + "/_apis/connectionData?connectOptions=1")
    assert reply.status == 200 and {d["identifier"] for d in reply.json()["locationServiceData"]["serviceDefinitions"]} >= ALL_GUIDS
    assert sc.request("OPTIONS", hub.tenant_url + "_apis/").status == 200


# --- 2. Bearer challenges and token kinds -------------------------------------------------------

def test_2_every_tenant_endpoint_challenges_without_token(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    urls = [("GET", r.loc.url(sc.LOC["pools"])),
            ("GET", r.loc.url(sc.LOC["agents"], {"poolId": 0})),
            ("POST", r.loc.url(sc.LOC["sessions"], {"poolId": 1})),
            ("GET", r.loc.url(sc.LOC["messages"], {"poolId": 1}, {"sessionId": r.session["sessionId"]})),
            ("PATCH", r.loc.url(sc.LOC["jobrequests"], {"poolId": 1, "requestId": job["requestId"]})),
            ("PATCH", w.loc.url(sc.LOC["records"], w.values(timelineId=w.timeline_id))),
            ("POST", w.loc.url(sc.LOC["logs"], w.values())),
            ("POST", w.loc.url(sc.LOC["events"], w.values()))]
    for method, url in urls:
        reply = sc.request(method, url, {})
        assert reply.status == 401, (method, url, reply)
        assert "bearer" in reply.header("WWW-Authenticate").lower()


def test_2_wrong_token_kind_is_refused_and_recorded(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    # a job token where the runner token is needed
    reply = sc.request("POST", r.loc.url(sc.LOC["sessions"], {"poolId": r.pool_id}), {"agent": {"id": 1}},
                       {"Authorization": f"Bearer {w.token}"})
    assert reply.status == 401
    # the runner token where the job token is needed
    reply = w.records([{"id": job["jobId"], "state": "inProgress"}], token=r.token)
    assert reply.status == 401
    # the registration-exchange token where the runner token is needed
    reply = sc.request("GET", r.loc.url(sc.LOC["messages"], {"poolId": 1}, {"sessionId": r.session["sessionId"]}),
                       headers={"Authorization": f"Bearer {r.admin_token}"})
    assert reply.status == 401
    kinds = refused_with(admin, "wrong token kind")
    assert len(kinds) == 3
    assert "job token" in kinds[0]["refused"] and "runner OAuth token" in kinds[1]["refused"]


# --- 3. token endpoint --------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_3_token_endpoint_accepts_rs256_and_ps256(hub, runner, alg):
    r = runner(session=False)
    reply = r.token_request(r.assertion(alg=alg))
    assert reply.status == 200, reply
    body = reply.json()
    assert body["token_type"] == "bearer" and body["access_token"].count(".") == 2


def test_3_bad_signature_refused(hub, admin, runner):
    r = runner(session=False)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    reply = r.token_request(r.assertion(key=other))
    assert reply.status == 400 and reply.json()["error"] == "invalid_client"
    # a PS256 header over an RS256 signature
    good = r.assertion(alg="RS256").split(".")
    forged = sc.b64url(json.dumps({"typ": "JWT", "alg": "PS256"}).encode()) + "." + good[1] + "." + good[2]
    assert r.token_request(forged).status == 400
    assert r.token_request(r.assertion(alg="none")).status == 400
    assert len(refused_with(admin, "does not verify")) == 2
    assert refused_with(admin, "'none'")


def test_3_unknown_client_is_invalid_client(hub, runner):
    r = runner(session=False)
    reply = r.token_request(r.assertion(sub=str(uuid.uuid4())))
    assert reply.status == 400 and reply.json()["error"] == "invalid_client"


def test_3_clock_skew_of_five_minutes_allowed(hub, runner):
    r = runner(session=False)
    assert r.token_request(r.assertion(now=time.time() - 290 - 300)).status == 200   # expired 290 s ago
    assert r.token_request(r.assertion(now=time.time() + 290)).status == 200         # valid in 290 s
    late = r.token_request(r.assertion(now=time.time() - 320 - 300))
    early = r.token_request(r.assertion(now=time.time() + 320))
    for reply in (late, early):
        assert reply.status == 400
        err = reply.json()
        # the official runner reads invalid_client as "registration deleted" before it looks
        # for the clock-skew text, so a skew refusal must carry another error code
        assert err["error"] != "invalid_client" and "Current server time is" in err["error_description"]


def test_3_reused_jti_refused(hub, admin, runner):
    r = runner(session=False)
    jti = str(uuid.uuid4())
    assert r.token_request(r.assertion(jti=jti)).status == 200
    reply = r.token_request(r.assertion(jti=jti))
    assert reply.status == 400 and "already used" in reply.json()["error_description"]
    assert refused_with(admin, "already used")


def test_3_wrong_audience_and_malformed_requests_refused(hub, admin, runner):
    r = runner(session=False)
    assert r.token_request(r.assertion(aud=hub.url + "/elsewhere")).status == 400
    assert r.token_request(r.assertion(), content_type="application/json").status == 400
    form = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": r.assertion()}
    assert r.token_request(form=form).json()["error"] == "unsupported_grant_type"
    form = {"grant_type": "client_credentials", "client_assertion": r.assertion()}
    assert r.token_request(form=form).json()["error"] == "invalid_request"
    assert r.token_request(r.assertion(extra={"exp": None})).status == 400
    reasons = [x["refused"] for x in admin.refusals()]
    assert any("aud" in x for x in reasons) and any("Content-Type" in x for x in reasons)
    assert any("exp claim" in x for x in reasons)


# --- 4. agents ------------------------------------------------------------------------------------

def test_4_post_agents_assigns_ids_and_echoes_flags(hub, admin):
    r = sc.Runner(hub.url + "/octo-org/octo-repo", name="flags")
    agent = r.register(admin.registration_token(), ephemeral=True, disable_update=True)
    assert isinstance(agent["id"], int) and agent["id"] > 0
    uuid.UUID(agent["authorization"]["clientId"])
    assert agent["authorization"]["authorizationUrl"] == hub.tenant_url + "_apis/oauth2/token"
    assert agent["ephemeral"] is True and agent["disableUpdate"] is True
    assert agent["properties"]["RequireFipsCryptography"]["$type"] == "System.Boolean"
    assert agent["authorization"]["publicKey"] == r.agent_body()["authorization"]["publicKey"]


def test_4_name_collision_and_listing(hub, admin):
    r = sc.Runner(hub.url + "/octo-org/octo-repo", name="dup")
    r.register(admin.registration_token())
    auth = {"Authorization": f"Bearer {r.admin_token}"}
    reply = sc.request("POST", r.loc.url(sc.LOC["agents"], {"poolId": 1}), sc.Runner(r.github_url, "DUP").agent_body(),
                       auth)
    assert reply.status == 409 and reply.json()["typeKey"] == "TaskAgentExistsException"
    for pool, count in ((0, 1), (1, 1), (2, 0)):
        found = sc.request("GET", r.loc.url(sc.LOC["agents"], {"poolId": pool}, {"agentName": "Dup"}), headers=auth)
        assert found.json()["count"] == count, pool
    assert sc.request("GET", r.loc.url(sc.LOC["agents"], {"poolId": 0}, {"agentName": "nobody"}),
                      headers=auth).json() == {"count": 0, "value": []}


def test_4_missing_member_and_small_key_refused(hub, admin):
    r = sc.Runner(hub.url + "/octo-org/octo-repo", name="strict")
    reg = r.exchange(admin.registration_token()).json()
    loc = sc.discover(reg["url"])
    auth = {"Authorization": f"Bearer {reg['token']}"}
    url = loc.url(sc.LOC["agents"], {"poolId": 1})
    body = r.agent_body()
    del body["authorization"]
    reply = sc.request("POST", url, body, auth)
    assert reply.status == 400 and "authorization" in reply.json()["message"]
    body = r.agent_body()
    del body["name"]
    assert sc.request("POST", url, body, auth).status == 400
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers()
    body = r.agent_body()
    body["authorization"]["publicKey"]["modulus"] = sc.b64(sc.unsigned(small.n))
    assert sc.request("POST", url, body, auth).status == 400
    assert sc.request("POST", url, json.dumps(r.agent_body()), dict(auth, **{"Content-Type": "text/plain"})).status == 415
    assert len(admin.refusals()) == 4 and admin.agents() == []


def test_4_pascal_case_agent_body_is_read(hub, admin):
    """github-act-runner writes PascalCase (§1.1.2): GitHub reads it."""
    r = sc.Runner(hub.url + "/octo-org/octo-repo", name="pascal")
    reg = r.exchange(admin.registration_token()).json()
    loc = sc.discover(reg["url"])
    body = r.agent_body(ephemeral=True)

    def pascal(x):
        if isinstance(x, dict):
            return {k[:1].upper() + k[1:]: pascal(v) for k, v in x.items()}
        if isinstance(x, list):
            return [pascal(v) for v in x]
        return x
    reply = sc.request("POST", loc.url(sc.LOC["agents"], {"poolId": 1}), pascal(body),
                       {"Authorization": f"Bearer {reg['token']}"})
    assert reply.status == 200, reply
    assert reply.json()["name"] == "pascal" and reply.json()["ephemeral"] is True


def test_4_replace_and_delete(hub, admin, runner):
    old = runner(name="same")
    new = sc.Runner(hub.url + "/octo-org/octo-repo", name="same")
    agent = new.register(admin.registration_token(), replace=True)
    assert agent["id"] == old.agent_id
    assert old.token_request(old.assertion()).status == 400        # the old key no longer signs for it
    assert new.token_request(new.assertion()).status == 200
    auth = {"Authorization": f"Bearer {new.admin_token}"}
    assert sc.request("DELETE", new.loc.url(sc.LOC["agents"], {"poolId": 0, "agentId": agent["id"]}),
                      headers=auth).status in (200, 204)
    assert admin.agents() == []
    assert new.token_request(new.assertion()).json()["error"] == "invalid_client"


def test_4_registration_exchange_refusals(hub, admin):
    r = sc.Runner(hub.url + "/octo-org/octo-repo")
    assert r.exchange("NOTATOKEN").status == 404
    assert r.exchange(admin.registration_token(kind="remove")).status == 404           # wrong kind
    assert r.exchange(admin.registration_token(expires_in=-1)).status == 404           # expired
    token = admin.registration_token()
    reply = sc.request("POST", r.api + "/actions/runner-registration", {"url": r.github_url, "runner_event": "register"},
                       {"Authorization": f"Bearer {token}"})
    assert reply.status == 401
    reply = sc.request("POST", r.api + "/actions/runner-registration", {"runner_event": "register"},
                       {"Authorization": f"RemoteAuth {token}"})
    assert reply.status == 400
    ok = r.exchange(token).json()
    assert ok["url"].startswith(hub.url + "/") and ok["use_v2_flow"] is False   # same host:port (§2.5)
    assert r.exchange(admin.registration_token(kind="remove"), event="remove").status == 200
    assert len(admin.refusals()) == 5


def test_4_pat_helpers(hub, admin):
    api = hub.url + "/api/v3/repos/octo-org/octo-repo/actions/runners/registration-token"
    basic = base64.b64encode(f"github:{hub.pat}".encode()).decode()
    reply = sc.request("POST", api, headers={"Authorization": f"basic {basic}"})
    assert reply.status == 201, reply
    r = sc.Runner(hub.url + "/octo-org/octo-repo", name="via-pat")
    r.register(reply.json()["token"])
    bad = base64.b64encode(b"github:nope").decode()
    assert sc.request("POST", api, headers={"Authorization": f"basic {bad}"}).status == 401


# --- 5. sessions ----------------------------------------------------------------------------------

def test_5_second_session_conflicts(hub, admin, runner):
    r = runner()
    reply = r.create_session()
    assert reply.status == 409
    body = reply.json()
    assert body["typeKey"] == "TaskAgentSessionConflictException"
    assert body["typeName"].startswith("GitHub.DistributedTask.WebApi.TaskAgentSessionConflictException")
    assert r.delete_session().status in (200, 204)
    assert r.create_session().status == 200


def test_5_idle_session_expires(fakehub_factory):
    hub = fakehub_factory(session_expiry=1.0, poll_hold=0.5)
    admin = fh.FakeHubClient(hub.url)
    r = sc.Runner(hub.url + "/octo-org/octo-repo")
    r.register(admin.registration_token())
    r.connect()
    assert r.create_session().status == 200
    old = dict(r.session)
    for _ in range(4):                     # polling keeps it alive
        assert r.poll()[1].status == 204
    time.sleep(1.6)
    msg, reply = r.poll()
    assert reply.status == 404 and reply.json()["typeKey"] == "TaskAgentSessionExpiredException"
    assert r.create_session().status == 200 and r.session["sessionId"] != old["sessionId"]
    hub.settings.set("session_expired_status", 403)
    r.session = old
    assert r.poll()[1].status == 403


@pytest.mark.parametrize("fips", [True, False])
def test_5_session_key_wrapping(hub, admin, runner, fips):
    admin.settings(fips_encryption=fips)
    r = runner(session=False)
    reply = r.create_session()
    s = reply.json()
    assert s["useFipsEncryption"] is fips and s["encryptionKey"]["encrypted"] is True
    wrapped = base64.b64decode(s["encryptionKey"]["value"])
    assert len(wrapped) == 256
    right = hashes.SHA256() if fips else hashes.SHA1()
    wrong = hashes.SHA1() if fips else hashes.SHA256()
    key = r.key.decrypt(wrapped, padding.OAEP(mgf=padding.MGF1(right), algorithm=right, label=None))
    assert len(key) == 32
    with pytest.raises(ValueError):
        r.key.decrypt(wrapped, padding.OAEP(mgf=padding.MGF1(wrong), algorithm=wrong, label=None))


def test_5_session_for_another_agent_refused(hub, admin, runner):
    a = runner()
    b = runner(session=False)
    body = {"ownerName": "x", "agent": {"id": a.agent_id, "name": a.name}}
    reply = b.vss("POST", "sessions", {"poolId": 1}, body=body)
    assert reply.status == 403 and reply.json()["typeKey"] == "AccessDeniedException"
    reply = b.vss("POST", "sessions", {"poolId": 1}, body={"ownerName": "x"})
    assert reply.status == 400 and "agent" in reply.json()["message"]


# --- 6. messages ----------------------------------------------------------------------------------

def test_6_poll_is_held_then_204(hub, admin, runner):
    assert fh.Settings.DEFAULTS["poll_hold"] <= 50
    admin.settings(poll_hold=2.0)
    r = runner()
    t0 = time.time()
    msg, reply = r.poll()
    assert msg is None and reply.status == 204 and reply.body == b""
    assert 1.8 <= time.time() - t0 < 5


def test_6_a_queued_job_ends_the_hold_at_once(hub, admin, runner):
    r = runner()
    threading.Timer(0.3, lambda: admin.queue_job(fh.minimal_job_message())).start()
    t0 = time.time()
    msg, reply = r.poll()
    assert msg is not None and time.time() - t0 < 1.5


def test_6_message_ids_increase_and_bodies_are_encrypted(hub, admin, runner):
    r = runner()
    ids = []
    for i in range(3):
        admin.send_message(r.name, "ForceTokenRefresh", {})
        msg, reply = r.poll()
        raw = reply.json()
        # Encrypted: AES blocks, not the "{}" it carries.
        body = base64.b64decode(raw["body"])
        assert raw["iv"] and len(body) % 16 == 0 and body.strip() != b"{}"
        assert msg["messageType"] == "ForceTokenRefresh" and msg["json"] == {}
        assert r.delete_message(msg["messageId"]).status == 204
        ids.append(msg["messageId"])
    assert ids == sorted(set(ids))


def test_6_plaintext_bom_is_optional(hub, admin, runner):
    r = runner()
    admin.send_message(r.name, "ForceTokenRefresh", {})
    admin.settings(message_bom=False)
    msg, reply = r.poll()
    assert not msg["plaintext"].startswith(b"\xef\xbb\xbf")
    r.delete_message(msg["messageId"])
    admin.settings(message_bom=True)
    admin.send_message(r.name, "ForceTokenRefresh", {})
    msg, reply = r.poll()
    iv = base64.b64decode(reply.json()["iv"])
    assert len(iv) == 16


def test_6_undeleted_job_message_is_redelivered(hub, admin, runner):
    r = runner()
    job, msg, _q = deliver_job(r, admin, renew=False, ack=False)
    again, _ = r.poll(status="Online")
    assert again["messageId"] == msg["messageId"] and again["json"]["jobId"] == job["jobId"]
    assert r.delete_message(msg["messageId"]).status == 204
    assert r.poll()[0] is None


def test_6_delete_of_unknown_message_succeeds(hub, runner):
    r = runner()
    assert r.delete_message(987654).status in (200, 204)


def test_6_busy_runner_gets_no_job(hub, admin, runner):
    r = runner()
    admin.queue_job(fh.minimal_job_message())
    msg, reply = r.poll(status="Busy")
    assert msg is None and reply.status == 204
    msg, reply = r.poll(status="Online")
    assert msg is not None
    r.delete_message(msg["messageId"])
    admin.queue_job(fh.minimal_job_message())
    msg, reply = r.poll(status="Online")     # says Online, but holds an unfinished job
    assert msg is None


def test_6_a_new_poll_supersedes_the_pending_one(hub, admin, runner):
    """The official runner aborts its pending GET when its status changes and polls again (§4.2)."""
    admin.settings(poll_hold=10.0)
    r = runner()
    out = {}

    def first():
        t0 = time.time()
        out["first"] = r.poll(status="Online")
        out["t"] = time.time() - t0
    t = threading.Thread(target=first)
    t.start()
    time.sleep(0.5)
    threading.Timer(1.0, lambda: admin.queue_job(fh.minimal_job_message())).start()
    second, _reply = r.poll(status="Online")
    t.join(10)
    assert out["first"][0] is None and out["first"][1].status == 204 and out["t"] < 1.5
    assert second is not None and second["messageType"] == "PipelineAgentJobRequest"


def test_6_deleted_session_puts_the_undeleted_job_back(hub, admin, runner):
    a = runner()
    job, msg, _q = deliver_job(a, admin, renew=False, ack=False)
    assert a.delete_session().status in (200, 204)
    b = runner()
    again, _ = b.poll()
    assert again is not None and again["json"]["jobId"] == job["jobId"]
    assert admin.job(job["requestId"])["assignments"] == 2


# --- 7. job requests ------------------------------------------------------------------------------

def test_7_renewal_grants_ten_minutes(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    reply = r.renew(job["requestId"])
    body = reply.json()
    until = fh.parse_iso(body["lockedUntil"])
    assert 590 < until - time.time() < 610
    assert body["reservedAgent"]["name"] == r.name and body["requestId"] == job["requestId"]


def test_7_renewal_needs_lock_token_and_own_job(hub, admin, runner):
    a = runner()
    b = runner()
    job, _msg, _q = deliver_job(a, admin)
    reply = a.vss("PATCH", "jobrequests", {"poolId": 1, "requestId": job["requestId"]}, None,
                  {"requestId": job["requestId"]})
    assert reply.status == 400
    reply = b.renew(job["requestId"])
    assert reply.status == 404 and reply.json()["typeKey"] == "TaskAgentJobNotFoundException"
    reply = a.vss("PATCH", "jobrequests", {"poolId": 1, "requestId": job["requestId"]},
                  {"lockToken": fh.EMPTY_GUID}, {"requestId": job["requestId"] + 1})
    assert reply.status == 400


def test_7_unrenewed_lock_abandons_the_job(hub, admin, runner):
    admin.settings(lock_seconds=1.0)
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    done = admin.wait_job(job["requestId"], timeout=5)
    assert done["result"] == "abandoned" and done["completedVia"] == "lock-expired"
    reply = r.renew(job["requestId"])
    assert reply.status == 404 and reply.json()["typeKey"] == "TaskAgentJobNotFoundException"


def test_7_plan_version_below_8_finishes_by_patch(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin, plan_version=7)
    assert job["plan"]["version"] == 7
    reply = r.finish(job["requestId"], "failed")
    assert reply.status == 200 and reply.json()["result"] == "failed"
    done = admin.job(job["requestId"])
    assert done["result"] == "failed" and done["completedVia"] == "finish"


def test_7_job_completed_event(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    assert w.completed("succeededWithIssues", {"a": "1"}).status == 204
    done = admin.job(job["requestId"])
    assert (done["result"], done["completedVia"], done["outputs"]) == ("succeededWithIssues", "event", {"a": "1"})
    assert w.completed("succeeded", name="jobCompleted").status == 400     # names are case-sensitive


# --- 8. the job message ---------------------------------------------------------------------------

def test_8_job_message_shape(hub, admin, runner):
    r = runner()
    job, msg, q = deliver_job(r, admin, fh.minimal_job_message(outputs={"x": "steps.a.outputs.b"}))
    for key in ("messageType", "plan", "timeline", "jobId", "jobDisplayName", "jobName", "requestId", "resources",
                "variables", "contextData", "steps"):
        assert key in job, key
    for key in ("scopeIdentifier", "planType", "version", "planId"):
        assert key in job["plan"]
    assert job["plan"]["version"] >= 8
    ep = [e for e in job["resources"]["endpoints"] if e["name"] == "SystemVssConnection"]
    assert len(ep) == 1 and ep[0]["authorization"]["scheme"] == "OAuth"
    token = ep[0]["authorization"]["parameters"]["AccessToken"]
    parts = token.split(".")
    assert len(parts) == 3
    for p in parts[:2]:
        assert isinstance(json.loads(base64.urlsafe_b64decode(p + "===")), dict)
    assert job["variables"]["system.github.token"]["isSecret"] is True
    assert job["contextData"]["github"]["t"] == 2
    pairs = job["jobOutputs"]["map"]
    assert set(pairs[0]) == {"key", "value"}
    assert fh.is_guid(job["jobId"]) and fh.is_guid(job["timeline"]["id"])
    tl = admin.job(job["requestId"], "timeline")
    assert [x["id"] for x in tl["records"]] == [job["jobId"]] and tl["records"][0]["type"] == "Job"


# --- 9. timeline, logs, feed, attachments ---------------------------------------------------------

def test_9_records_patch_returns_wrapped_list_and_reads_enums(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    step = str(uuid.uuid4())
    reply = w.records([{"Id": step, "ParentId": job["jobId"], "Type": "Task", "State": "InProgress", "Order": 2},
                       {"id": job["jobId"], "state": 1}])
    body = reply.json()
    assert reply.status == 200 and body["count"] == 2 and len(body["value"]) == 2
    assert body["value"][0]["state"] == "inProgress" and body["value"][1]["state"] == "inProgress"
    w.records([{"id": step, "state": "COMPLETED", "result": 2, "issues": [{"type": "error", "message": "x"}]}])
    recs = {x["id"]: x for x in admin.job(job["requestId"], "timeline")["records"]}
    assert recs[step]["result"] == "failed" and recs[step]["parentId"] == job["jobId"] and recs[step]["order"] == 2
    assert w.records([{"id": step, "state": "sideways"}]).status == 400
    assert w.records([{"state": "pending"}]).status == 400
    assert w.call("PATCH", "records", w.values(timelineId=w.timeline_id), {"count": 0}).status == 400


def test_9_logs_fresh_ids_appends_and_bom(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    a, b = w.create_log("x").json(), w.create_log("y").json()
    assert a["id"] != b["id"] and a["path"] == "logs\\x"
    for part in (b"\xef\xbb\xbfpage one\n", b"\xef\xbb\xbfpage two\n"):
        assert w.append_log(a["id"], part).status == 200
    assert w.append_log(a["id"], b"{}", content_type="application/json").status == 415
    assert w.append_log(999, b"x").status == 404
    w.records([{"id": job["jobId"], "log": a}])      # the whole TaskLog, as the official runner sends it
    logs = admin.job(job["requestId"], "logs")
    assert logs["logs"][str(a["id"])]["text"] == "page one\npage two\n"
    assert logs["records"][job["jobId"]] == "page one\npage two\n"
    assert len(refused_with(admin, "octet-stream")) == 1


def test_9_feed_keys_on_step_id_then_route(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    step = str(uuid.uuid4())
    assert w.feed(step, ["a", "b"]).status in (200, 204)
    body = {"count": 1, "value": ["c"]}
    assert w.call("POST", "feed", w.values(timelineId=w.timeline_id, recordId=step), body).status in (200, 204)
    assert admin.job(job["requestId"], "feed")[step] == ["a", "b", "c"]
    assert w.call("POST", "feed", w.values(timelineId=w.timeline_id, recordId=step), {"count": 1}).status == 400


def test_9_attachments(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    step = str(uuid.uuid4())
    reply = w.summary(step, "# hi")
    assert reply.status == 200 and reply.json()["type"] == "Checks.Step.Summary" and reply.json()["name"] == step
    assert w.summary(step, "# hi", content_type="text/markdown").status == 415
    assert admin.job(job["requestId"], "summaries") == {step: "# hi"}


def test_9_job_token_is_scoped_to_its_plan(hub, admin, runner):
    a, b = runner(), runner()
    job_a, _m, _q = deliver_job(a, admin)
    job_b, _m, _q = deliver_job(b, admin)
    wa, wb = sc.Worker(job_a), sc.Worker(job_b)
    reply = wa.call("PATCH", "records", wb.values(timelineId=wb.timeline_id), {"count": 0, "value": []})
    assert reply.status == 403 and reply.json()["typeKey"] == "TaskOrchestrationPlanSecurityException"
    reply = wa.call("PATCH", "records", wa.values(timelineId=wb.timeline_id), {"count": 0, "value": []})
    assert reply.status == 404


# --- 11. cancellation -----------------------------------------------------------------------------

def test_11_cancellation_waits_two_seconds_after_delivery(hub, admin, runner):
    r = runner()
    job, msg, q = deliver_job(r, admin)
    t_delivered = admin.job(job["requestId"])["times"]["delivered"]       # the server's clock is ours
    admin.cancel_job(job["requestId"])
    cancel = None
    while cancel is None:
        cancel, reply = r.poll(status="Busy")
    assert time.time() - t_delivered >= 2.0
    assert cancel["messageType"] == "JobCancellation" and cancel["json"]["jobId"] == job["jobId"]
    assert cancel["json"]["timeout"] == "00:05:00"


def test_11_job_timeout_sends_a_cancellation(hub, admin, runner):
    admin.settings(cancel_delay=0.0)
    r = runner()
    job, msg, q = deliver_job(r, admin, timeout_minutes=0.02)
    cancel = None
    t0 = time.time()
    while cancel is None and time.time() - t0 < 10:
        cancel, reply = r.poll(status="Busy")
    assert cancel is not None and cancel["messageType"] == "JobCancellation"
    assert admin.job(job["requestId"])["cancelSent"] is True


# --- 12. case-insensitive reading, enums as names or numbers --------------------------------------

def test_12_pascal_case_job_completed(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    body = {"Name": "JobCompleted", "JobID": job["jobId"], "RequestID": job["requestId"], "Result": "Succeeded",
            "Outputs": {"o": {"Value": "v"}}}
    assert w.call("POST", "events", w.values(), body).status == 204
    assert admin.job(job["requestId"])["outputs"] == {"o": "v"}
    assert admin.job(job["requestId"])["result"] == "succeeded"


def test_12_numeric_result(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    assert sc.Worker(job).completed(3).status == 204
    assert admin.job(job["requestId"])["result"] == "canceled"


# --- 13. errors -----------------------------------------------------------------------------------

def test_13_too_old_runner_refused_on_the_poll_not_the_session(hub, admin, runner):
    admin.settings(min_runner_version="2.400.0")
    r = runner()                      # the session is created
    msg, reply = r.poll()
    body = reply.json()
    assert reply.status == 403 and body["typeKey"] == "AccessDeniedException" and body["errorCode"] == 1
    assert body["$id"] == "1" and "typeName" in body and "message" in body


def test_13_deleted_runner_polls_agent_not_found(hub, admin, runner):
    r = runner()
    admin.delete_agent(r.name)
    msg, reply = r.poll()
    assert reply.status == 404 and reply.json()["typeKey"] == "TaskAgentNotFoundException"
    assert r.token_request(r.assertion()).json()["error"] == "invalid_client"


# --- 14. JIT configuration ------------------------------------------------------------------------

def test_14_jit_blob_shaped_like_githubs_and_usable(hub, admin):
    api = hub.url + "/api/v3/repos/octo-org/octo-repo/actions/runners/generate-jitconfig"
    reply = sc.request("POST", api, {"name": "jit-1", "runner_group_id": 1, "labels": ["self-hosted", "jit"]},
                       {"Authorization": f"Bearer {hub.pat}"})
    assert reply.status == 201, reply
    files = json.loads(base64.b64decode(reply.json()["encoded_jit_config"]))
    decoded = {k: base64.b64decode(v) for k, v in files.items()}
    assert set(decoded) == {".runner", ".credentials", ".credentials_rsaparams"}
    for raw in decoded.values():
        assert not raw.startswith(b"\xef\xbb\xbf")
    runner_file = json.loads(decoded[".runner"])
    for k in ("AgentId", "PoolId", "Ephemeral", "DisableUpdate"):
        assert isinstance(runner_file[k], str), k
    assert runner_file["GitHubUrl"] == hub.url + "/octo-org/octo-repo"
    creds = json.loads(decoded[".credentials"])
    params = json.loads(decoded[".credentials_rsaparams"])
    n = int.from_bytes(base64.b64decode(params["modulus"]), "big")
    nums = rsa.RSAPrivateNumbers(
        p=int.from_bytes(base64.b64decode(params["p"]), "big"), q=int.from_bytes(base64.b64decode(params["q"]), "big"),
        d=int.from_bytes(base64.b64decode(params["d"]), "big"), dmp1=int.from_bytes(base64.b64decode(params["dp"]), "big"),
        dmq1=int.from_bytes(base64.b64decode(params["dq"]), "big"),
        iqmp=int.from_bytes(base64.b64decode(params["inverseQ"]), "big"),
        public_numbers=rsa.RSAPublicNumbers(65537, n))
    r = sc.Runner(runner_file["GitHubUrl"], name="jit-1")
    r.key = nums.private_key()
    r.client_id = creds["Data"]["ClientId"]
    r.authorization_url = creds["Data"]["AuthorizationUrl"]
    r.fips = creds["Data"]["RequireFipsCryptography"] == "True"
    r.tenant, r.agent_id, r.pool_id = runner_file["ServerUrl"], int(runner_file["AgentId"]), int(runner_file["PoolId"])
    r.connect()
    assert r.create_session().status == 200
    assert [a for a in admin.agents() if a["name"] == "jit-1"][0]["ephemeral"] is True
    assert sc.request("POST", api, {"name": "jit-2"}, {"Authorization": f"Bearer {hub.pat}"}).status == 400


# --- action download info and tarballs (§8.2, §8.4) -----------------------------------------------

def test_actions_download_info_and_tarball_auth(hub, admin, runner):
    admin.add_action("Octo/Act", "v2", {"action.yml": "name: a\n"})
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    reply = w.download_info([{"nameWithOwner": "octo/act", "ref": "v2", "path": ""}])
    assert reply.status == 200 and list(reply.json()["actions"]) == ["octo/act@v2"]   # key as written
    info = reply.json()["actions"]["octo/act@v2"]
    assert len(info["resolvedSha"]) == 40
    missing = w.download_info([{"nameWithOwner": "octo/act", "ref": "v9"}])
    assert missing.status == 422 and missing.json()["typeKey"] == "UnresolvableActionDownloadInfoException"
    url = info["tarballUrl"]
    assert sc.request("GET", url).status == 401
    bad = base64.b64encode(b"x-access-token:nope").decode()
    assert sc.request("GET", url, headers={"Authorization": f"Basic {bad}"}).status == 403
    gh = job["variables"]["system.github.token"]["value"]      # the job's GITHUB_TOKEN works too
    ok = base64.b64encode(f"x-access-token:{gh}".encode()).decode()
    assert sc.request("GET", url, headers={"Authorization": f"Basic {ok}"}).status == 200


# --- 10. results service (classic jobs dual-write when system.github.results_endpoint is set) ------

def test_10_results_service(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin, results=True)
    base = job["variables"]["system.github.results_endpoint"]["value"]
    assert base.endswith("/results/")
    w = sc.Worker(job)
    auth = {"Authorization": f"Bearer {w.token}"}
    ids = {"workflow_run_backend_id": job["plan"]["planId"], "workflow_job_run_backend_id": job["jobId"]}
    step = str(uuid.uuid4())
    rx = base + "twirp/results.services.receiver.Receiver/"

    reply = sc.request("POST", rx + "GetStepLogsSignedBlobURL", dict(ids, step_backend_id=step), auth)
    assert reply.status == 200, reply
    got = reply.json()
    assert "?" in got["logs_url"] and isinstance(got["soft_size_limit"], str) and int(got["soft_size_limit"]) > 0
    url = got["logs_url"]
    assert sc.request("PUT", url, b"", {"x-ms-blob-type": "AppendBlob", "Content-Length": "0"}).status == 201
    assert sc.request("PUT", url + "&comp=appendblock", b"\xef\xbb\xbfline 1\n",
                      {"x-ms-blob-sealed": "False"}).status == 201
    assert sc.request("PUT", url + "&comp=appendblock&seal=true", b"\xef\xbb\xbfline 2\n",
                      {"x-ms-blob-sealed": "True"}).status == 201
    assert sc.request("PUT", url + "&comp=appendblock", b"late\n").status == 409
    assert sc.request("PUT", url.split("?")[0] + "?sig=wrong", b"x").status == 403
    meta = dict(ids, step_backend_id=step, uploaded_at="2026-05-01T12:00:02.456Z", line_count=2)
    assert sc.request("POST", rx + "CreateStepLogsMetadata", meta, auth).json() == {"ok": True}

    got = sc.request("POST", rx + "GetStepSummarySignedBlobURL", dict(ids, step_backend_id=step), auth).json()
    assert int(got["soft_size_limit"]) > 0
    assert sc.request("PUT", got["summary_url"], b"# sum").status == 201
    steps = {"steps": [{"external_id": step, "number": 1, "name": "Run x", "status": 6,
                        "started_at": "2026-05-01T12:00:01.123Z", "completed_at": "2026-05-01T12:00:02.456Z",
                        "conclusion": 2}],
             "change_order": 1, **ids}
    reply = sc.request("POST", base + "twirp/github.actions.results.api.v1.WorkflowStepUpdateService/WorkflowStepsUpdate",
                       steps, auth)
    assert reply.json() == {"ok": True}

    res = admin.job(job["requestId"], "results")
    assert res["blobs"][f"step-log:{step}"] == "line 1\nline 2\n"
    assert res["blobs"][f"summary:{step}"] == "# sum"
    assert res["steps"][step]["conclusion"] == 2 and res["metadata"][0]["line_count"] == 2

    wrong = dict(ids, workflow_job_run_backend_id=str(uuid.uuid4()), step_backend_id=step)
    assert sc.request("POST", rx + "GetStepLogsSignedBlobURL", wrong, auth).status == 400
    assert sc.request("POST", rx + "GetStepLogsSignedBlobURL", dict(ids, step_backend_id=step)).status == 401
    assert sc.request("POST", rx + "NoSuchMethod", ids, auth).status == 404


def test_6_busy_runner_leaving_a_job_undeleted_hands_it_back(hub, admin, runner):
    """A run-once runner leaves a second job message undeleted so the service re-queues it (§7.1):
    it goes to another runner, and the busy one is not handed it again at every poll."""
    a = runner()
    b = runner()
    job, msg, _q = deliver_job(a, admin, renew=False, ack=False)
    assert admin.job(job["requestId"])["state"] == "assigned"
    assert a.poll(status="Busy")[0] is None
    again, _ = b.poll()
    assert again is not None and again["json"]["jobId"] == job["jobId"]
    assert admin.job(job["requestId"])["agent"] == b.name and admin.job(job["requestId"])["assignments"] == 2


def test_6_undeleted_started_job_is_a_violation(hub, admin, runner):
    r = runner()
    job, msg, _q = deliver_job(r, admin, ack=False)
    again, _ = r.poll(status="Busy")
    assert again["messageId"] == msg["messageId"]
    assert "not deleted before the next poll" in admin.job(job["requestId"])["violations"][0]


def test_packages_answer_both_listener_and_worker(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    url = w.loc.url(sc.LOC["packages"], {"packageType": "agent", "platform": "linux-x64"}, {"$top": 5, "includeToken": "False"})
    assert sc.request("GET", url, headers={"Authorization": f"Bearer {w.token}"}).json() == {"count": 0, "value": []}
    assert sc.request("GET", url, headers={"Authorization": f"Bearer {r.token}"}).status == 200


def test_removal_as_config_remove_does_it(hub, admin, runner):
    """§2.9: exchange a remove token, find the runner by name in pool 0, delete it."""
    r = runner(name="leaving")
    reg = r.exchange(admin.registration_token(kind="remove"), event="remove").json()
    loc = sc.discover(reg["url"])
    auth = {"Authorization": f"Bearer {reg['token']}"}
    found = sc.request("GET", loc.url(sc.LOC["agents"], {"poolId": 0}, {"agentName": "leaving",
                                                                     "includeCapabilities": "False"}), headers=auth)
    agent_id = found.json()["value"][0]["id"]
    assert sc.request("DELETE", loc.url(sc.LOC["agents"], {"poolId": 0, "agentId": agent_id}),
                      headers=auth).status in (200, 204)
    assert admin.agents() == []
    reply = r.poll()[1]
    assert reply.status == 404 and reply.json()["typeKey"] == "TaskAgentNotFoundException"
