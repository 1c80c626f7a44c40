"""pytest fixtures: the real mooncake_master and HTTP metadata server from the installed wheel.

Run from tools/test:  <venv>/bin/python -m pytest sglang_backend/tests
The package under test must be the *installed* wheel, not the source tree.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


def pytest_sessionstart(session):
    import mooncake
    location = os.path.dirname(mooncake.__file__)
    if "site-packages" not in location:
        pytest.exit(f"mooncake imported from {location}, not from an installed wheel", 2)
    for script in ("mooncake_master", "mooncake_http_metadata_server"):
        if not os.access(os.path.join(harness.BIN_DIR, script), os.X_OK):
            pytest.exit(f"console script {script} missing in {harness.BIN_DIR}", 2)


@pytest.fixture(scope="session")
def master():
    """A master shared by the suite (default client_ttl and read lease)."""
    service = harness.start_master()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def metadata_server():
    service = harness.start_metadata_server()
    yield service
    service.stop()


@pytest.fixture(params=["P2PHANDSHAKE", "http"])
def metadata(request, metadata_server):
    """Both metadata modes: P2P handshake, and the HTTP metadata server."""
    return "P2PHANDSHAKE" if request.param == "P2PHANDSHAKE" else metadata_server.url


@pytest.fixture
def stores():
    """Makes MooncakeDistributedStore objects and closes them at the end of the test."""
    from mooncake.store import MooncakeDistributedStore
    made = []

    def make():
        store = MooncakeDistributedStore()
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(stores, master):
    """One store with a 64 MiB segment on the shared master (P2P handshake)."""
    s = stores()
    assert harness.setup_store(s, master.address) == 0
    return s
