"""Workflows queued through harrier's planner (POST /_admin/workflows): fakehub releases each job
when the jobs it needs have ended, with their results and outputs as the scripted runner reported
them (JobCompleted), skips what the planner skips, and does the service's part of a matrix:
fail-fast cancels the other configurations, max-parallel holds them back. The planner is the
harrier binary (HARRIER_BIN, as tests/run sets it); the runner is spec_client.py."""
import json
import os
import textwrap
import time

import pytest

import spec_client as sc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def planner():
    path = os.environ.get("HARRIER_BIN", os.path.join(ROOT, "build", "harrier"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not built; run 'make' first")
    return [path, "exec"]


@pytest.fixture
def queue(admin, planner, tmp_path):
    """Writes a workflow and queues it; returns the run's summary."""
    def run(text, **kw):
        (tmp_path / "wf.yml").write_text(textwrap.dedent(text))
        return admin.queue_workflow(planner, "wf.yml", cwd=str(tmp_path), **kw)
    return run


def take_job(r):
    """Polls the next job to runner r, renews its lock and acknowledges it (§10.1)."""
    for _ in range(5):
        msg, reply = r.poll()
        if msg is not None:
            break
        assert reply.status == 204, reply
    assert msg is not None and msg["messageType"] == "PipelineAgentJobRequest", msg
    job = msg["json"]
    assert r.renew(job["requestId"]).status == 200
    assert r.delete_message(msg["messageId"]).status in (200, 204)
    return job


def complete(job, result="succeeded", outputs=None):
    assert sc.Worker(job).completed(result, outputs).status in (200, 204)


def context(job, name):
    """A contextData member of a job message as plain JSON (§6.5)."""
    def plain(v):
        if isinstance(v, dict) and v.get("t") in (2, 5):
            return {p["k"]: plain(p["v"]) for p in v.get("d", [])}
        if isinstance(v, dict) and v.get("t") == 1:
            return [plain(x) for x in v.get("a", [])]
        return v
    return plain(job["contextData"][name])


def wait_for(admin, wid, check, timeout=20):
    deadline = time.time() + timeout
    while True:
        run = admin.workflow(wid)
        if check(run) or time.time() > deadline:
            return run
        time.sleep(0.1)


def test_jobs_are_released_in_needs_order_with_the_reported_outputs(admin, runner, queue):
    r = runner()
    run = queue("""
        on: push
        jobs:
          a:
            runs-on: self-hosted
            outputs: {v: "${{ steps.s.outputs.v }}", empty: ""}
            steps:
              - id: s
                run: echo "v=local" >> "$GITHUB_OUTPUT"
          b:
            needs: a
            runs-on: self-hosted
            name: B ${{ needs.a.outputs.v }}
            steps:
              - run: echo "${{ needs.a.outputs.v }}"
    """, secrets={"TOKEN": "s3cr3t \"quoted\" $HOME"})
    assert run["state"] == "running" and run["order"] == ["a"]
    assert run["jobs"]["b"]["state"] == "waiting" and run["jobs"]["a"]["state"] == "queued"
    a = take_job(r)
    assert a["jobName"] == "a"
    # the planner's secrets arrive as secret variables, and the service adds its GITHUB_TOKEN
    assert a["variables"]["TOKEN"] == {"value": "s3cr3t \"quoted\" $HOME", "isSecret": True}
    assert a["variables"]["system.github.token"]["value"].startswith("ghs_")
    assert context(a, "github")["run_id"] == str(run["id"])
    complete(a, outputs={"v": "from-the-runner"})        # not what the step wrote: fakehub must use it
    b = take_job(r)
    assert b["jobName"] == "b" and b["jobDisplayName"] == "B from-the-runner"
    assert context(b, "needs") == {"a": {"result": "success", "outputs": {"v": "from-the-runner"}}}
    assert context(b, "github")["run_id"] == context(a, "github")["run_id"]
    complete(b)
    run = admin.wait_workflow(run["id"], timeout=30)
    assert run["state"] == "completed" and run["result"] == "success" and run["order"] == ["a", "b"]
    assert run["jobs"]["a"]["outputs"] == {"v": "from-the-runner"}
    assert run["plans"] == 2                      # a, then b once a had ended


def test_skipped_and_failure_paths_follow_the_needs(admin, runner, queue):
    r = runner()
    run = queue("""
        on: push
        jobs:
          a:
            runs-on: self-hosted
            steps: [{run: "true"}]
          gated:
            needs: a
            if: needs.a.outputs.go == 'yes'
            runs-on: self-hosted
            steps: [{run: "true"}]
          after-gated:
            needs: gated
            runs-on: self-hosted
            steps: [{run: "true"}]
          on-failure:
            needs: a
            if: failure()
            runs-on: self-hosted
            steps: [{run: "echo cleaning up"}]
    """)
    complete(take_job(r), result="failed", outputs={"go": "yes"})
    cleanup = take_job(r)
    assert cleanup["jobName"] == "on-failure"
    assert context(cleanup, "needs")["a"]["result"] == "failure"
    complete(cleanup)
    run = admin.wait_workflow(run["id"], timeout=30)
    jobs = run["jobs"]
    assert jobs["a"]["result"] == "failure" and jobs["on-failure"]["result"] == "success"
    assert jobs["gated"]["result"] == "skipped" and "`if` is false" in jobs["gated"]["note"]
    assert jobs["after-gated"]["result"] == "skipped"
    assert jobs["gated"]["configurations"] == [] and run["result"] == "failure"


def test_fail_fast_cancels_the_other_configurations(hub, admin, runner, queue):
    admin.settings(cancel_delay=0)
    first, second = runner(), runner()
    run = queue("""
        on: push
        jobs:
          m:
            runs-on: self-hosted
            strategy:
              matrix:
                n: [1, 2, 3]
            steps: [{run: "true"}]
    """)
    one, two = take_job(first), take_job(second)       # the third stays queued: both runners busy
    complete(one, result="failed")
    # the running one gets a JobCancellation on its session, the queued one never starts
    msg = None
    for _ in range(5):
        msg, reply = second.poll(status="Busy")
        if msg is not None:
            break
    assert msg is not None and msg["messageType"] == "JobCancellation", msg
    assert json.loads(msg["plaintext"])["jobId"] == two["jobId"]
    complete(two, result="canceled")
    run = admin.wait_workflow(run["id"], timeout=30)
    results = [c["result"] for c in run["jobs"]["m"]["configurations"]]
    assert results == ["failed", "canceled", "canceled"]
    assert run["jobs"]["m"]["result"] == "failure"
    third = run["jobs"]["m"]["configurations"][2]["requestId"]
    assert admin.job(third)["completedVia"] == "canceled-in-queue"


def test_max_parallel_holds_configurations_back(admin, runner, queue):
    first, second = runner(), runner()
    run = queue("""
        on: push
        jobs:
          m:
            runs-on: self-hosted
            strategy:
              max-parallel: 1
              fail-fast: false
              matrix:
                n: [1, 2]
            outputs: {last: "${{ matrix.n }}"}
            steps: [{run: "true"}]
    """)
    states = [c["state"] for c in run["jobs"]["m"]["configurations"]]
    assert states == ["queued", "held"]
    one = take_job(first)
    msg, reply = second.poll()                    # nothing for the other runner: held back
    assert msg is None and reply.status == 204
    complete(one, result="failed", outputs={"last": "1", "first": "only-one"})
    two = take_job(second)
    assert two["jobDisplayName"] == "m (2)"
    complete(two, outputs={"last": "2"})
    run = admin.wait_workflow(run["id"], timeout=30)
    m = run["jobs"]["m"]
    assert [c["result"] for c in m["configurations"]] == ["failed", "succeeded"]
    assert m["result"] == "failure"                     # fail-fast off: the other still ran
    assert m["outputs"] == {"last": "2", "first": "only-one"}   # merged, the last to complete wins


def test_an_invalid_workflow_is_refused_with_the_planners_message(queue):
    with pytest.raises(RuntimeError) as e:
        queue("""
            on: push
            jobs:
              a:
                steps: [{run: "true"}]
        """)
    assert "400" in str(e.value) and "runs-on" in str(e.value)


def test_bad_workflow_requests_are_refused(admin, planner):
    with pytest.raises(RuntimeError, match="400.*planner"):
        admin.queue_workflow("harrier exec", "wf.yml")
    with pytest.raises(RuntimeError, match="400.*unknown workflow member"):
        admin.queue_workflow(planner, "wf.yml", matrix={"n": 1})
