"""The store driven the way SGLang's HiCache Mooncake backend drives it, against real processes.

Covers: several TP-rank clients in one process each mounting segment // tp_size, the 4 KiB warmup,
a page_first host pool registered once (numpy, or MooncakeHostMemAllocator with 100s of GB of
address space), MHA keys {hash}_{rank}_k/_v and MLA keys {hash}__k, 128-page batches, the
batch_is_exist prefix rule, puts of existing keys returning 0, batch_get_into byte counts and
bytes, remove_all, the three concurrent SGLang threads, and the GIL released while calls wait.
"""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import harness

PAGES = 128  # SGLang's largest batch: 128 pages = 256 MHA objects
# A small page: 4 layers * 16 tokens * 2 heads * 64 head_dim * 2 bytes = 16 KiB per K or V object.
PAGE_BYTES = 4 * 16 * 2 * 64 * 2


def write_pages(store, pool, keys, pages, objects_per_page):
    """SGLang's write path: batch_is_exist, then batch_put_from of the missing keys only."""
    ptrs, sizes = pool.buffers(pages)
    exists = store.batch_is_exist(keys)
    missing = [i for i, e in enumerate(exists) if e != 1]
    results = [0] * len(keys)
    if missing:
        put = store.batch_put_from([keys[i] for i in missing], [ptrs[i] for i in missing],
                                   [sizes[i] for i in missing])
        for i, r in zip(missing, put):
            results[i] = r
    return results


def read_pages(store, pool, keys, pages, objects_per_page):
    """SGLang's read path: batch_is_exist -> leading prefix -> batch_get_into of that prefix."""
    prefix = harness.exists_prefix(store.batch_is_exist(keys), objects_per_page)
    n = prefix * objects_per_page
    ptrs, sizes = pool.buffers(pages[:prefix])
    got = store.batch_get_into(keys[:n], ptrs, sizes) if n else []
    return prefix, got


def assert_pool_matches(pool, pages, seed):
    for p in pages:
        for kind in range(pool.kinds):
            expected = harness.expected_object(seed, p, kind, pool.page_bytes)
            assert np.array_equal(pool.object_view(kind, p), expected), (p, kind)


def test_warmup_put_is_exist_get(store):
    key = harness.sglang_warmup(store)
    assert store.get_size(key) == 4096
    assert store.put(key, b"\x01" * 4096) == 0  # immutable: existing key is success...
    assert store.get(key) == bytes(4096)  # ...and the first value stays


