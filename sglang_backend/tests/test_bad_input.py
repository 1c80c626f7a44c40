"""Bad input and failures through the Python API: clear codes, no exceptions, no hangs.

Stated limits: setup against a master that is down returns a non-zero code within 10 s (the
client's RPC deadline is 5 s); while the master is down every call returns a negative code within
10 s; after the master restarts the client remounts its segment and calls succeed again within
20 s (heartbeat every 1 s).
"""

import socket
import time

import numpy as np
import pytest

import harness
from mooncake.store import MooncakeDistributedStore, ReplicateConfig

SETUP_LIMIT_S = 10.0
CALL_LIMIT_S = 10.0


@pytest.fixture
def buffers(store):
    src = np.arange(1 << 16, dtype=np.uint8)
    dst = np.zeros(1 << 16, dtype=np.uint8)
    assert store.register_buffer(src.ctypes.data, src.nbytes) == 0
    assert store.register_buffer(dst.ctypes.data, dst.nbytes) == 0
    return src, dst


def test_calls_before_setup_return_codes():
    s = MooncakeDistributedStore()
    assert s.put("k", b"v") == harness.INTERNAL_ERROR
    assert s.get("k") == b""
    assert s.is_exist("k") == harness.INTERNAL_ERROR
    assert s.batch_is_exist(["a", "b"]) == [harness.INTERNAL_ERROR] * 2
    assert s.batch_get_into(["a"], [1], [1]) == [harness.INTERNAL_ERROR]
    assert s.register_buffer(4096, 4096) == harness.INTERNAL_ERROR
    assert s.get_hostname() == ""
    assert s.close() == 0
    # Standalone mode with no storage process there (test_standalone.py covers the rest).
    port = harness.free_port()
    assert s.setup_dummy(1 << 30, 16 << 20, f"127.0.0.1:{port}") == harness.RPC_FAIL


def test_unregistered_pointer(store, buffers):
    src, dst = buffers
    stray = np.full(4096, 9, dtype=np.uint8)  # never registered
    assert store.put_from("unreg-put", stray.ctypes.data, stray.nbytes) < 0
    assert store.is_exist("unreg-put") == 0  # the failed put left nothing behind
    assert store.batch_put_from(["unreg-a", "unreg-b"], [stray.ctypes.data, src.ctypes.data],
                                [4096, 4096]) == [pytest.approx(-1, abs=10**6), 0]
    assert store.batch_put_from(["unreg-a"], [stray.ctypes.data], [4096])[0] < 0
    assert store.batch_is_exist(["unreg-a", "unreg-b"]) == [0, 1]
    assert store.get_into("unreg-b", stray.ctypes.data, stray.nbytes) < 0
    assert np.all(stray == 9)
    assert store.get_into("unreg-b", dst.ctypes.data, 4096) == 4096
    assert np.array_equal(dst[:4096], src[:4096])


def test_sizes_that_do_not_fit(store, buffers):
    src, dst = buffers
    assert store.put_from("size-obj", src.ctypes.data, 8192) == 0
    dst[:] = 0
    # A buffer smaller than the object: rejected, buffer untouched.
    assert store.get_into("size-obj", dst.ctypes.data, 4096) == harness.INVALID_PARAMS
    assert not dst.any()
    # A buffer larger than the object: fine, returns the object's size.
    assert store.get_into("size-obj", dst.ctypes.data, dst.nbytes) == 8192
    assert np.array_equal(dst[:8192], src[:8192]) and not dst[8192:].any()
    # A put that runs past the end of the registered buffer fails and stores nothing.
    assert store.put_from("size-overrun", src.ctypes.data + 4096, src.nbytes) < 0
    assert store.is_exist("size-overrun") == 0
    # Zero, negative and null sizes or pointers.
    assert store.put_from("size-zero", src.ctypes.data, 0) == harness.INVALID_PARAMS
    assert store.put_from("size-neg", src.ctypes.data, -5) == harness.INVALID_PARAMS
    assert store.put_from("size-null", 0, 4096) == harness.INVALID_PARAMS
    assert store.get_into("size-obj", 0, 8192) == harness.INVALID_PARAMS
    assert store.register_buffer(0, 10) == harness.INVALID_PARAMS
    assert store.register_buffer(src.ctypes.data, -1) == harness.INVALID_PARAMS
    assert store.put("size-empty-value", b"") == harness.INVALID_PARAMS


