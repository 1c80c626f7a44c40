"""The call patterns of mooncake.store's other users, written from their sources, against real
mooncake_master processes: vLLM's Mooncake store connector (vllm/distributed/kv_transfer/
kv_connector/v1/mooncake/store/worker.py), LMCache's mooncakestore:// connector
(lmcache/v1/storage_backend/connector/mooncakestore_connector.py), and the rest of Mooncake's
Python API (put_batch/get_batch, the upsert family, replica descriptors, health_check,
MooncakeDistributedStoreAsync). The packages themselves are not installed: both import torch and
CUDA-only code at module level (docs/compatibility.md says what that leaves untested).
"""

import asyncio
import ctypes
import os
import struct
import time

import numpy as np
import pytest

import harness

MiB = 1 << 20


def vllm_setup(store, master, segment):
    # MooncakeStoreWorker: store.setup(local_hostname, metadata_server, global_segment_size,
    # local_buffer_size, protocol, device_name, master_server_address), all positional.
    return store.setup(harness.HOST, "P2PHANDSHAKE", segment, 16 * MiB, "tcp", "",
                       master.address)


class VllmSendingThread:
    """KVCacheStoreSendingThread._handle_request's store logic: dedup with batch_is_exist, put the
    missing blocks with batch_put_from_multi_buffers, and on NO_AVAILABLE_HANDLE (-200) enter
    pressure mode, which skips the request's later batches until a batch succeeds."""

    def __init__(self, store):
        self.store = store
        self.pressure = False
        self.skipped = set()

    def handle(self, req_id, keys, addrs, sizes):
        if self.pressure and req_id in self.skipped:
            return "skipped"
        exists = self.store.batch_is_exist(keys)
        missing = [i for i, e in enumerate(exists) if e != 1]
        if not missing:
            return "deduped"
        keys = [keys[i] for i in missing]
        res = self.store.batch_put_from_multi_buffers(
            keys, [addrs[i] for i in missing], [sizes[i] for i in missing])
        failed = {v for v in res if v < 0}
        if failed:
            if harness.NO_AVAILABLE_HANDLE in failed:
                self.pressure = True
                self.skipped.add(req_id)
            return res
        self.pressure = False
        self.skipped.clear()
        return res


class Blocks:
    """vLLM's KV blocks: each key is `parts` non-contiguous buffers (one per layer group)."""

    def __init__(self, store, n, part_bytes, parts=2, seed=0):
        self.n, self.part_bytes, self.parts = n, part_bytes, parts
        rng = np.random.default_rng(seed)
        # Parts of a key are `n` buffers apart, as per-layer KV tensors are.
        self.buf = rng.integers(0, 256, n * parts * part_bytes, dtype=np.uint8)
        assert store.register_buffer(self.buf.ctypes.data, self.buf.nbytes) == 0

    def addrs(self, block):
        return [self.buf.ctypes.data + (p * self.n + block) * self.part_bytes
                for p in range(self.parts)]

    def sizes(self):
        return [self.part_bytes] * self.parts

    def value(self, block):
        return b"".join(ctypes.string_at(a, self.part_bytes) for a in self.addrs(block))


@pytest.fixture
def own_master():
    m = harness.start_master(lease_ttl_ms=300)
    yield m
    m.stop()


def settle_evictions(master, quiet=1.0, timeout=15.0):
    """Waits until the master's evicted_objects count has not moved for `quiet` seconds."""
    last, since, deadline = None, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = harness.master_metric(master, "evicted_objects")
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError("eviction did not settle")


