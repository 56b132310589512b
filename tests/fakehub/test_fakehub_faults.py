"""The test hooks of PROTOCOL.md §11.3: injected faults, expiries, runner deletion, the request
log, and fakehub started as a program."""
import http.client
import json
import os
import time

import pytest

import fakehub as fh
import spec_client as sc
from fh_helpers import deliver_job

DROPPED = (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine)


def test_5xx_once_then_normal(hub, admin, runner):
    r = runner()
    admin.fault(route="messages", method="GET", status=503)
    assert r.poll()[1].status == 503
    assert r.poll()[1].status == 204
    polls = admin.requests(route="messages")
    assert polls[-2]["fault"]["status"] == 503 and "fault" not in polls[-1]
    assert admin.call("GET", "/faults") == []


def test_401_challenge_makes_the_runner_fetch_a_new_token(hub, admin, runner):
    r = runner()
    before = len(admin.requests(route="oauth"))
    admin.fault(route="messages", status=401)
    msg, reply = r.poll()
    assert reply.status == 204
    assert len(admin.requests(route="oauth")) == before + 1


def test_409_with_a_typed_exception(hub, admin, runner):
    r = runner()
    r.delete_session()
    admin.fault(route="sessions", method="POST", status=409, type_key="TaskAgentSessionConflictException")
    reply = r.create_session()
    assert reply.status == 409 and reply.json()["typeKey"] == "TaskAgentSessionConflictException"
    assert r.create_session().status == 200