def test_tp_ranks_mha_page_first(stores, master, metadata):
    """4 TP ranks in one process, each its own client with segment // 4, in 4 threads."""
    tp_size, global_segment = 4, 256 << 20
    hashes = harness.page_hashes(PAGES, seed=f"mha-{metadata}")
    ranks = []
    for rank in range(tp_size):
        s = stores()
        rc = harness.setup_store(s, master.address, metadata=metadata,
                                 segment=global_segment // tp_size)
        assert rc == 0
        harness.sglang_warmup(s)
        src = harness.PageFirstPool(PAGES, PAGE_BYTES)
        dst = harness.PageFirstPool(PAGES, PAGE_BYTES)
        for pool in (src, dst):
            assert s.register_buffer(pool.ptr, pool.nbytes) == 0  # once, the whole pool
        src.fill(range(PAGES), seed=rank)
        ranks.append((s, src, dst, harness.mha_keys(hashes, rank)))
    hostnames = {s.get_hostname() for s, *_ in ranks}
    assert len(hostnames) == tp_size  # one segment per rank

    def run(rank):
        s, src, dst, keys = ranks[rank]
        pages = list(range(PAGES))
        put = write_pages(s, src, keys, pages, 2)
        assert put == [0] * (2 * PAGES)
        prefix, got = read_pages(s, dst, keys, pages, 2)
        assert prefix == PAGES
        assert got == [PAGE_BYTES] * (2 * PAGES)
        assert_pool_matches(dst, pages, seed=rank)
        # A second write of the same pages finds everything present.
        assert s.batch_is_exist(keys) == [1] * (2 * PAGES)
        assert s.batch_put_from(keys, *src.buffers(pages)) == [0] * (2 * PAGES)
        return rank

    with ThreadPoolExecutor(tp_size) as ex:
        assert sorted(ex.map(run, range(tp_size))) == list(range(tp_size))

    # Rank 0 can read rank 1's objects too (they are plain keys in one pool).
    s0, _, dst0, _ = ranks[0]
    keys1 = ranks[1][3]
    dst0.clear()
    assert s0.batch_get_into(keys1[:16], *dst0.buffers(range(8))) == [PAGE_BYTES] * 16
    assert_pool_matches(dst0, range(8), seed=1)


def test_batch_is_exist_prefix_semantics(store):
    hashes = harness.page_hashes(PAGES, seed="prefix")
    keys = harness.mha_keys(hashes, 0)
    pool = harness.PageFirstPool(PAGES, PAGE_BYTES)
    assert store.register_buffer(pool.ptr, pool.nbytes) == 0
    pool.fill(range(PAGES), seed=7)
    ptrs, sizes = pool.buffers(range(PAGES))
    # Pages 0..63 complete, page 64 only K, page 100 complete (after a gap).
    chosen = list(range(0, 128)) + [128] + [200, 201]
    assert store.batch_put_from([keys[i] for i in chosen], [ptrs[i] for i in chosen],
                                [sizes[i] for i in chosen]) == [0] * len(chosen)
    exists = store.batch_is_exist(keys)
    assert exists == [1 if i in set(chosen) else 0 for i in range(len(keys))]
    assert harness.exists_prefix(exists, 2) == 64
    # SGLang's read path fetches exactly that prefix.
    pool.clear()
    prefix, got = read_pages(store, pool, keys, list(range(PAGES)), 2)
    assert prefix == 64 and got == [PAGE_BYTES] * 128
    assert_pool_matches(pool, range(64), seed=7)


def test_put_of_existing_keys_returns_zero_and_keeps_first_value(store):
    hashes = harness.page_hashes(16, seed="existing")
    keys = harness.mha_keys(hashes, 3)
    pool = harness.PageFirstPool(16, PAGE_BYTES)
    assert store.register_buffer(pool.ptr, pool.nbytes) == 0
    pool.fill(range(16), seed=1)
    assert store.batch_put_from(keys, *pool.buffers(range(16))) == [0] * 32
    pool.fill(range(16), seed=2)  # different bytes under the same keys
    assert store.batch_put_from(keys, *pool.buffers(range(16))) == [0] * 32
    pool.clear()
    assert store.batch_get_into(keys, *pool.buffers(range(16))) == [PAGE_BYTES] * 32
    assert_pool_matches(pool, range(16), seed=1)


@pytest.mark.parametrize("legacy", [False, True], ids=["hash__k", "hash_k"])
def test_mla_keys_shared_by_tp_ranks(stores, master, legacy):
    """MLA: one object per page, the same key for every rank; both ranks' puts succeed."""
    hashes = harness.page_hashes(PAGES, seed=f"mla-{legacy}")
    keys = harness.mla_keys(hashes, legacy=legacy)
    ranks = []
    for rank in range(2):
        s = stores()
        assert harness.setup_store(s, master.address, segment=(256 << 20) // 2) == 0
        pool = harness.PageFirstPool(PAGES, PAGE_BYTES, mla=True)
        assert s.register_buffer(pool.ptr, pool.nbytes) == 0
        pool.fill(range(PAGES), seed=11)  # MLA ranks hold identical KV
        ranks.append((s, pool))
    for s, pool in ranks:
        assert write_pages(s, pool, keys, list(range(PAGES)), 1) == [0] * PAGES
    for s, pool in ranks:
        pool.clear()
        prefix, got = read_pages(s, pool, keys, list(range(PAGES)), 1)
        assert prefix == PAGES and got == [PAGE_BYTES] * PAGES
        assert_pool_matches(pool, range(PAGES), seed=11)


def test_large_pages_multi_buffer_and_get_size(stores, master):
    """4 MiB objects (32 layers * 64 tokens * 8 heads * 128 * 2 B); multi-buffer puts/gets."""
    store = stores()
    assert harness.setup_store(store, master.address, segment="256mb") == 0
    page = 32 * 64 * 8 * 128 * 2
    pool = harness.PageFirstPool(8, page)
    assert store.register_buffer(pool.ptr, pool.nbytes) == 0
    pool.fill(range(8), seed=5)
    keys = harness.mha_keys(harness.page_hashes(8, seed="big"), 0)
    assert store.batch_put_from(keys, *pool.buffers(range(8))) == [0] * 16
    assert all(store.get_size(k) == page for k in keys)
    # An object assembled from two buffers, read back split differently.
    half = page // 2
    ptrs, _ = pool.buffers(range(8))
    multi_key = "multi-" + keys[0]
    assert store.batch_put_from_multi_buffers(
        [multi_key], [[ptrs[0], ptrs[1]]], [[half, page]]) == [0]
    pool.clear()
    assert store.batch_get_into_multi_buffers(
        [multi_key], [[ptrs[2], ptrs[3]]], [[page, half]]) == [half + page]
    expected = np.concatenate([harness.expected_object(5, 0, 0, page)[:half],
                               harness.expected_object(5, 0, 1, page)])
    got = np.concatenate([pool.object_view(0, 1), pool.object_view(1, 1)[:half]])
    assert np.array_equal(got, expected)
    assert store.batch_get_into(keys, *pool.buffers(range(8))) == [page] * 16
    assert_pool_matches(pool, range(8), seed=5)


def test_host_pool_from_mooncake_allocator_of_hundreds_of_gb(store):
    """SGLang's MooncakeHostTensorAllocator path: a 200 GiB pool registered once, used sparsely."""
    from mooncake.store import MooncakeHostMemAllocator
    allocator = MooncakeHostMemAllocator()
    rss_before = harness.rss_bytes()
    pool = harness.PageFirstPool(PAGES, PAGE_BYTES, allocator=allocator, reserve_bytes=200 << 30)
    try:
        assert pool.ptr % 4096 == 0
        assert store.register_buffer(pool.ptr, pool.nbytes) == 0
        pool.fill(range(PAGES), seed=9)
        keys = harness.mha_keys(harness.page_hashes(PAGES, seed="alloc"), 1)
        assert write_pages(store, pool, keys, list(range(PAGES)), 2) == [0] * (2 * PAGES)
        pool.clear()
        assert read_pages(store, pool, keys, list(range(PAGES)), 2)[0] == PAGES
        assert_pool_matches(pool, range(PAGES), seed=9)
        assert harness.rss_bytes() - rss_before < 256 << 20  # no page of the 200 GiB touched
        assert store.unregister_buffer(pool.ptr) == 0
    finally:
        pool.free()
    assert allocator.free(pool.ptr or 12345) != 0  # freeing something else fails cleanly


def test_remove_all_and_removes(store):
    assert store.remove_all(force=True) >= 0  # start from an empty store
    pool = harness.PageFirstPool(8, PAGE_BYTES)
    assert store.register_buffer(pool.ptr, pool.nbytes) == 0
    keys = harness.mha_keys(harness.page_hashes(8, seed="remove"), 0)
    assert store.batch_put_from(keys, *pool.buffers(range(8))) == [0] * 16
    # No lease yet (nothing read them): SGLang's clear() -> remove_all() removes everything.
    assert store.remove_all() == 16
    assert store.batch_is_exist(keys) == [0] * 16
    # Existence checks lease objects; a leased object survives remove_all() unless forced.
    assert store.batch_put_from(keys, *pool.buffers(range(8))) == [0] * 16
    assert store.batch_is_exist(keys) == [1] * 16
    assert store.remove_all() == 0
    assert store.remove_all(force=True) == 16
    # remove / batch_remove / remove_by_regex
    assert store.batch_put_from(keys, *pool.buffers(range(8))) == [0] * 16
    assert store.remove(keys[0], force=True) == 0
    assert store.remove(keys[0], force=True) == harness.OBJECT_NOT_FOUND
    assert store.batch_remove(keys[1:3], force=True) == [0, 0]
    assert store.remove_by_regex(r".*_0_v$", force=True) == 7  # keys[3], [5], ... [15]
    assert store.batch_is_exist(keys).count(1) == 16 - 3 - 7


def test_three_sglang_threads_at_once(store):
    """Exists, reads and writes from three threads at once (SGLang's prefetch/backup threads)."""
    page = 1 << 20
    pool = harness.PageFirstPool(32, page)
    assert store.register_buffer(pool.ptr, pool.nbytes) == 0
    pool.fill(range(32), seed=3)
    keys = harness.mha_keys(harness.page_hashes(32, seed="threads"), 0)
    assert store.batch_put_from(keys[:32], *pool.buffers(range(16))) == [0] * 32
    readers = harness.PageFirstPool(16, page)
    assert store.register_buffer(readers.ptr, readers.nbytes) == 0

    stop = threading.Event()
    errors, counts = [], {}

    def loop(fn):
        try:
            while not stop.is_set():
                fn()
                counts[fn.__name__] = counts.get(fn.__name__, 0) + 1
        except Exception as e:  # noqa: BLE001 - surfaced through `errors`
            errors.append(e)

    def exists():
        assert store.batch_is_exist(keys)[:32] == [1] * 32

    def reads():
        assert store.batch_get_into(keys[:32], *readers.buffers(range(16))) == [page] * 32

    def writes():
        assert all(r == 0 for r in store.batch_put_from(keys[32:], *pool.buffers(range(16, 32))))

    threads = [threading.Thread(target=loop, args=(f,)) for f in (exists, reads, writes)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert set(counts) == {"exists", "reads", "writes"}, counts
    assert_pool_matches(readers, range(16), seed=3)
    pool_check = harness.PageFirstPool(16, page)
    assert store.register_buffer(pool_check.ptr, pool_check.nbytes) == 0
    assert store.batch_get_into(keys[32:], *pool_check.buffers(range(16))) == [page] * 32
    for p in range(16):
        for kind in range(2):
            assert np.array_equal(pool_check.object_view(kind, p),
                                  harness.expected_object(3, p + 16, kind, page))


def test_blocked_calls_release_the_gil(stores):
    """With the master frozen (SIGSTOP) batch calls block until their RPC deadline; meanwhile
    other Python threads must keep running, so the calls cannot be holding the GIL."""
    master = harness.start_master()
    try:
        store = stores()
        assert harness.setup_store(store, master.address) == 0
        buf = np.arange(1 << 16, dtype=np.uint8)
        assert store.register_buffer(buf.ctypes.data, buf.nbytes) == 0
        assert store.put_from("gil-key", buf.ctypes.data, 4096) == 0
        calls = {
            "batch_is_exist": lambda: store.batch_is_exist(["gil-key"])[0],
            "batch_get_into": lambda: store.batch_get_into(["gil-key"], [buf.ctypes.data],
                                                           [4096])[0],
            "batch_put_from": lambda: store.batch_put_from(["gil-new"], [buf.ctypes.data],
                                                           [4096])[0],
            "get": lambda: -1 if store.get("gil-key") == b"" else 0,
        }
        results = {}
        os.kill(master.proc.pid, signal.SIGSTOP)
        try:
            harness.wait_stopped(master.proc.pid)
            threads = [threading.Thread(target=lambda n=n, f=f: results.__setitem__(n, f()))
                       for n, f in calls.items()]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            ticks = 0
            while any(t.is_alive() for t in threads) and time.monotonic() - t0 < 30:
                time.sleep(0.001)  # needs the GIL back every millisecond
                ticks += 1
            blocked_for = time.monotonic() - t0
        finally:
            os.kill(master.proc.pid, signal.SIGCONT)
        assert all(r < 0 for r in results.values()), results  # RPC timeouts, not exceptions
        assert len(results) == len(calls)
        assert blocked_for > 1.0, blocked_for  # they really waited for the frozen master
        assert ticks > 100 * blocked_for, (ticks, blocked_for)  # and Python kept running
    finally:
        master.stop()
