"""harrier config --slots N / harrier run serving N registrations from one process, against
fakehub: N runners registered, N jobs at once, each completed once, one process; --slots
refused beyond what is registered; remove unregisters every slot; --finish-jobs lets a running
job finish on SIGTERM. HARRIER_TEST_TIMER_SCALE shrinks the protocol's timers (test-only)."""
import json
import os
import signal
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakehub"))

import fakehub as fh  # noqa: E402
from fakehub_fixtures import fakehub_factory  # noqa: E402,F401

SCALE = {"HARRIER_TEST_TIMER_SCALE": "0.01"}


@pytest.fixture
def hub(fakehub_factory):
    return fakehub_factory(poll_hold=2.0)


def agents(admin):
    a = admin.agents()
    return a.get("value", a) if isinstance(a, dict) else a


def config(harrier_bin, hub, path, name, *extra):
    admin = fh.FakeHubClient(hub.url)
    path.mkdir(exist_ok=True)
    return subprocess.run([harrier_bin, "config", "--url", hub.url + "/octo-org/octo-repo", "--token",
                           admin.registration_token(), "--name", name, "--unattended", *extra],
                          cwd=path, capture_output=True, text=True, timeout=120)


def start(harrier_bin, path, *args, env=None):
    full = dict(os.environ, **SCALE, **(env or {}))
    return subprocess.Popen([harrier_bin, "run", "--sandbox", "none", *args], cwd=path, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sleeper(seconds, text):
    step = fh.script_step(f'sleep {seconds}; echo "{text}"', name="s0")
    return fh.minimal_job_message([step])


@pytest.fixture
def slots3(harrier_bin, hub, tmp_path):
    path = tmp_path / "runner"
    p = config(harrier_bin, hub, path, "fleet", "--slots", "3")
    assert p.returncode == 0, p.stderr
    procs = []
    yield path, procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_config_slots_registers_one_runner_per_slot(hub, slots3):
    path, _ = slots3
    admin = fh.FakeHubClient(hub.url)
    names = sorted(a["name"] for a in agents(admin))
    assert names == ["fleet", "fleet-2", "fleet-3"]
    files = [path / ".runner", path / ".slots" / "2" / ".runner", path / ".slots" / "3" / ".runner"]
    ids = set()
    for f in files:
        for name in (".runner", ".credentials", ".credentials_rsaparams"):
            mode = stat.S_IMODE(os.stat(f.parent / name).st_mode)
            assert mode == 0o600, (f.parent / name, oct(mode))
        ids.add(json.loads(f.read_text())["agentId"])
    assert len(ids) == 3                                            # three registrations, three keys
    keys = {(f.parent / ".credentials_rsaparams").read_text() for f in files}
    assert len(keys) == 3


def test_one_process_runs_three_jobs_at_once(hub, slots3, harrier_bin):
    path, procs = slots3
    admin = fh.FakeHubClient(hub.url)
    proc = start(harrier_bin, path)
    procs.append(proc)
    for name in ("fleet", "fleet-2", "fleet-3"):
        admin.wait_polling(name, timeout=30)
    queued = [admin.queue_job(sleeper(3, f"job {i} done")) for i in range(3)]
    jobs = [admin.wait_job(q["requestId"], timeout=90) for q in queued]
    for job in jobs:
        assert job["state"] == "completed" and job["result"] == "succeeded", job
        assert job["assignments"] == 1 and job["violations"] == [], job
    # each job went to a different runner, and they overlapped in time
    assert sorted(j["agent"] for j in jobs) == ["fleet", "fleet-2", "fleet-3"]
    times = [j["times"] for j in jobs]
    latest_start = max(t["firstStepStarted"] for t in times)
    earliest_end = min(t["completed"] for t in times)
    assert latest_start < earliest_end, times                       # all three were running together
    for i, q in enumerate(queued):
        logs = admin.job(q["requestId"], "logs")
        assert f"job {i} done" in json.dumps(logs)
    # one listener process for the three
    assert proc.poll() is None
    children = subprocess.run(["pgrep", "-f", f"{harrier_bin} run"], capture_output=True, text=True).stdout.split()
    assert str(proc.pid) in children
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    for name in ("fleet", "fleet-2", "fleet-3"):
        assert f"{name}: Listening for Jobs" in out
    assert out.count("Connected to GitHub") == 1


def test_run_refuses_more_slots_than_registered(slots3, harrier_bin):
    path, _ = slots3
    p = subprocess.run([harrier_bin, "run", "--slots", "4"], cwd=path, capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, **SCALE))
    assert p.returncode == 1
    assert "--slots 4, but 3 runners are registered here" in p.stderr
    assert "harrier config --slots 4" in p.stderr


