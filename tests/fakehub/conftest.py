"""Fixtures for fakehub's own tests: a fakehub in a thread, its admin client, and scripted
runners (spec_client.py) registered against it."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fakehub as fh  # noqa: E402
import spec_client as sc  # noqa: E402


def start_hub(tmp_path, **kw):
    settings = dict(poll_hold=1.0)
    settings.update(kw)
    return fh.FakeHub(state_dir=str(tmp_path / "fakehub"), **settings).start()


@pytest.fixture
def hub(tmp_path):
    h = start_hub(tmp_path)
    yield h
    h.stop()


@pytest.fixture
def admin(hub):
    return fh.FakeHubClient(hub.url)


@pytest.fixture
def runner(hub, admin):
    """A factory: a scripted runner registered (and optionally holding a session)."""
    made = []

    def make(name=None, session=True, **kw):
        r = sc.Runner(hub.url + "/octo-org/octo-repo", name=name or f"runner-{len(made) + 1}", **kw)
        r.register(admin.registration_token())
        r.connect()
        if session:
            reply = r.create_session()
            assert reply.status == 200, reply
        made.append(r)
        return r
    return make


def refusals(admin, route=None, since=0):
    """Refusals other than the expected Bearer challenges."""
    return [r for r in admin.requests(since, route) if r.get("refused") and not r.get("challenge")]


def deliver_job(r, admin, message=None, renew=True, ack=True, **queue_kw):
    """Queues a job, polls it to runner r, renews the lock and deletes the message as the
    official runner does (§10.1); returns (job message, poll message, queue summary)."""
    queued = admin.queue_job(message or fh.minimal_job_message(), **queue_kw)
    for _ in range(5):
        msg, reply = r.poll()
        if msg is not None:
            break
        assert reply.status == 204, reply
    assert msg is not None and msg["messageType"] == "PipelineAgentJobRequest", msg
    job = msg["json"]
    if renew:
        reply = r.renew(job["requestId"])
        assert reply.status == 200, reply
    if ack:
        assert r.delete_message(msg["messageId"]).status in (200, 204)
    return job, msg, queued