def test_vllm_store_connector_sequence(stores, own_master):
    store = stores()
    assert vllm_setup(store, own_master, 16 * MiB) == 0
    blocks = Blocks(store, 24, 512 << 10, seed=1)  # 24 blocks of 1 MiB, 2 parts each
    keys = [f"vllm@model@tp_rank:0@{i:064x}" for i in range(24)]
    sender = VllmSendingThread(store)

    # A request whose blocks fit: stored, then deduplicated on the next save.
    first = sender.handle("req-a", keys[:8], [blocks.addrs(i) for i in range(8)],
                          [blocks.sizes()] * 8)
    assert first == [0] * 8
    assert sender.handle("req-a", keys[:8], [blocks.addrs(i) for i in range(8)],
                         [blocks.sizes()] * 8) == "deduped"
    # A batch larger than the free pool (16 MiB, 8 used): the keys that fit are stored, the rest
    # get -200, and the connector enters pressure mode for that request.
    res = sender.handle("req-b", keys[8:], [blocks.addrs(i) for i in range(8, 24)],
                        [blocks.sizes()] * 16)
    assert harness.NO_AVAILABLE_HANDLE in res, res
    assert all(r in (0, harness.NO_AVAILABLE_HANDLE) for r in res), res
    assert sender.pressure
    assert sender.handle("req-b", keys[8:], [], []) == "skipped"
    # The pool is full, so the master's watermark eviction may be running (a flake when it took a
    # key between the exists below and the read). No put follows and nothing is leased yet, so
    # once its count stops moving nothing more is evicted.
    settle_evictions(own_master)
    exists = store.batch_is_exist(keys)
    assert exists[:8] == [1] * 8
    # A key that got -200 was not stored. A stored one is there unless the master's watermark
    # eviction (the pool is full now) took it since: only as many as it reports evicted.
    assert all(e == 0 for e, r in zip(exists[8:], res) if r != 0), (exists, res)
    gone = sum(1 for e, r in zip(exists[8:], res) if r == 0 and e != 1)
    assert gone <= harness.master_metric(own_master, "evicted_objects"), (exists, res)

    # The recving thread: batch_get_into_multi_buffers scatters each object over its parts.
    stored = [i for i in range(24) if exists[i] == 1]
    out = Blocks(store, 24, 512 << 10, seed=99)
    got = store.batch_get_into_multi_buffers([keys[i] for i in stored],
                                             [out.addrs(i) for i in stored],
                                             [out.sizes()] * len(stored))
    assert got == [MiB] * len(stored)
    assert all(out.value(i) == blocks.value(i) for i in stored)
    # With Mooncake's optional fourth argument too; a missing key fails alone.
    got = store.batch_get_into_multi_buffers([keys[0], "vllm@absent"], [out.addrs(0),
                                             out.addrs(1)], [out.sizes()] * 2, True)
    assert got == [MiB, harness.OBJECT_NOT_FOUND]

    # Tier logging: batch_get_replica_desc, keys that exist only.
    descs = store.batch_get_replica_desc([keys[0], "vllm@absent"])
    assert list(descs) == [keys[0]]
    assert descs[keys[0]][0].is_memory_replica() and not descs[keys[0]][0].is_disk_replica()

    # remove_all(force=True) (the connector's clear) frees the pool, even objects just read;
    # the next batch succeeds and pressure mode ends.
    assert store.remove_all(force=True) == len(stored)
    res = sender.handle("req-c", keys[8:16], [blocks.addrs(i) for i in range(8, 16)],
                        [blocks.sizes()] * 8)
    assert res == [0] * 8 and not sender.pressure
    assert store.close() == 0


def test_vllm_preferred_segment(stores, master):
    a, b = stores(), stores()
    assert vllm_setup(a, master, 16 * MiB) == 0
    assert vllm_setup(b, master, 16 * MiB) == 0
    from mooncake.store import ReplicateConfig
    blocks = Blocks(a, 4, 64 << 10, seed=2)
    for target in (a, b):
        config = ReplicateConfig()
        config.preferred_segment = target.get_hostname()
        keys = [f"pref-{target.get_hostname()}-{i}" for i in range(4)]
        assert a.batch_put_from_multi_buffers(keys, [blocks.addrs(i) for i in range(4)],
                                              [blocks.sizes()] * 4, config) == [0] * 4
        for key, replicas in a.batch_get_replica_desc(keys).items():
            endpoint = replicas[0].get_memory_descriptor().buffer_descriptor.transport_endpoint
            assert endpoint == target.get_hostname(), key


def lmcache_metadata(kv_bytes, dtype=1, shape=(2, 16, 8, 128), fmt=1):
    # LMCache's RemoteMetadata: 7 int32s (length, dtype, 4 shape dims, memory format) = 28 bytes.
    meta = struct.pack("iiiiiii", kv_bytes, dtype, *shape, fmt)
    assert len(meta) == 28
    return meta