def test_run_slots_1_serves_only_the_first(hub, slots3, harrier_bin):
    path, procs = slots3
    admin = fh.FakeHubClient(hub.url)
    proc = start(harrier_bin, path, "--slots", "1")
    procs.append(proc)
    admin.wait_polling("fleet", timeout=30)
    sessions = {a["name"]: a["session"] for a in agents(admin)}
    assert sessions["fleet"] and not sessions["fleet-2"] and not sessions["fleet-3"]


def test_remove_unregisters_every_slot(hub, slots3, harrier_bin):
    path, _ = slots3
    admin = fh.FakeHubClient(hub.url)
    token = admin.registration_token(kind="remove")
    p = subprocess.run([harrier_bin, "remove", "--token", token], cwd=path, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert agents(admin) == []
    assert not (path / ".runner").exists() and not (path / ".slots").exists()
    for name in ("fleet", "fleet-2", "fleet-3"):
        assert f'Runner "{name}" removed.' in p.stdout


def test_finish_jobs_lets_the_running_job_finish_on_sigterm(hub, harrier_bin, tmp_path):
    path = tmp_path / "r"
    assert config(harrier_bin, hub, path, "finisher").returncode == 0
    admin = fh.FakeHubClient(hub.url)
    proc = start(harrier_bin, path, "--finish-jobs")
    try:
        admin.wait_polling("finisher", timeout=30)
        q = admin.queue_job(sleeper(3, "finished anyway"))
        admin.wait_job(q["requestId"], state="running", timeout=30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert "the running job finishes first" in err
        job = admin.wait_job(q["requestId"], timeout=5)
        assert job["result"] == "succeeded", job
        assert "finished anyway" in json.dumps(admin.job(q["requestId"], "logs"))
        # the session was deleted on the way out (§4.7)
        assert not [a for a in agents(admin) if a["name"] == "finisher" and a["session"]]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_without_finish_jobs_sigterm_cancels(hub, harrier_bin, tmp_path):
    path = tmp_path / "r"
    assert config(harrier_bin, hub, path, "canceller").returncode == 0
    admin = fh.FakeHubClient(hub.url)
    proc = start(harrier_bin, path)
    try:
        admin.wait_polling("canceller", timeout=30)
        q = admin.queue_job(sleeper(30, "never"))
        admin.wait_job(q["requestId"], state="running", timeout=30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        job = admin.wait_job(q["requestId"], timeout=5)
        assert job["result"] == "canceled", job
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_ephemeral_slots_take_one_job_each_then_exit(hub, harrier_bin, tmp_path):
    path = tmp_path / "eph"
    p = config(harrier_bin, hub, path, "eph", "--slots", "2", "--ephemeral")
    assert p.returncode == 0, p.stderr
    admin = fh.FakeHubClient(hub.url)
    proc = start(harrier_bin, path)
    try:
        admin.wait_polling("eph", timeout=30)
        admin.wait_polling("eph-2", timeout=30)
        queued = [admin.queue_job(sleeper(1, f"e{i}")) for i in range(2)]
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        for q in queued:
            assert admin.wait_job(q["requestId"], timeout=5)["result"] == "succeeded"
        assert not (path / ".runner").exists()                      # ephemeral: configuration removed
        assert not (path / ".slots" / "2" / ".runner").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
