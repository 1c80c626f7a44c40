"""Objects written by one process and read by another (the wheel in two interpreters).

The parent holds the storage segment; the child is a pure client (segment 0), as when SGLang
ranks use a separate storage node. The same-host route is shared memory; MC_DISABLE_SHM=1 forces
TCP, the route between hosts.
"""

import json
import os
import subprocess
import sys

import pytest

import harness

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child_client.py")
PAGES = 128
PAGE_BYTES = 64 << 10


def run_child(args, disable_shm):
    env = dict(os.environ)
    if disable_shm:
        env["MC_DISABLE_SHM"] = "1"
    proc = subprocess.run([sys.executable, CHILD, json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("route", ["shm", "tcp"])
def test_objects_cross_processes(stores, master, metadata, route):
    disable_shm = route == "tcp"
    if disable_shm:
        os.environ["MC_DISABLE_SHM"] = "1"  # the parent's engine too
    try:
        parent = stores()
        assert harness.setup_store(parent, master.address, metadata=metadata,
                                   segment=64 << 20) == 0
    finally:
        os.environ.pop("MC_DISABLE_SHM", None)
    tag = f"xproc-{route}-{metadata}"
    common = {"master": master.address, "metadata": metadata, "pages": PAGES,
              "page_bytes": PAGE_BYTES}

    # Parent writes, child reads.
    pool = harness.PageFirstPool(PAGES, PAGE_BYTES)
    assert parent.register_buffer(pool.ptr, pool.nbytes) == 0
    pool.fill(range(PAGES), seed=21)
    keys = harness.mha_keys(harness.page_hashes(PAGES, seed=tag + "-p"), 0)
    assert parent.batch_put_from(keys, *pool.buffers(range(PAGES))) == [0] * (2 * PAGES)
    got = run_child(dict(common, mode="read", seed=21, rank=0, tag=tag + "-p"), disable_shm)
    assert got == {"prefix": PAGES, "got": [PAGE_BYTES] * (2 * PAGES), "match": True}

    # Child writes (into the parent's segment) and exits; parent and a new child read.
    put = run_child(dict(common, mode="write", seed=22, rank=1, tag=tag + "-c"), disable_shm)
    assert put == {"put": [0] * (2 * PAGES)}
    keys = harness.mha_keys(harness.page_hashes(PAGES, seed=tag + "-c"), 1)
    pool.clear()
    assert parent.batch_get_into(keys, *pool.buffers(range(PAGES))) == [PAGE_BYTES] * (2 * PAGES)
    for p in range(PAGES):
        for kind in range(2):
            assert (pool.object_view(kind, p) ==
                    harness.expected_object(22, p, kind, PAGE_BYTES)).all()
    got = run_child(dict(common, mode="read", seed=22, rank=1, tag=tag + "-c"), disable_shm)
    assert got["prefix"] == PAGES and got["match"]