def test_lmcache_connector_sequence(stores, master):
    from mooncake.store import ReplicateConfig
    store = stores()
    assert vllm_setup(store, master, 32 * MiB) == 0
    config = ReplicateConfig()
    config.replica_num = 1
    chunk = 256 << 10
    kv = np.random.default_rng(3).integers(0, 256, 8 * chunk, dtype=np.uint8)
    assert store.register_buffer(kv.ctypes.data, kv.nbytes) == 0
    keys = [f"lmcache@chunk{i}" for i in range(8)]
    # Zero-copy puts from the registered CPU buffer, then existence used as a boolean.
    for i in range(4):
        assert store.put_from(keys[i], kv.ctypes.data + i * chunk, chunk, config) == 0
    assert bool(store.is_exist(keys[0])) and not bool(store.is_exist(keys[7]))
    out = np.zeros_like(kv)
    assert store.register_buffer(out.ctypes.data, out.nbytes) == 0
    got = store.batch_get_into(keys[:4], [out.ctypes.data + i * chunk for i in range(4)],
                               [chunk] * 4)
    assert got == [chunk] * 4 and np.array_equal(out[:4 * chunk], kv[:4 * chunk])

    # save_chunk_meta: put_parts(key, 28-byte header, kv bytes); read back with get_buffer and
    # batch_get_buffer, header parsed from the first 28 bytes.
    for i in range(4, 8):
        part = memoryview(kv[i * chunk:(i + 1) * chunk])
        assert store.put_parts(keys[i], lmcache_metadata(chunk), part, config=config) == 0
    handle = store.get_buffer(keys[4])
    view = memoryview(handle)
    assert handle.size() == len(handle) == view.nbytes == 28 + chunk
    assert handle.ptr() != 0
    length, dtype, *shape, fmt = struct.unpack_from("iiiiiii", view, 0)
    assert (length, dtype, tuple(shape), fmt) == (chunk, 1, (2, 16, 8, 128), 1)
    assert bytes(view[28:]) == kv[4 * chunk:5 * chunk].tobytes()
    array = np.frombuffer(handle, dtype=np.uint8, offset=28)  # what torch.frombuffer does
    assert np.array_equal(array, kv[4 * chunk:5 * chunk])
    handles = store.batch_get_buffer(keys[4:] + ["lmcache@absent"])
    assert handles[-1] is None
    for i, h in zip(range(4, 8), handles):
        assert bytes(memoryview(h)[28:]) == kv[i * chunk:(i + 1) * chunk].tobytes()
    # A handle keeps its bytes after the store drops the object.
    assert store.remove_all(force=True) == 8
    assert bytes(memoryview(handles[0])[28:]) == kv[4 * chunk:5 * chunk].tobytes()

    assert store.get_hostname().startswith(harness.HOST + ":")
    assert store.unregister_buffer(kv.ctypes.data) == 0
    assert store.unregister_buffer(out.ctypes.data) == 0
    assert store.close() == 0
    assert store.get_buffer(keys[0]) is None  # after close: nothing, no crash


def test_put_batch_get_batch_and_errors(store):
    values = [os.urandom(n) for n in (1, 4096, 3 * MiB)]
    keys = ["pb-0", "pb-1", "pb-2"]
    assert store.put_batch(keys, values) == 0
    assert store.get_batch(keys + ["pb-absent"]) == values + [b""]
    assert store.put_batch(["pb-x"], []) == harness.INVALID_PARAMS
    assert store.put_batch(["", "pb-y"], [b"a", b"b"]) == harness.INVALID_KEY
    assert store.put_parts("pb-empty") == harness.INVALID_PARAMS
    assert store.put_parts("pb-z", b"", b"x") == 0 and store.get("pb-z") == b"x"
    with pytest.raises(TypeError):
        store.put_parts("pb-t", "not bytes")
    with pytest.raises(TypeError):
        store.put_parts("pb-t", b"a", replicas=2)


def test_upsert_family(stores, own_master):
    # A master with a 300 ms read lease: each upsert below follows a read of the same key, and
    # waits for that lease to end (with the default 5 s lease this test would take 40 s).
    store = stores()
    assert harness.setup_store(store, own_master.address) == 0
    assert store.upsert("up-1", b"old value") == 0  # insert
    assert store.upsert("up-1", b"new, longer value") == 0  # replace
    assert store.get("up-1") == b"new, longer value"
    assert store.upsert_parts("up-1", b"a", b"b") == 0 and store.get("up-1") == b"ab"
    assert store.upsert_batch(["up-1", "up-2"], [b"1", b"2"]) == 0
    assert store.get_batch(["up-1", "up-2"]) == [b"1", b"2"]
    buf = np.frombuffer(os.urandom(2 * MiB), dtype=np.uint8).copy()
    assert store.register_buffer(buf.ctypes.data, buf.nbytes) == 0
    assert store.upsert_from("up-1", buf.ctypes.data, MiB) == 0
    assert store.get("up-1") == buf[:MiB].tobytes()
    assert store.batch_upsert_from(["up-1", "up-3"], [buf.ctypes.data + MiB, buf.ctypes.data],
                                   [MiB, 4096]) == [0, 0]
    assert store.get("up-1") == buf[MiB:].tobytes() and store.get("up-3") == buf[:4096].tobytes()
    assert store.batch_upsert_from(["up-4"], [0], [16]) == [harness.INVALID_PARAMS]
    assert store.unregister_buffer(buf.ctypes.data) == 0


