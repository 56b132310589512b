"""Helpers shared by fakehub's own tests."""
import fakehub as fh


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
