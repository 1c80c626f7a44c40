"""MC_AUTH_TOKEN (docs/compatibility.md, "Access control"): with it set on the servers, a process
without the token cannot write metadata, use the master, or read or write another process's
segment; with the token everything works as before. Off by default."""

import os
import urllib.error
import urllib.request

import numpy as np
import pytest

import harness
from mooncake.engine import TransferEngine
from mooncake.store import MooncakeDistributedStore

TOKEN = "test-token-7f3a"


@pytest.fixture
def token_env():
    """Sets or clears MC_AUTH_TOKEN for engines and stores created in this process."""
    saved = os.environ.get("MC_AUTH_TOKEN")

    def use(value):
        if value is None:
            os.environ.pop("MC_AUTH_TOKEN", None)
        else:
            os.environ["MC_AUTH_TOKEN"] = value

    yield use
    use(saved)


@pytest.fixture
def route_env():
    saved = os.environ.get("MC_DISABLE_SHM")
    yield
    if saved is None:
        os.environ.pop("MC_DISABLE_SHM", None)
    else:
        os.environ["MC_DISABLE_SHM"] = saved


@pytest.mark.parametrize("route", ["tcp", "shm"])
def test_engine_without_the_token_cannot_touch_a_segment(token_env, route_env, route):
    if route == "tcp":
        os.environ["MC_DISABLE_SHM"] = "1"
    else:
        os.environ.pop("MC_DISABLE_SHM", None)
    token_env(TOKEN)
    owner = TransferEngine()
    assert owner.initialize(harness.HOST, "P2PHANDSHAKE", "tcp", "") == 0
    target = owner.get_local_segment_name()
    n = 64 << 10
    remote = owner.allocate_managed_buffer(n)
    secret = np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8)
    assert owner.write_bytes_to_buffer(remote, secret.tobytes(), n) == 0

    def peer(token):
        token_env(token)
        e = TransferEngine()
        assert e.initialize(harness.HOST, "P2PHANDSHAKE", "tcp", "") == 0
        src = np.full(n, 0xAB, dtype=np.uint8)
        dst = np.zeros(n, dtype=np.uint8)
        assert e.batch_register_memory([src.ctypes.data, dst.ctypes.data], [n, n]) == 0
        return e, src, dst

    for bad in (None, "wrong-token"):
        e, src, dst = peer(bad)
        assert e.transfer_sync_read(target, dst.ctypes.data, remote, n) < 0
        assert not dst.any(), "a refused read returned bytes"
        assert e.transfer_sync_write(target, src.ctypes.data, remote, n) < 0
        assert owner.read_bytes_from_buffer(remote, n) == secret.tobytes(), \
            "a refused write changed the segment"

    e, src, dst = peer(TOKEN)
    assert e.transfer_sync_read(target, dst.ctypes.data, remote, n) == 0
    assert np.array_equal(dst, secret)
    assert e.transfer_sync_write(target, src.ctypes.data, remote, n) == 0
    assert owner.read_bytes_from_buffer(remote, 16) == b"\xab" * 16


def test_store_without_the_token_cannot_register_or_read(token_env):
    env = dict(os.environ, MC_AUTH_TOKEN=TOKEN)
    master = harness.start_master(env=env)
    metadata = harness.start_metadata_server(env=env, as_module=True)
    node = harness.start_storage_node(master, env=env, args=(f"--metadata={metadata.url}",))
    try:
        # The metadata server (python -m mooncake.http_metadata_server) takes writes only with
        # the token; reads stay open.
        def put(headers):
            req = urllib.request.Request(f"{metadata.url}?key=probe", data=b"{}", method="PUT",
                                         headers=headers)
            try:
                return urllib.request.urlopen(req, timeout=5).status
            except urllib.error.HTTPError as e:
                return e.code

        assert put({}) == 401
        assert put({"x-mooncake-auth": "wrong-token"}) == 401
        assert put({"x-mooncake-auth": TOKEN}) == 200
        assert harness.http_get(f"{metadata.url}?key=probe")[0] == 200
        stores = []

        def setup(token):
            token_env(token)
            store = MooncakeDistributedStore()
            stores.append(store)
            return store, harness.setup_store(store, master.address, metadata=metadata.url,
                                              segment=0)

        writer, rc = setup(TOKEN)
        assert rc == 0
        value = np.random.default_rng(3).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
        assert writer.put("auth-key", value) == 0
        # No token or the wrong one: setup is refused (the master and the metadata server say no),
        # and nothing the process could then call reaches the data.
        for bad in (None, "wrong-token"):
            _, rc = setup(bad)
            assert rc < 0
        reader, rc = setup(TOKEN)
        assert rc == 0
        assert reader.get("auth-key") == value
        assert reader.is_exist("auth-key") == 1
        for store in stores:
            store.close()
    finally:
        node.stop()
        metadata.stop()
        master.stop()
