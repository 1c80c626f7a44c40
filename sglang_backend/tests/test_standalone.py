"""Standalone mode (docs/standalone.md) with real processes: mooncake_master, the storage process
`mooncake_client` from the wheel, and SGLang-side processes that call setup_dummy and allocate
their pool with MooncakeHostMemAllocator.

What a user relies on: objects belong to the storage process, so an SGLang restart (even kill -9)
keeps them; a storage process that dies gives clean error codes, never a crash or a hang, and a
restarted one is picked up without calling setup again; setup_dummy connects in well under 100 ms.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import harness

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child_client.py")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sglang_driver.py")
PAGES = 64
PAGE_BYTES = 256 << 10


@pytest.fixture
def storage(master):
    client = harness.start_mooncake_client(master, segment="128mb")
    yield client
    client.stop()


def run_child(args, timeout=90):
    proc = subprocess.run([sys.executable, CHILD, json.dumps(args)], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def dummy_store(address):
    from mooncake.store import MooncakeDistributedStore
    store = MooncakeDistributedStore()
    assert store.setup_dummy(64 << 20, 16 << 20, address) == 0
    return store


def test_objects_outlive_the_sglang_process(storage, master):
    common = {"client_server_address": storage.address, "pages": PAGES,
              "page_bytes": PAGE_BYTES, "rank": 0, "tag": "standalone-restart"}
    put = run_child(dict(common, mode="write", seed=5))
    assert put["put"] == [0] * (2 * PAGES)
    assert put["setup_ms"] < 100, put
    # A new SGLang-side process (the old one exited) reads every byte back.
    got = run_child(dict(common, mode="read", seed=5))
    assert got["prefix"] == PAGES and got["match"], got
    assert got["got"] == [PAGE_BYTES] * (2 * PAGES)
    # The objects are the storage process's: an embedded client on the same master sees them in
    # its segment.
    from mooncake.store import MooncakeDistributedStore
    embedded = MooncakeDistributedStore()
    try:
        assert harness.setup_store(embedded, master.address, segment=0) == 0
        key = harness.mha_keys(harness.page_hashes(1, seed="standalone-restart"), 0)[0]
        replicas = embedded.get_replica_desc(key)
        assert len(replicas) == 1 and replicas[0].is_memory_replica()
        desc = replicas[0].get_memory_descriptor().buffer_descriptor
        assert desc.transport_endpoint == storage.hostname and desc.size == PAGE_BYTES
    finally:
        embedded.close()


def test_sglang_side_killed_mid_use_loses_nothing(storage):
    """kill -9 of an SGLang-side process holding pool blocks the storage process has mapped:
    the storage process keeps serving, and the objects written before are intact."""
    common = {"client_server_address": storage.address, "pages": 16, "page_bytes": PAGE_BYTES,
              "rank": 1, "tag": "standalone-kill"}
    assert run_child(dict(common, mode="write", seed=9))["put"] == [0] * 32
    code = ("import sys, time; sys.path.insert(0, %r); import harness\n"
            "from mooncake.store import MooncakeDistributedStore, MooncakeHostMemAllocator\n"
            "s = MooncakeDistributedStore(); assert s.setup_dummy(0, 0, %r) == 0\n"
            "pool = harness.PageFirstPool(16, %d, allocator=MooncakeHostMemAllocator())\n"
            "pool.fill(range(16), 3)\n"
            "keys = harness.mha_keys(harness.page_hashes(16, seed='standalone-victim'), 0)\n"
            "print(s.batch_put_from(keys, *pool.buffers(range(16))), flush=True)\n"
            "time.sleep(60)\n") % (os.path.dirname(CHILD), storage.address, PAGE_BYTES)
    victim = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert victim.stdout.readline().strip() == str([0] * 32)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert storage.alive()
    got = run_child(dict(common, mode="read", seed=9))
    assert got["prefix"] == 16 and got["match"], got
    store = dummy_store(storage.address)
    try:
        keys = harness.mha_keys(harness.page_hashes(16, seed="standalone-victim"), 0)
        assert store.batch_is_exist(keys) == [1] * 32
        value = store.get(keys[0])
        assert value == harness.expected_object(3, 0, 0, PAGE_BYTES).tobytes()
    finally:
        store.close()


def test_storage_process_killed_then_restarted():
    # A master of its own: until its client_ttl runs out, the master still places puts on the
    # killed process's segment, which would fail other tests' puts.
    master = harness.start_master()
    storage = harness.start_mooncake_client(master, segment="64mb")
    port = storage.port
    store = dummy_store(storage.address)
    try:
        buf = np.frombuffer(os.urandom(PAGE_BYTES), dtype=np.uint8).copy()
        assert store.put_from("before-kill", buf.ctypes.data, buf.nbytes) == 0
        assert store.health_check() == 0
        storage.stop(signal.SIGKILL)
        # Every call returns a clean code at once: nothing raises, nothing hangs.
        start = time.monotonic()
        assert store.is_exist("before-kill") == harness.RPC_FAIL
        assert store.batch_is_exist(["a", "b"]) == [harness.RPC_FAIL] * 2
        assert store.put_from("during", buf.ctypes.data, buf.nbytes) == harness.RPC_FAIL
        assert store.batch_get_into(["before-kill"], [buf.ctypes.data],
                                    [buf.nbytes]) == [harness.RPC_FAIL]
        assert store.get("before-kill") == b""
        assert store.get_buffer("before-kill") is None
        assert store.health_check() == 2
        assert time.monotonic() - start < 5
        # A storage process restarted on the same port is used by the next call. The killed
        # one's objects died with its segment: the master may list them until its client_ttl
        # declares the old process dead, but reading one is an error, never old or wrong bytes.
        storage = harness.start_mooncake_client(master, segment="64mb", port=port)
        deadline = time.monotonic() + 10
        while store.health_check() != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.health_check() == 0
        assert store.put_from("after-restart", buf.ctypes.data, buf.nbytes) == 0
        out = np.zeros_like(buf)
        assert store.get_into("after-restart", out.ctypes.data, out.nbytes) == buf.nbytes
        assert np.array_equal(out, buf)
        out[:] = 0
        assert store.get_into("before-kill", out.ctypes.data, out.nbytes) < 0
        assert not out.any()
    finally:
        store.close()
        storage.stop()
        master.stop()


def test_setup_dummy_bad_addresses():
    from mooncake.store import MooncakeDistributedStore
    store = MooncakeDistributedStore()
    # Nothing listens there: an error code, quickly.
    start = time.monotonic()
    assert store.setup_dummy(0, 0, f"{harness.HOST}:{harness.free_port()}") == harness.RPC_FAIL
    assert time.monotonic() - start < 2
    assert store.setup_dummy(0, 0, "not an address") == harness.INVALID_PARAMS
    assert store.setup_dummy(0, 0, "127.0.0.1:99999") == harness.INVALID_PARAMS
    assert store.setup_dummy(-1, 0, "127.0.0.1:1") == harness.INVALID_PARAMS
    with pytest.raises(TypeError):
        store.setup_dummy("0", None, "127.0.0.1:1")
    assert store.health_check() == 1
    assert store.close() == 0


def test_standalone_values_and_staged_buffers(storage):
    """Memory that is not from MooncakeHostMemAllocator (numpy, bytes) goes through the staging
    block, including objects larger than it."""
    from mooncake.store import MooncakeDistributedStore
    store = MooncakeDistributedStore()
    assert store.setup_dummy(0, 1 << 20, storage.address) == 0  # 1 MiB staging
    try:
        big = np.frombuffer(os.urandom(3 << 20), dtype=np.uint8).copy()
        assert store.register_buffer(big.ctypes.data, big.nbytes) == 0
        assert store.batch_put_from(["big"], [big.ctypes.data], [big.nbytes]) == [0]
        out = np.zeros_like(big)
        assert store.batch_get_into(["big"], [out.ctypes.data], [out.nbytes]) == [big.nbytes]
        assert np.array_equal(out, big)
        assert store.put_parts("parts", b"head", memoryview(b"-body")) == 0
        assert bytes(store.get_buffer("parts")) == b"head-body"
        assert store.get_batch(["parts", "missing"]) == [b"head-body", b""]
        assert store.get_hostname() == storage.hostname
        # Just read, so leased: only a forced remove takes it now (Mooncake's rule).
        assert store.remove("parts") == harness.OBJECT_HAS_LEASE
        assert store.remove("parts", force=True) == 0 and store.is_exist("parts") == 0
    finally:
        store.close()


def test_sglang_mooncake_store_standalone(master, storage):
    """SGLang's own MooncakeStore with standalone_storage=True (sglang_driver.py --standalone):
    one SGLang process writes through batch_set_v1 and exits, a second reads the same pages."""
    if importlib.util.find_spec("sglang") is None:
        pytest.skip(f"sglang is not installed in {sys.prefix} (tools/test installs it from PyPI)")
    args = {"master": master.address, "metrics_port": master.metrics_port,
            "client_server_address": storage.address}
    for phase in ("write", "read"):
        proc = subprocess.run([sys.executable, DRIVER, json.dumps(dict(args, phase=phase))],
                              capture_output=True, text=True, timeout=180)
        ok = [l for l in proc.stdout.splitlines() if l.startswith("SGLANG-DRIVER-OK")]
        assert proc.returncode == 0 and ok, proc.stdout[-3000:] + proc.stderr[-3000:]
        summary = json.loads(ok[-1].split(" ", 1)[1])
        assert summary["standalone_" + phase] == "ok", summary
