#!/usr/bin/python3
"""bench runner: harrier run against fakehub (tests/fakehub).

- pickup latency: from fakehub's queue call to the service hearing that the job's first step
  started (the first inProgress update of the first step record after "Set up job", from
  fakehub's timeline history), beside a baseline measured in the same run: `harrier worker`
  started by hand on the same job message, from its start to its first step_started event.
  The difference is what the listener adds (poll answer, decryption, first lock renewal,
  message deletion, the worker's spawn). Target: <= 20 ms.
- idle listener memory from /proc/PID/smaps_rollup: private (anonymous and changed file pages)
  beside the same figure for an idle `sleep` (a C program with the same libc), with RSS and
  PSS reported. Target: private <= 3 MB.
- memory per slot: the same private figure for one idle `harrier run` serving 8 registrations
  (config --slots 8), against the single-slot listener of the same run: (8-slot - 1-slot) / 7.
  Target: <= 0.5 MB per further slot.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakehub"))
import fakehub as fh  # noqa: E402

# fakehub answers with headers and body in two writes; without TCP_NODELAY on its side, Nagle
# and the client's delayed ACK add ~40 ms to every exchange, which would measure fakehub.
fh.Handler.disable_nagle_algorithm = True

BIN = os.environ.get("HARRIER_BIN", os.path.join(ROOT, "build", "harrier"))


def smaps(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                out[parts[0][:-1]] = int(parts[1])
    return out


def private_kb(m):
    """Anonymous memory plus file pages this process changed (Private_Dirty). Private_Clean
    (library pages no other running process happens to map right now) is shown apart: it
    becomes shared as soon as a second harrier or another user of those libraries runs."""
    return m.get("Private_Dirty", 0)


def first_step_started(admin, rid):
    """Epoch seconds at which fakehub first recorded the job's first real step in progress."""
    records = admin.job(rid, "timeline")["records"]
    steps = sorted((r for r in records if r.get("order") and r["order"] >= 2), key=lambda r: r["order"])
    for h in steps[0].get("history", []):
        if h.get("state") == "inProgress":
            return fh.parse_iso(h["_time"])
    raise RuntimeError("the first step was never reported in progress")


def worker_baseline(message, work):
    """ms from starting `harrier worker` to its first step_started event."""
    path = os.path.join(work, "msg.json")
    with open(path, "w") as f:
        json.dump(message, f)
    t0 = time.monotonic()
    p = subprocess.Popen([BIN, "worker", "--message", path, "--work", os.path.join(work, "w"), "--sandbox", "none"],
                         stdout=subprocess.PIPE, text=True)
    first = None
    for line in p.stdout:
        if first is None and '"step_started"' in line:
            first = (time.monotonic() - t0) * 1000
    p.wait()
    return first


def main():
    with tempfile.TemporaryDirectory() as tmp:
        hub = fh.FakeHub(state_dir=os.path.join(tmp, "hub"), poll_hold=50.0).start()
        admin = fh.FakeHubClient(hub.url)
        rdir = os.path.join(tmp, "r")
        os.mkdir(rdir)
        p = subprocess.run([BIN, "config", "--url", hub.url + "/o/r", "--token", admin.registration_token(),
                            "--name", "bench"], cwd=rdir, capture_output=True, text=True)
        if p.returncode != 0:
            print("bench runner: config failed: " + p.stderr.strip())
            return 1
        proc = subprocess.Popen([BIN, "run", "--sandbox", "none"], cwd=rdir, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        admin.wait_polling("bench", timeout=30)
        time.sleep(0.5)
        idle = smaps(proc.pid)
        sleeper = subprocess.Popen(["sleep", "30"])
        time.sleep(0.2)
        base = smaps(sleeper.pid)
        sleeper.kill()
        sleeper.wait()

        pickups, baselines = [], []
        for i in range(5):
            msg = fh.minimal_job_message([fh.script_step("sleep 0.3; echo hi")])
            q = admin.queue_job(msg)
            job = admin.wait_job(q["requestId"], timeout=60)
            t = job["times"]
            if job["result"] != "succeeded":
                print(f"bench runner: job {q['requestId']} did not run: {job['result']}")
                proc.kill()
                return 1
            pickups.append((first_step_started(admin, q["requestId"]) - t["queued"]) * 1000)
            admin.wait_polling("bench", timeout=30)
            full = admin.job(q["requestId"], "message")
            baselines.append(worker_baseline(full, tmp))
        proc.terminate()
        proc.wait(timeout=30)

        sdir = os.path.join(tmp, "slots")
        os.mkdir(sdir)
        p = subprocess.run([BIN, "config", "--url", hub.url + "/o/r", "--token", admin.registration_token(),
                            "--name", "multi", "--slots", "8", "--unattended"], cwd=sdir, capture_output=True,
                           text=True)
        if p.returncode != 0:
            print("bench runner: config --slots 8 failed: " + p.stderr.strip())
            return 1
        multi = subprocess.Popen([BIN, "run", "--sandbox", "none"], cwd=sdir, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        for k in range(1, 9):
            admin.wait_polling("multi" if k == 1 else f"multi-{k}", timeout=30)
        time.sleep(0.5)
        eight = smaps(multi.pid)
        multi.terminate()
        multi.wait(timeout=30)
        hub.stop()
    pickup = statistics.median(pickups)
    worker = statistics.median(baselines)
    added = pickup - worker
    print(f"bench runner pickup latency: {pickup:.1f} ms vs worker start alone {worker:.1f} ms: "
          f"listener adds {added:+.1f} ms (target pickup <= 20 ms) {'ok' if pickup <= 20 else 'MISSED'}")
    priv = private_kb(idle) / 1024
    print(f"bench runner idle memory: private {priv:.2f} MB (+ {idle.get('Private_Clean', 0) / 1024:.1f} MB "
          f"clean library pages mapped by no other process; RSS {idle.get('Rss', 0) / 1024:.1f} MB, "
          f"PSS {idle.get('Pss', 0) / 1024:.1f} MB) vs idle sleep private {private_kb(base) / 1024:.2f} MB "
          f"(target private <= 3 MB) {'ok' if priv <= 3 else 'MISSED'}")
    per_slot = (private_kb(eight) - private_kb(idle)) / 7 / 1024
    print(f"bench runner memory per slot: 8 slots private {private_kb(eight) / 1024:.2f} MB vs 1 slot "
          f"{priv:.2f} MB: {per_slot:+.3f} MB per further slot (RSS {eight.get('Rss', 0) / 1024:.1f} MB) "
          f"(target <= 0.5 MB) {'ok' if per_slot <= 0.5 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
