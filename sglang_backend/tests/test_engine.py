"""mooncake.engine.TransferEngine: initialize, rpc port, transfers, and sharing with the store."""

import numpy as np
import pytest

import harness
from mooncake.engine import TransferEngine, TransferOpcode
from mooncake.store import MooncakeDistributedStore


@pytest.fixture
def engines():
    made = []

    def make(metadata="P2PHANDSHAKE"):
        e = TransferEngine()
        assert e.initialize(harness.HOST, metadata, "tcp", "") == 0
        made.append(e)
        return e

    yield make
    made.clear()


def test_initialize_and_rpc_port(engines):
    e = TransferEngine()
    assert e.get_rpc_port() == -1 and e.get_engine() is None
    assert e.register_memory(4096, 4096) == harness.INTERNAL_ERROR
    assert e.initialize(harness.HOST, "P2PHANDSHAKE", "tcp", "") == 0
    port = e.get_rpc_port()
    assert 0 < port < 65536
    assert e.get_local_segment_name() == f"{harness.HOST}:{port}"
    assert e.initialize(harness.HOST, "P2PHANDSHAKE", "tcp", "") == harness.INVALID_PARAMS
    assert TransferEngine().initialize(harness.HOST, "P2PHANDSHAKE", "carrier-pigeon", "") < 0
    assert TransferEngine().initialize(harness.HOST, "nonsense://x", "tcp", "") < 0


@pytest.mark.parametrize("mode", ["P2PHANDSHAKE", "http"])
def test_transfers_between_two_engines(engines, metadata_server, mode):
    metadata = "P2PHANDSHAKE" if mode == "P2PHANDSHAKE" else metadata_server.url
    a, b = engines(metadata), engines(metadata)
    target = a.get_local_segment_name()
    n = 1 << 20
    remote = a.allocate_managed_buffer(n)
    assert remote != 0
    assert b.send_probe(target) == 0
    assert b.send_probe(f"{harness.HOST}:1") < 0
    src = np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8)
    dst = np.zeros(n, dtype=np.uint8)
    assert b.batch_register_memory([src.ctypes.data, dst.ctypes.data], [n, n]) == 0
    assert b.transfer_sync_write(target, src.ctypes.data, remote, n) == 0
    assert a.read_bytes_from_buffer(remote, 16) == src[:16].tobytes()
    assert b.transfer_sync_read(target, dst.ctypes.data, remote, n) == 0
    assert np.array_equal(src, dst)
    half = n // 2
    assert a.write_bytes_to_buffer(remote, b"\x07" * half, half) == 0
    assert b.batch_transfer_sync_read(target, [dst.ctypes.data, dst.ctypes.data + half],
                                      [remote, remote + half], [half, half]) == 0
    assert (dst[:half] == 7).all() and np.array_equal(dst[half:], src[half:])
    assert b.transfer_sync(target, src.ctypes.data, remote, 8, TransferOpcode.Write) == 0
    # Failures are codes: outside the remote buffer, unknown target, unregistered local memory.
    assert b.transfer_sync_write(target, src.ctypes.data, remote + n - 4, 8) < 0
    assert b.transfer_sync_write(f"{harness.HOST}:1", src.ctypes.data, remote, 8) < 0
    stray = np.zeros(64, dtype=np.uint8)
    assert b.transfer_sync_write(target, stray.ctypes.data, remote, 64) < 0
    assert b.batch_transfer_sync_write(target, [src.ctypes.data], [remote], [1, 2]) == \
        harness.INVALID_PARAMS
    assert b.batch_unregister_memory([src.ctypes.data, dst.ctypes.data]) == 0
    assert a.free_managed_buffer(remote, n) == 0
    assert a.free_managed_buffer(remote, n) == harness.INVALID_PARAMS


def test_store_shares_the_engine(engines, master, stores):
    """SGLang's reuse: store.setup(..., engine.get_engine()) with the engine's session id."""
    e = engines()
    handle = e.get_engine()
    session_id = f"{harness.HOST}:{e.get_rpc_port()}"
    s = stores()
    assert s.setup(session_id, "P2PHANDSHAKE", 32 << 20, 16 << 20, "tcp", "", master.address,
                   handle) == 0
    assert s.get_hostname() == session_id  # one engine: the store's segment is the engine's
    harness.sglang_warmup(s)
    # Another store reads the object from the shared engine's segment.
    other = stores()
    assert harness.setup_store(other, master.address, segment=0) == 0
    assert other.put("shared-engine-key", b"abc") == 0 and s.get("shared-engine-key") == b"abc"
    # Closing the store unmounts its segment: its objects go with it.
    assert s.close() == 0
    assert other.get("shared-engine-key") == b""
    # An engine that was never initialized is a clear error, another object a TypeError.
    assert MooncakeDistributedStore().setup(
        harness.HOST, "P2PHANDSHAKE", 0, 0, "tcp", "", master.address, TransferEngine()) == \
        harness.INVALID_PARAMS
    with pytest.raises(TypeError):
        MooncakeDistributedStore().setup(harness.HOST, "P2PHANDSHAKE", 0, 0, "tcp", "",
                                         master.address, object())


@pytest.mark.parametrize("route", ["tcp", "shm"])
def test_store_reopened_on_a_shared_engine_sees_new_writes(master, stores, route, monkeypatch):
    """A store closed and set up again on the same engine gets a new segment; peers must use it."""
    if route == "tcp":
        monkeypatch.setenv("MC_DISABLE_SHM", "1")
    e = TransferEngine()
    assert e.initialize(harness.HOST, "P2PHANDSHAKE", "tcp", "") == 0
    session_id = f"{harness.HOST}:{e.get_rpc_port()}"
    s = stores()
    assert s.setup(session_id, "P2PHANDSHAKE", 32 << 20, 16 << 20, "tcp", "", master.address,
                   e.get_engine()) == 0
    peer = stores()
    assert harness.setup_store(peer, master.address, segment=0) == 0
    assert peer.put("reopen-1", b"first") == 0 and s.get("reopen-1") == b"first"
    assert s.close() == 0
    s2 = stores()
    assert s2.setup(session_id, "P2PHANDSHAKE", 32 << 20, 16 << 20, "tcp", "", master.address,
                    e) == 0
    assert peer.put("reopen-2", b"again") == 0
    assert s2.get("reopen-2") == b"again"


def test_memory_registered_after_the_peer_connected(engines):
    a, b = engines(), engines()
    target = a.get_local_segment_name()
    assert b.send_probe(target) == 0  # b opens a's segment before a registers anything
    remote = a.allocate_managed_buffer(4096)
    src = np.full(4096, 5, dtype=np.uint8)
    assert b.register_memory(src.ctypes.data, src.nbytes) == 0
    assert b.transfer_sync_write(target, src.ctypes.data, remote, 4096) == 0
    assert a.read_bytes_from_buffer(remote, 4) == b"\x05" * 4
