"""pytest fixtures that start fakehub, for fakehub's own tests and for harrier's e2e tests:

    sys.path.insert(0, os.path.join(ROOT, "tests", "fakehub"))
    from fakehub_fixtures import fakehub_factory, fakehub_server, fakehub_process  # noqa: F401

fakehub_factory(**settings) starts one in a thread (stopped after the test); fakehub_server is
one with a 1 s long-poll hold; fakehub_process runs it as a child process."""
import pytest

import fakehub


@pytest.fixture
def fakehub_factory(tmp_path):
    started = []

    def start(routes="real", **settings):
        hub = fakehub.FakeHub(state_dir=str(tmp_path / f"fakehub{len(started)}"), routes=routes, **settings)
        started.append(hub.start())
        return hub
    yield start
    for hub in started:
        hub.stop()


@pytest.fixture
def fakehub_server(fakehub_factory):
    return fakehub_factory(poll_hold=1.0)


@pytest.fixture
def fakehub_process(tmp_path):
    with fakehub.FakeHubProcess(tmp_path / "fakehub-process", "--set", "poll_hold=1.0") as proc:
        yield proc