def test_drop_before_and_after(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    rid = job["requestId"]
    admin.fault(route="messages", method="GET", action="drop")
    with pytest.raises(DROPPED):
        r.poll(status="Busy")
    # processed, answer lost: the renewal happened
    before = admin.job(rid)["renewals"]
    admin.fault(route="jobrequests", action="drop", when="after")
    with pytest.raises(DROPPED):
        r.renew(rid)
    assert admin.job(rid)["renewals"] == before + 1
    # a JobCompleted whose answer is lost, then sent again: one completion, the first result
    w = sc.Worker(job)
    admin.fault(route="events", action="drop", when="after")
    with pytest.raises(DROPPED):
        w.completed("succeeded")
    assert w.completed("failed").status == 204
    assert admin.job(rid)["result"] == "succeeded"


def test_delay(hub, admin, runner):
    r = runner()
    admin.fault(route="pools", action="delay", delay=1.0)
    t0 = time.time()
    assert r.vss("GET", "pools").status == 200
    assert time.time() - t0 >= 1.0


def test_duplicate_message(hub, admin, runner):
    r = runner()
    admin.fault(route="messages", action="duplicate")
    job, msg, _q = deliver_job(r, admin)
    again, _ = r.poll(status="Busy")
    assert again is not None and again["messageId"] == msg["messageId"] and again["json"]["jobId"] == job["jobId"]
    assert admin.job(job["requestId"])["assignments"] == 1
    assert r.poll(status="Busy")[0] is None          # delivered twice, not for ever


def test_skip_times_and_path_match(hub, admin):
    admin.fault(route="*", path="connectionData$", status=500, times=2, skip=1)
    url = hub.tenant_url + "_apis/connectionData"
    assert [sc.request("GET", url).status for _ in range(4)] == [200, 500, 500, 200]
    with pytest.raises(RuntimeError):
        admin.fault(route="*", action="explode")


def test_expired_runner_token_is_challenged_and_refreshed(hub, admin, runner):
    r = runner()
    before = len(admin.requests(route="oauth"))
    assert admin.expire("runner-tokens")["expired"] >= 1
    assert r.poll()[1].status == 204
    assert len(admin.requests(route="oauth")) == before + 1
    assert [x for x in admin.refusals() if "expired or revoked" in x["refused"]]


def test_expired_job_token(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    admin.expire("job-tokens")
    reply = sc.Worker(job).records([{"id": job["jobId"], "state": "inProgress"}])
    assert reply.status == 401


def test_expired_session_requeues_an_unacknowledged_job(hub, admin, runner):
    r = runner()
    job, msg, _q = deliver_job(r, admin, renew=False, ack=False)
    admin.expire("sessions")
    reply = r.poll()[1]
    assert reply.status == 404 and reply.json()["typeKey"] == "TaskAgentSessionExpiredException"
    assert admin.job(job["requestId"])["state"] == "queued"


def test_expired_lock(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    admin.expire("locks")
    assert admin.wait_job(job["requestId"], timeout=5)["result"] == "abandoned"


def test_runner_deleted_mid_job(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    admin.delete_agent(r.name)
    done = admin.job(job["requestId"])
    assert done["result"] == "failed" and done["completedVia"] == "runner-deleted"
    reply = r.renew(job["requestId"])
    assert reply.status == 404 and reply.json()["typeKey"] == "TaskAgentNotFoundException"
    reply = sc.Worker(job).records([{"id": job["jobId"], "state": "completed"}])
    assert reply.status == 409 and reply.json()["typeKey"] == "TaskOrchestrationPlanTerminatedException"


def test_runner_shutdown_and_other_messages_reach_the_session(hub, admin, runner):
    r = runner()
    t0 = time.time()
    admin.send_message(r.name, "RunnerShutdown", {"reason": "test"}, delay=0.3)
    msg, _ = r.poll()
    assert msg["messageType"] == "RunnerShutdown" and msg["json"] == {"reason": "test"}
    assert time.time() - t0 >= 0.3


def test_request_log_records_everything(hub, admin, runner):
    runner()
    reqs = admin.requests()
    assert [x["seq"] for x in reqs] == list(range(1, len(reqs) + 1))
    assert [x["route"] for x in reqs][:4] == ["registration", "connectionData", "pools", "agents"]
    post = next(x for x in reqs if x["route"] == "agents" and x["method"] == "POST")
    assert json.loads(post["body"])["authorization"]["publicKey"]["exponent"] == "AQAB"
    assert post["headers"]["Authorization"].startswith("Bearer ") and post["status"] == 200
    with open(os.path.join(hub.state_dir, "requests.jsonl")) as f:
        lines = [json.loads(x) for x in f]
    assert len(lines) >= len(reqs) and lines[0]["route"] == "registration"
    assert admin.requests(since=len(reqs) - 1) == reqs[-1:]


def test_runs_as_a_program(tmp_path):
    state = tmp_path / "state"
    with fh.FakeHubProcess(state, "--routes", "rs", "--set", "poll_hold=0.5") as proc:
        url = proc.url
        assert url.startswith("http://127.0.0.1:")
        assert (state / "url").read_text().strip() == url
        admin = proc.admin
        assert admin.settings()["routes"] == "rs" and admin.settings()["poll_hold"] == 0.5
        r = sc.Runner(url + "/octo-org/octo-repo", name="cli")
        r.register(proc.registration_token)
        r.connect()
        assert r.create_session().status == 200
        assert r.poll()[1].status == 204
        assert "/_apis/v1/Message/" in admin.requests(route="messages")[-1]["path"]
    assert proc.proc.returncode is not None


def test_process_fixture(fakehub_process):
    assert fakehub_process.admin.call("GET", "/health")["ok"] is True
    assert sc.Runner(fakehub_process.url + "/o/r").exchange(fakehub_process.registration_token).status == 200


def test_job_message_lost_in_transit_is_delivered_again(hub, admin, runner):
    r = runner()
    admin.queue_job(fh.minimal_job_message())
    admin.fault(route="messages", method="GET", action="drop", when="after")
    with pytest.raises(DROPPED):
        r.poll()
    msg, _ = r.poll()
    assert msg is not None and msg["messageType"] == "PipelineAgentJobRequest"


def test_one_job_two_pollers(hub, admin, runner):
    import threading
    a, b = runner(), runner()
    got = {}
    threads = [threading.Thread(target=lambda x=x: got.__setitem__(x.name, x.poll()[0])) for x in (a, b)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    admin.queue_job(fh.minimal_job_message())
    for t in threads:
        t.join(10)
    assert sum(1 for m in got.values() if m is not None) == 1
