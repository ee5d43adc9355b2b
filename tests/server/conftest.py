"""Servers shared by the server tests.

`connection_server` is one server per loop x parser x buffer stack with the spec
corpus's arguments (spec.CONNECTION_SERVER_ARGS). It is session-scoped, so
test_server.py and test_spec.py run against the same process for a stack:
pytest groups the tests of both files by stack and starts each server once."""
import pytest

from kourier_lab import loops, spec
from kourier_lab.server.process import ServerProcess

COMBOS = loops.combinations()


@pytest.fixture(scope="session", params=COMBOS, ids=["/".join(c) for c in COMBOS])
def connection_server(request):
    loop, parser, buffer = request.param
    # (a Numba loop compiles at start: minutes on a loaded machine with a cold cache)
    srv = ServerProcess(*spec.CONNECTION_SERVER_ARGS, loop=loop, parser=parser, buffer=buffer).start(timeout=300)
    yield srv
    assert srv.stop() == 0
