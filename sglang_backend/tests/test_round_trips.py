"""Master round trips per SGLang batch, counted by a real mooncake_master.

The cross-check of the simulator's cluster benchmark (docs/benchmarks.md, "Cluster throughput"):
with the real master and the wheel, SGLang's backup (batch_is_exist, then batch_put_from of the
missing pages) costs exactly three master calls, and its prefetch (batch_is_exist, then
batch_get_into of the prefix) exactly one: the get reads from the replica lists the exist call
brought back. The counts come from the master's own /metrics (the *_calls_total counters).
"""

import pytest

import harness

PAGES = 128
PAGE_BYTES = 64 << 10
CALLS = ("exist", "get_replica_list", "put_start", "put_end", "put_revoke")


def data_calls(master):
    return {name: harness.master_metric(master, f"{name}_calls") for name in CALLS}


def calls_since(master, before):
    now = data_calls(master)
    return {name: now[name] - before[name] for name in CALLS if now[name] != before[name]}


@pytest.fixture
def own_master():
    service = harness.start_master()
    yield service
    service.stop()


def test_sglang_batches_cost_three_and_one_master_calls(stores, own_master):
    writer = stores()
    assert harness.setup_store(writer, own_master.address, segment=64 << 20) == 0
    reader = stores()
    assert harness.setup_store(reader, own_master.address, segment=64 << 20) == 0
    pool = harness.PageFirstPool(PAGES, PAGE_BYTES)
    assert writer.register_buffer(pool.ptr, pool.nbytes) == 0
    pool.fill(range(PAGES), seed=5)
    keys = harness.mha_keys(harness.page_hashes(PAGES, seed="round-trips"), 0)

    # Backup: which pages exist (none), then write them: exist, put-start, put-end.
    before = data_calls(own_master)
    assert writer.batch_is_exist(keys) == [0] * (2 * PAGES)
    assert writer.batch_put_from(keys, *pool.buffers(range(PAGES))) == [0] * (2 * PAGES)
    backup = calls_since(own_master, before)
    assert sum(backup.values()) == 3, backup
    assert backup["put_start"] == 1 and backup["put_end"] == 1, backup

    # Prefetch on another process's store: exist, then the get reads what it listed.
    out = harness.PageFirstPool(PAGES, PAGE_BYTES)
    assert reader.register_buffer(out.ptr, out.nbytes) == 0
    before = data_calls(own_master)
    exists = reader.batch_is_exist(keys)
    assert harness.exists_prefix(exists, 2) == PAGES
    got = reader.batch_get_into(keys, *out.buffers(range(PAGES)))
    prefetch = calls_since(own_master, before)
    assert got == [PAGE_BYTES] * (2 * PAGES)
    assert sum(prefetch.values()) == 1, prefetch
    for p in (0, PAGES // 2, PAGES - 1):
        for kind in range(2):
            assert (out.object_view(kind, p) ==
                    harness.expected_object(5, p, kind, PAGE_BYTES)).all()

    # A get with no exist before it (or a second get of the same keys) asks the master itself.
    out.clear()
    before = data_calls(own_master)
    assert reader.batch_get_into(keys, *out.buffers(range(PAGES))) == [PAGE_BYTES] * (2 * PAGES)
    assert calls_since(own_master, before) == {"get_replica_list": 1}
    assert (out.object_view(1, 7) == harness.expected_object(5, 7, 1, PAGE_BYTES)).all()


def test_an_exist_that_found_nothing_lets_the_get_fail_cleanly(stores, own_master):
    store = stores()
    assert harness.setup_store(store, own_master.address, segment=64 << 20) == 0
    pool = harness.PageFirstPool(4, 4096)
    assert store.register_buffer(pool.ptr, pool.nbytes) == 0
    keys = harness.mha_keys(harness.page_hashes(4, seed="absent"), 0)
    assert store.batch_is_exist(keys) == [0] * 8
    assert store.batch_get_into(keys, *pool.buffers(range(4))) == [harness.OBJECT_NOT_FOUND] * 8