def test_mismatched_list_lengths(store, buffers):
    src, dst = buffers
    p, q = src.ctypes.data, dst.ctypes.data
    keys = ["mm-a", "mm-b", "mm-c"]
    assert store.batch_put_from(keys, [p, p], [4, 4, 4]) == [harness.INVALID_PARAMS] * 3
    assert store.batch_put_from(keys, [p, p, p], [4]) == [harness.INVALID_PARAMS] * 3
    assert store.batch_is_exist(keys) == [0, 0, 0]
    assert store.batch_get_into(keys, [q], [4, 4, 4]) == [harness.INVALID_PARAMS] * 3
    # Multi-buffer: an outer mismatch fails every key, an inner one only its key.
    assert store.batch_put_from_multi_buffers(keys, [[p]], [[4]]) == [harness.INVALID_PARAMS] * 3
    assert store.batch_put_from_multi_buffers(
        keys[:2], [[p, p + 8], [p]], [[4, 4], [4, 4]]) == [0, harness.INVALID_PARAMS]
    assert store.batch_get_into_multi_buffers(
        keys[:2], [[q], [q + 64]], [[8], [8]]) == [8, harness.OBJECT_NOT_FOUND]
    assert store.batch_put_from([], [], []) == []
    assert store.batch_get_into([], [], []) == []
    # Wrong types raise TypeError (pybind11), as the contract allows.
    with pytest.raises(TypeError):
        store.batch_put_from(keys, "not a list", [1, 2, 3])
    with pytest.raises(TypeError):
        store.put_from("k", p, 4, config="not a ReplicateConfig")


def test_empty_and_odd_keys(store, buffers):
    src, _ = buffers
    assert store.put("", b"v") == harness.INVALID_KEY
    assert store.get("") == b""
    assert store.is_exist("") == harness.INVALID_KEY
    assert store.batch_is_exist(["", "absent-key"]) == [harness.INVALID_KEY, 0]
    assert store.batch_put_from(["", "odd-ok"], [src.ctypes.data] * 2, [4, 4]) == [
        harness.INVALID_KEY, 0]
    assert store.get_size("") == harness.INVALID_KEY
    assert store.remove("") == harness.INVALID_KEY
    assert store.get("absent-key") == b""
    assert store.get_size("absent-key") == harness.OBJECT_NOT_FOUND
    assert store.remove("absent-key") == harness.OBJECT_NOT_FOUND
    # Unicode and long keys are fine; a key beyond the master's 4096-byte limit is not.
    assert store.put("ключ-🔑", b"unicode") == 0 and store.get("ключ-🔑") == b"unicode"
    assert store.put("k" * 4000, b"long") == 0 and store.get("k" * 4000) == b"long"
    assert store.put("k" * 5000, b"too long") < 0
    assert store.remove_by_regex("([unclosed") < 0


def test_replicate_config_is_accepted(stores, master, buffers):
    store = stores()
    assert harness.setup_store(store, master.address) == 0
    src, _ = buffers
    assert store.register_buffer(src.ctypes.data, src.nbytes) == 0
    config = ReplicateConfig()
    assert (config.replica_num, config.with_soft_pin, config.with_hard_pin) == (1, False, False)
    config.with_soft_pin = True
    config.preferred_segment = store.get_hostname()
    config.group_ids = ["g1"]
    assert store.put_from("rc-soft", src.ctypes.data, 64, config) == 0
    assert store.put("rc-bytes", b"x", config) == 0
    assert store.batch_put_from(["rc-batch"], [src.ctypes.data], [64], config) == [0]
    config.replica_num = 0
    assert store.put("rc-zero-replicas", b"x", config) == harness.INVALID_PARAMS
    config.replica_num = 9
    assert store.batch_put_from(["rc-nine"], [src.ctypes.data], [64], config) == [
        harness.INVALID_PARAMS]
    # Two replicas need two segments: there are two stores on this master now.
    other = stores()
    assert harness.setup_store(other, master.address) == 0
    config.replica_num = 2
    assert store.put_from("rc-two", src.ctypes.data, 64, config) == 0
    assert other.get("rc-two") == src[:64].tobytes()


