"""Fixtures for fakehub's own tests: a fakehub in a thread, its admin client, and scripted
runners (spec_client.py) registered against it."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers"))
import sanitize_watch  # noqa: E402

sanitize_watch.install()

import fakehub as fh  # noqa: E402
import spec_client as sc  # noqa: E402
from fakehub_fixtures import fakehub_factory, fakehub_server, fakehub_process  # noqa: E402,F401


@pytest.fixture
def hub(fakehub_server):
    return fakehub_server


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
