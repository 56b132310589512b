"""Order rules of the protocol that fakehub cannot refuse but records as violations on the job,
so that an e2e test can assert a runner kept them; plus the helpers e2e tests lean on (request
search, waiting for a polling runner) and interoperability with curl, the HTTP stack harrier uses."""
import json
import shutil
import subprocess
import threading
import time

import pytest

import spec_client as sc
from fh_helpers import deliver_job


def test_worker_before_first_renewal(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin, renew=False)
    sc.Worker(job).records([{"id": job["jobId"], "state": "inProgress"}])
    assert "before the first lock renewal" in admin.job(job["requestId"])["violations"][0]


def test_online_poll_while_running(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    r.poll(status="Busy")
    assert admin.job(job["requestId"])["violations"] == []
    r.poll(status="Online")
    assert "status=Online while running" in admin.job(job["requestId"])["violations"][0]
    assert list(admin.violations()) == [str(job["requestId"])]


def test_completion_by_the_wrong_party_for_the_plan_version(hub, admin, runner):
    r = runner()
    old, _m, _q = deliver_job(r, admin, plan_version=7)
    sc.Worker(old).completed("succeeded")
    assert "plan version < 8" in admin.job(old["requestId"])["violations"][0]
    new, _m, _q = deliver_job(r, admin)
    r.finish(new["requestId"], "succeeded")
    assert "finished a plan version >= 8 job by PATCH" in admin.job(new["requestId"])["violations"][0]


def test_uploads_after_job_completed(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    w.completed("succeeded")
    assert w.records([{"id": job["jobId"], "state": "completed"}]).status == 200
    assert "after JobCompleted" in admin.job(job["requestId"])["violations"][0]


def test_search_finds_a_secret_in_the_request_log(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    step = "5a0c8f34-1d1b-4a3f-9a1e-2c6a2f0b7c11"
    w.feed(step, ["the password is hunter2-SECRET", "fine"])
    hits = admin.search("hunter2-SECRET")
    assert len(hits) == 1 and admin.requests(since=hits[0] - 1)[0]["route"] == "feed"
    assert admin.search("not-sent-anywhere") == []


def test_wait_polling(hub, admin, runner):
    admin.settings(poll_hold=5.0)
    r = runner()
    threading.Timer(0.5, lambda: r.poll()).start()
    t0 = time.time()
    got = admin.wait_polling(r.name, timeout=5)
    assert got["name"] == r.name and 0.4 < time.time() - t0 < 3
    with pytest.raises(RuntimeError):
        admin.wait_polling("nobody", timeout=0.5)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_expect_100_continue_and_chunked_uploads(hub, admin, runner):
    """libcurl (harrier's HTTP stack) sends Expect: 100-continue for large bodies and chunked
    bodies when it streams; both must work on every upload endpoint."""
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    log_id = w.create_log("x").json()["id"]
    url = w.loc.url(sc.LOC["logs"], w.values(logId=log_id))
    big = ("x" * 99 + "\n") * 2000
    base = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", f"Authorization: Bearer {w.token}",
            "-H", "Content-Type: application/octet-stream"]
    out = subprocess.run(base + ["-H", "Expect: 100-continue", "--data-binary", "@-", url], input=big.encode(),
                         capture_output=True, timeout=30)
    assert out.stdout == b"200", out
    out = subprocess.run(base + ["-H", "Transfer-Encoding: chunked", "--data-binary", "@-", url],
                         input=b"chunked tail\n", capture_output=True, timeout=30)
    assert out.stdout == b"200", out
    text = admin.job(job["requestId"], "logs")["logs"][str(log_id)]["text"]
    assert text == big + "chunked tail\n"
    # JSON through curl as well, with the official runner's content type
    rec = json.dumps({"count": 1, "value": [{"id": job["jobId"], "state": "inProgress"}]})
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PATCH",
                          "-H", f"Authorization: Bearer {w.token}", "-H", "Content-Type: application/json; charset=utf-8",
                          "--data-binary", rec, w.loc.url(sc.LOC["records"], w.values(timelineId=w.timeline_id))],
                         capture_output=True, timeout=30)
    assert out.stdout == b"200", out


def test_a_job_run_twice_is_flagged(hub, admin, runner):
    r = runner()
    job, _msg, _q = deliver_job(r, admin)
    w = sc.Worker(job)
    w.records([{"id": job["jobId"], "state": "inProgress", "startTime": "2026-05-01T12:00:00.0000000Z"}])
    w.records([{"id": job["jobId"], "state": "completed", "startTime": "2026-05-01T12:00:00.0000000Z"}])
    w.completed("succeeded")
    w.completed("succeeded")                          # a retried event is not a second run
    assert admin.job(job["requestId"])["violations"] == []
    w.records([{"id": job["jobId"], "state": "inProgress", "startTime": "2026-05-01T12:00:09.0000000Z"}])
    w.completed("failed")
    v = admin.job(job["requestId"])["violations"]
    assert any("started twice" in x for x in v) and any("second, different JobCompleted" in x for x in v)