def test_setup_rejects_bad_arguments(stores, master):
    s = stores()
    m = master.address
    assert s.setup(harness.HOST, "P2PHANDSHAKE", "4xb", 1 << 20, "tcp", "", m) == \
        harness.INVALID_PARAMS
    assert s.setup(harness.HOST, "P2PHANDSHAKE", -1, 1 << 20, "tcp", "", m) == \
        harness.INVALID_PARAMS
    assert s.setup(harness.HOST, "P2PHANDSHAKE", 1 << 20, 1 << 20, "pigeon", "", m) == \
        harness.INVALID_PARAMS
    assert s.setup(harness.HOST, "P2PHANDSHAKE", 1 << 20, 1 << 20, "tcp", "", "nohost") == \
        harness.INVALID_PARAMS
    assert s.setup(harness.HOST, "P2PHANDSHAKE", 1 << 20, 1 << 20, "tcp", "", m,
                   tenant_id="team-a") == harness.NOT_SUPPORTED
    assert s.setup({"master_server_address": m, "bogus_key": 1}) == harness.INVALID_PARAMS
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        s.setup(harness.HOST, "P2PHANDSHAKE", 1 << 20, 1 << 20, "tcp", "", m, bogus=1)
    with pytest.raises(TypeError, match="missing required argument 'master_server_addr'"):
        s.setup(harness.HOST, "P2PHANDSHAKE", 1 << 20, 1 << 20, "tcp", "")
    with pytest.raises(TypeError):
        s.setup(harness.HOST, "P2PHANDSHAKE", 1.5, 1 << 20, "tcp", "", m)
    with pytest.raises(TypeError):
        s.setup(harness.HOST, "P2PHANDSHAKE", 1 << 20, 1 << 20, "tcp", "", m, "not an engine")
    # After all that the store still sets up; a second setup is refused.
    assert s.setup(harness.HOST, "P2PHANDSHAKE", "32mb", "16mb", "tcp", "", m) == 0
    assert s.setup(harness.HOST, "P2PHANDSHAKE", "32mb", "16mb", "tcp", "", m) == \
        harness.INVALID_PARAMS
    assert s.put("bad-args-ok", b"1") == 0


def test_rdma_without_the_device_is_a_clear_setup_error(stores, master, capfd):
    """protocol=rdma naming a device this host lacks: a non-zero code and a log line that names
    the device; no crash, no silent switch to TCP, and the same store sets up over TCP after."""
    s = stores()
    started = time.monotonic()
    rc = s.setup(harness.HOST, "P2PHANDSHAKE", "32mb", "16mb", "rdma", "erdma_9", master.address)
    assert rc != 0
    assert time.monotonic() - started < SETUP_LIMIT_S
    assert "erdma_9" in capfd.readouterr().err
    assert s.put("rdma-refused", b"1") == harness.INTERNAL_ERROR  # not set up: nothing served
    assert s.setup(harness.HOST, "P2PHANDSHAKE", "32mb", "16mb", "tcp", "", master.address) == 0
    assert s.put("rdma-refused-then-tcp", b"1") == 0