def test_upsert_waits_for_readers(stores, own_master):
    """An upsert of an object a reader just leased waits for the lease (300 ms here) to end, then
    replaces it. (Not atomic: a reader in between gets OBJECT_NOT_FOUND, never a mix of bytes;
    an object read without pause for 12 s keeps its lease, and the upsert then returns
    OBJECT_HAS_LEASE.)"""
    writer, reader = stores(), stores()
    assert harness.setup_store(writer, own_master.address) == 0
    assert harness.setup_store(reader, own_master.address, segment=0) == 0
    old, new = b"o" * MiB, b"n" * (2 * MiB)
    assert writer.put("hot", old) == 0
    assert reader.get("hot") == old  # leased now
    assert writer.remove("hot") == harness.OBJECT_HAS_LEASE
    start = time.monotonic()
    assert writer.upsert("hot", new) == 0
    elapsed = time.monotonic() - start
    assert 0.1 < elapsed < 5, elapsed
    assert reader.get("hot") == new and writer.get_size("hot") == len(new)


def test_replica_descriptors(stores, master):
    from mooncake.store import ReplicaStatus, ReplicateConfig
    a, b = stores(), stores()
    assert harness.setup_store(a, master.address) == 0
    assert harness.setup_store(b, master.address) == 0
    config = ReplicateConfig()
    config.replica_num = 2
    value = os.urandom(100_000)
    assert a.put("rd-two", value, config) == 0
    replicas = a.get_replica_desc("rd-two")
    assert len(replicas) == 2
    assert {r.get_memory_descriptor().buffer_descriptor.transport_endpoint for r in replicas} \
        == {a.get_hostname(), b.get_hostname()}
    for r in replicas:
        assert r.status == ReplicaStatus.COMPLETE
        assert r.is_memory_replica() and not r.is_disk_replica() and not r.is_nof_replica()
        d = r.get_memory_descriptor().buffer_descriptor
        assert d.size == len(value) and d.buffer_address != 0
        with pytest.raises(ValueError):
            r.get_disk_descriptor()
    assert a.get_replica_desc("rd-absent") == []
    assert a.batch_get_replica_desc(["rd-absent"]) == {}


def test_health_check():
    from mooncake.store import MooncakeDistributedStore
    master = harness.start_master()
    store = MooncakeDistributedStore()
    try:
        assert store.health_check() == 1  # not set up
        assert harness.setup_store(store, master.address) == 0
        assert store.health_check() == 0
        master.stop()
        assert store.health_check() == 2
    finally:
        store.close()
        master.stop()
    assert store.health_check() == 1


def test_async_store(master):
    from mooncake.async_store import MooncakeDistributedStoreAsync
    from mooncake.store import MooncakeDistributedStoreAsync as same
    assert same is MooncakeDistributedStoreAsync
    store = MooncakeDistributedStoreAsync()

    async def main():
        assert await store.async_setup(harness.HOST, "P2PHANDSHAKE", 32 * MiB, 16 * MiB, "tcp",
                                       "", master.address) == 0
        keys = [f"async-{i}" for i in range(16)]
        values = [os.urandom(64 << 10) for _ in keys]
        rcs = await asyncio.gather(*(store.async_put_parts(k, v[:100], v[100:])
                                     for k, v in zip(keys, values)))
        assert rcs == [0] * 16
        assert await store.async_batch_is_exist(keys) == [1] * 16
        handles = await store.async_batch_get_buffer(keys)
        assert [bytes(h) for h in handles] == values
        assert await store.async_get_batch(keys[:2]) == values[:2]
        assert await store.async_health_check() == 0
        assert await store.async_close() == 0

    asyncio.run(main())
    assert store.put("sync-still-works", b"x") == harness.INTERNAL_ERROR  # closed
    with pytest.raises(AttributeError):
        store.async_no_such_method
