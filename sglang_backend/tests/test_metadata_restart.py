"""The HTTP metadata server keeps its state in memory: after it restarts, every engine publishes
its descriptor again (within 3 s), so a process that starts afterwards still reads the pages
another process holds (Mooncake #2246: new nodes got 404s)."""

import os
import time

import harness
from test_cross_process import run_child

PAGES = 16
PAGE_BYTES = 64 << 10


def test_engines_publish_again_after_a_metadata_server_restart(stores, master):
    meta = harness.start_metadata_server()
    try:
        os.environ["MC_DISABLE_SHM"] = "1"  # the route between hosts: it needs the descriptor
        try:
            holder = stores()
            assert harness.setup_store(holder, master.address, metadata=meta.url,
                                       segment=64 << 20) == 0
        finally:
            os.environ.pop("MC_DISABLE_SHM", None)
        pool = harness.PageFirstPool(PAGES, PAGE_BYTES)
        assert holder.register_buffer(pool.ptr, pool.nbytes) == 0
        pool.fill(range(PAGES), seed=31)
        keys = harness.mha_keys(harness.page_hashes(PAGES, seed="meta-restart"), 0)
        assert holder.batch_put_from(keys, *pool.buffers(range(PAGES))) == [0] * (2 * PAGES)

        port = meta.port
        meta.stop()
        meta = harness.start_metadata_server(port=port)  # empty
        assert harness.http_get(f"{meta.url}?key=mooncake/ram/none")[0] == 404
        common = {"master": master.address, "metadata": meta.url, "pages": PAGES,
                  "page_bytes": PAGE_BYTES, "mode": "read", "seed": 31, "rank": 0,
                  "tag": "meta-restart"}
        deadline = time.monotonic() + 15
        while True:  # the holder's descriptor comes back within its 3 s check
            got = run_child(common, disable_shm=True)
            if got.get("match") and got.get("prefix") == PAGES:
                break
            assert time.monotonic() < deadline, got
            time.sleep(1.0)
    finally:
        meta.stop()