def test_setup_forms_and_ignored_extras(stores, master, metadata_server):
    # Every client of one cluster uses the same metadata service (here the HTTP one).
    # 8 positional arguments with engine=None, and SGLang's keyword extras.
    a = stores()
    assert a.setup(harness.HOST, metadata_server.url, "32mb", 16 << 20, "tcp", "", master.address,
                   None, enable_ssd_offload=True, ssd_offload_path="/tmp/x", tenant_id="default",
                   enable_client_http_server=True, client_http_port=9300) == 0
    # setup(config: dict) with Mooncake's key spellings and a size string.
    b = stores()
    assert b.setup({"local_hostname": harness.HOST, "metadata_server": metadata_server.url,
                    "global_segment_size": "32mb", "local_buffer_size": 0, "protocol": "tcp",
                    "device_name": "", "master_server_addr": master.address}) == 0
    assert a.put("forms-key", b"from a") == 0
    assert b.get("forms-key") == b"from a"
    # A pure client (segment 0) reads and writes through others' segments.
    c = stores()
    assert harness.setup_store(c, master.address, metadata=metadata_server.url, segment=0) == 0
    assert c.get("forms-key") == b"from a"
    assert c.put("forms-key-c", b"from c") == 0 and a.get("forms-key-c") == b"from c"
    assert a.close() == 0 and a.close() == 0
    assert a.put("after-close", b"x") == harness.INTERNAL_ERROR


def test_master_down_at_setup(stores):
    s = stores()
    t0 = time.monotonic()
    rc = harness.setup_store(s, f"{harness.HOST}:{harness.free_port()}")
    assert rc < 0 and time.monotonic() - t0 < SETUP_LIMIT_S
    # A peer that accepts TCP but never answers: the RPC deadline bounds the wait.
    with socket.socket() as silent:
        silent.bind((harness.HOST, 0))
        silent.listen(8)
        t0 = time.monotonic()
        rc = harness.setup_store(s, f"{harness.HOST}:{silent.getsockname()[1]}")
        assert rc < 0 and time.monotonic() - t0 < SETUP_LIMIT_S, rc


def test_master_restart_mid_run(stores):
    master = harness.start_master(client_ttl=2)
    try:
        s = stores()
        assert harness.setup_store(s, master.address) == 0
        buf = np.arange(4096, dtype=np.uint8)
        assert s.register_buffer(buf.ctypes.data, buf.nbytes) == 0
        assert s.put_from("restart-before", buf.ctypes.data, 4096) == 0

        master.stop()
        calls = {
            "put": lambda: s.put("restart-down", b"x"),
            "put_from": lambda: s.put_from("restart-down", buf.ctypes.data, 4096),
            "is_exist": lambda: s.is_exist("restart-before"),
            "batch_is_exist": lambda: s.batch_is_exist(["restart-before"])[0],
            "get_into": lambda: s.get_into("restart-before", buf.ctypes.data, 4096),
            "batch_get_into": lambda: s.batch_get_into(["restart-before"], [buf.ctypes.data],
                                                       [4096])[0],
            "get_size": lambda: s.get_size("restart-before"),
            "remove_all": lambda: s.remove_all(),
        }
        for name, call in calls.items():
            t0 = time.monotonic()
            rc = call()
            assert rc < 0, (name, rc)
            assert time.monotonic() - t0 < CALL_LIMIT_S, name
        assert s.get("restart-before") == b""

        master = harness.start_master(port=master.port, metrics_port=master.metrics_port,
                                      client_ttl=2)
        deadline = time.monotonic() + 20
        while s.put_from("restart-after", buf.ctypes.data, 4096) != 0:
            assert time.monotonic() < deadline, "no successful put after the master restarted"
            time.sleep(0.2)
        out = np.zeros(4096, dtype=np.uint8)
        assert s.register_buffer(out.ctypes.data, out.nbytes) == 0
        assert s.get_into("restart-after", out.ctypes.data, 4096) == 4096
        assert np.array_equal(out, buf)
        # The restarted master lost the old object's metadata; it reads as absent, not stale.
        assert s.is_exist("restart-before") in (0, 1)
        status, body = harness.http_get(
            f"http://{harness.HOST}:{master.metrics_port}/get_all_segments")
        assert status == 200 and s.get_hostname().encode() in body  # remounted
    finally:
        master.stop()
