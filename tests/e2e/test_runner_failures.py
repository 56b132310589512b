"""The failures a runner admin meets, each with one clear line and the official runner's exit code
(§2.1), against fakehub: a wrong URL, a service out of reach (waited for, as run.sh does), a
clock that breaks the JWT, a worker that dies (a failed job, not a dead listener), a job that
runs past its timeout-minutes (the service cancels it, §7.7). HARRIER_TEST_TIMER_SCALE shrinks
the protocol's timers (test-only)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakehub"))

import fakehub as fh  # noqa: E402
from fakehub_fixtures import fakehub_factory  # noqa: E402,F401

SCALE = {"HARRIER_TEST_TIMER_SCALE": "0.01"}


@pytest.fixture
def hub(fakehub_factory):
    return fakehub_factory(poll_hold=2.0)


def config(harrier_bin, hub, path, name="r1", url=None):
    admin = fh.FakeHubClient(hub.url)
    path.mkdir(exist_ok=True)
    return subprocess.run([harrier_bin, "config", "--url", url or hub.url + "/octo-org/octo-repo", "--token",
                           admin.registration_token(), "--name", name, "--unattended"],
                          cwd=path, capture_output=True, text=True, timeout=120)


def start(harrier_bin, path, *args):
    return subprocess.Popen([harrier_bin, "run", "--sandbox", "none", *args], cwd=path,
                            env=dict(os.environ, **SCALE), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.communicate()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_config_wrong_url_says_what_to_check(harrier_bin, tmp_path):
    port = free_port()                        # nothing listens there
    p = subprocess.run([harrier_bin, "config", "--url", f"http://127.0.0.1:{port}/octo-org/octo-repo",
                        "--token", "T", "--unattended"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "cannot reach" in lines[0] and "--url" in lines[0], lines[0]


def test_service_out_of_reach_is_waited_for(harrier_bin, hub, tmp_path):
    """The service goes away (network down): harrier run says so once, keeps trying, and picks
    up work when it is back, as run.sh's listener does."""
    path = tmp_path / "r"
    assert config(harrier_bin, hub, path).returncode == 0
    runner = json.loads((path / ".runner").read_text())
    port = free_port()
    runner["serverUrl"] = runner["serverUrl"].replace(hub.url.rsplit(":", 1)[1], str(port), 1)
    (path / ".runner").write_text(json.dumps(runner))
    proc = start(harrier_bin, path)
    time.sleep(8)                             # connectionData's own tries, then the wait
    assert proc.poll() is None, proc.communicate()
    out, err = stop(proc)
    assert proc.returncode == 0, err
    assert err.count("cannot reach the runner service") == 1, err
    assert "network down?" in err and "retrying" in err


def test_clock_skew_breaking_the_jwt_is_named(harrier_bin, hub, tmp_path):
    path = tmp_path / "r"
    assert config(harrier_bin, hub, path).returncode == 0
    admin = fh.FakeHubClient(hub.url)
    # The service now reads the runner's JWT as expired: this machine's clock looks 10 min slow.
    admin.settings(clock_skew=-600)
    proc = start(harrier_bin, path)
    time.sleep(5)
    # As the official runner: a clock-skew refusal is retried ("Retrying until reconnected"),
    # said once, naming the clock; fixing the clock lets it connect without a restart.
    assert proc.poll() is None
    admin.settings(clock_skew=300)
    admin.wait_polling("r1", timeout=30)
    out, err = stop(proc)
    assert proc.returncode == 0, err
    assert err.count("check this machine's clock") == 1, err
    assert "Current server time is" in err and "Runner reconnected." in err


def test_a_worker_that_dies_fails_its_job_and_the_listener_goes_on(harrier_bin, hub, tmp_path):
    path = tmp_path / "r"
    assert config(harrier_bin, hub, path).returncode == 0
    admin = fh.FakeHubClient(hub.url)
    proc = start(harrier_bin, path)
    try:
        admin.wait_polling("r1", timeout=30)
        q = admin.queue_job(fh.minimal_job_message([fh.script_step("echo started; sleep 60", name="s0")]))
        admin.wait_job(q["requestId"], state="running", timeout=30)
        worker = None
        for _ in range(100):
            found = subprocess.run(["pgrep", "-f", f"{harrier_bin} worker"], capture_output=True, text=True)
            if found.stdout.split():
                worker = int(found.stdout.split()[0])
                break
            time.sleep(0.1)
        assert worker, "no worker process"
        os.kill(worker, signal.SIGKILL)
        job = admin.wait_job(q["requestId"], timeout=60)
        assert job["result"] == "failed" and job["assignments"] == 1, job
        assert proc.poll() is None                              # the listener lives on
        admin.wait_polling("r1", timeout=30)
        q2 = admin.queue_job(fh.minimal_job_message([fh.script_step("echo next job", name="s0")]))
        assert admin.wait_job(q2["requestId"], timeout=60)["result"] == "succeeded"
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0, err
    assert "the worker ended" in err


def test_job_timeout_is_the_service_cancelling_it(harrier_bin, hub, tmp_path):
    """timeout-minutes of a job is the service's to enforce (§7.7): it sends JobCancellation; the
    step is cancelled, always() steps still run, the job is canceled."""
    path = tmp_path / "r"
    assert config(harrier_bin, hub, path).returncode == 0
    admin = fh.FakeHubClient(hub.url)
    proc = start(harrier_bin, path, "--once")
    try:
        admin.wait_polling("r1", timeout=30)
        steps = [fh.script_step("sleep 120", name="long"),
                 fh.script_step("echo cleanup after timeout", name="cleanup", condition="always()")]
        t0 = time.time()
        q = admin.queue_job(fh.minimal_job_message(steps), timeout_minutes=0.05)   # 3 s
        job = admin.wait_job(q["requestId"], timeout=90)
        assert time.time() - t0 < 60
        assert job["result"] == "canceled" and job["cancelSent"], job
        records = {r["name"]: r for r in admin.job(q["requestId"], "timeline")["records"]}
        assert records["Run sleep 120"]["result"] == "canceled"
        logs = json.dumps(admin.job(q["requestId"], "logs"))
        assert "cleanup after timeout" in logs
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    finally:
        stop(proc)
