"""The happy path of PROTOCOL.md §10.1 walked by the scripted runner, against both route layouts
fakehub can advertise (the "real" templates and runner.server's): a runner that discovers its
routes works with either; one that hard-codes paths cannot."""
import base64
import gzip
import io
import json
import tarfile
import time
import uuid

import pytest

import fakehub as fh
import spec_client as sc
from fh_helpers import refusals


@pytest.mark.parametrize("routes", ["real", "rs"])
def test_classic_happy_path(fakehub_factory, routes):
    walk_happy_path(fakehub_factory(routes=routes, poll_hold=1.0))


def walk_happy_path(hub):
    admin = fh.FakeHubClient(hub.url)
    admin.add_action("actions/hello", "v1", {"action.yml": "name: hello\nruns:\n  using: node20\n  main: i.js\n",
                                             "i.js": "console.log('hi')\n"})
    r = sc.Runner(hub.url + "/octo-org/octo-repo", name="happy", user_labels=["gpu"])

    # config: exchange, discovery, pools, agents, then the OAuth connection test (§2.6 step 5)
    agent = r.register(admin.registration_token(), disable_update=True)
    assert agent["disableUpdate"] is True and agent["ephemeral"] is False
    assert agent["properties"]["RequireFipsCryptography"] == {"$type": "System.Boolean", "$value": True}
    assert r.token is None
    reply = r.vss("GET", "pools")
    assert reply.status == 200 and r.token, reply          # after a 401 Bearer challenge
    first = [x for x in admin.requests(route="pools") if "Authorization" not in x["headers"]]
    assert first and first[-1]["status"] == 401 and first[-1]["challenge"]

    # run: session, poll (nothing), queue, poll (the job)
    r.connect()
    assert r.create_session().status == 200
    assert len(r.session_key) == 32 and r.session["useFipsEncryption"] is True
    t0 = time.time()
    msg, reply = r.poll()
    assert msg is None and reply.status == 204 and time.time() - t0 >= 0.9   # held, not instant

    step_id = str(uuid.uuid4())
    queued = admin.queue_job(fh.minimal_job_message(
        [fh.script_step("echo hello", step_id=step_id),
         {"type": "action", "id": str(uuid.uuid4()), "name": "hello", "contextName": "hello",
          "condition": "success()",
          "reference": {"type": "repository", "name": "actions/hello", "ref": "v1", "repositoryType": "GitHub",
                        "path": ""}}],
        outputs={"greeting": "steps.__run.outputs.greeting"}))
    msg, reply = r.poll()
    assert msg is not None, reply
    assert msg["messageType"] == "PipelineAgentJobRequest" and msg["iv"]
    assert msg["plaintext"].startswith(b'{')                  # BOM stripped by the client
    job = msg["json"]
    assert job["requestId"] == queued["requestId"] and job["jobId"] == queued["jobId"]
    token = next(e for e in job["resources"]["endpoints"]
                 if e["name"] == "SystemVssConnection")["authorization"]["parameters"]["AccessToken"]
    head, claims, _sig = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(head + "==="))["typ"] == "JWT"
    assert "orch_id" in json.loads(base64.urlsafe_b64decode(claims + "==="))

    # dispatch: first renewal, then acknowledge the message, then poll as Busy
    reply = r.renew(job["requestId"])
    assert reply.status == 200 and reply.json()["lockedUntil"], reply
    assert r.delete_message(msg["messageId"]).status in (200, 204)
    assert admin.job(job["requestId"])["state"] == "running"

    # worker
    w = sc.Worker(job)
    now = sc.now_iso()
    assert w.records([{"id": job["jobId"], "type": "Job", "name": "build", "state": "inProgress",
                       "startTime": now, "workerName": "happy", "agentPlatform": "Linux"},
                      {"id": step_id, "parentId": job["jobId"], "type": "Task", "name": "Run echo hello",
                       "state": "pending", "order": 2, "refName": "__run"}]).status == 200
    info = w.download_info([{"nameWithOwner": "actions/hello", "ref": "v1", "path": ""}])
    assert info.status == 200, info
    dl = info.json()["actions"]["actions/hello@v1"]
    tar = sc.request("GET", dl["tarballUrl"], headers={
        "Authorization": "Basic " + base64.b64encode(f"x-access-token:{dl['authentication']['token']}".encode()).decode()})
    assert tar.status == 200, tar
    names = tarfile.open(fileobj=io.BytesIO(gzip.decompress(tar.body))).getnames()
    assert len({n.split("/")[0] for n in names}) == 1 and any(n.endswith("/action.yml") for n in names)

    assert w.records([{"id": step_id, "state": "inProgress", "startTime": sc.now_iso()}]).status == 200
    assert w.feed(step_id, ["hello", "world\nagain"]).status in (200, 204)
    log = w.create_log(step_id)
    assert log.status == 200, log
    log_id = log.json()["id"]
    assert w.append_log(log_id, b"\xef\xbb\xbf2026-05-01T12:00:02.1234567Z hello\n").status == 200
    assert w.summary(step_id, "## Done\n").status == 200
    assert w.records([{"id": step_id, "state": "completed", "result": "succeeded", "finishTime": sc.now_iso(),
                       "percentComplete": 100, "log": log.json()}]).status == 200
    assert w.records([{"id": job["jobId"], "state": "completed", "result": "succeeded",
                       "finishTime": sc.now_iso()}]).status == 200
    assert w.completed("succeeded", {"greeting": "hello"}).status in (200, 204)

    assert r.renew(job["requestId"]).status == 200
    msg, reply = r.poll()
    assert msg is None and reply.status == 204
    assert r.delete_session().status in (200, 204)

    # what a test reads back
    done = admin.wait_job(job["requestId"], timeout=5)
    assert done["state"] == "completed" and done["result"] == "succeeded" and done["completedVia"] == "event"
    assert done["outputs"] == {"greeting": "hello"}
    recs = {x["id"]: x for x in admin.job(job["requestId"], "timeline")["records"]}
    assert recs[step_id]["result"] == "succeeded" and recs[step_id]["log"]["id"] == log_id
    assert recs[job["jobId"]]["state"] == "completed"
    logs = admin.job(job["requestId"], "logs")
    assert logs["records"][step_id] == "2026-05-01T12:00:02.1234567Z hello\n"
    assert admin.job(job["requestId"], "feed")[step_id] == ["hello", "world", "again"]
    assert admin.job(job["requestId"], "summaries") == {step_id: "## Done\n"}
    assert refusals(admin) == []
    assert done["violations"] == [] and admin.violations() == {}
    t = done["times"]
    assert t["queued"] <= t["delivered"] <= t["firstRenewal"] <= t["firstJobCall"] <= t["firstStepStarted"] \
        <= t["completed"]
