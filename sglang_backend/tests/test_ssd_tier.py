"""The SSD tier (docs/ssd_tier.md) with real processes: mooncake_master --enable_offload, a
mooncake_storage_node with --ssd_offload_path on real files, and the wheel's store as the client
SGLang drives. Pages evicted from the 64 MiB pool read back from disk; a storage node killed with
SIGKILL and restarted on the same directory serves them again; a full disk costs only disk copies.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import numpy as np
import pytest

import harness

PAGE = 256 << 10


def page_bytes(page):
    """256 KiB of page `page`: a 4 KiB random block tiled, distinct per page."""
    block = np.random.default_rng([7, page]).integers(0, 256, 4096, dtype=np.uint8)
    return np.tile(block, PAGE // 4096)


@pytest.fixture
def offload_master():
    # One eviction per put batch frees eviction_ratio of the pool: at 0.3 that covers a 64-page
    # batch of a 256-page pool.
    m = harness.start_master(extra=["--enable_offload", "--eviction_ratio=0.3"])
    yield m
    m.stop()


@pytest.fixture
def ssd_dir():
    d = tempfile.mkdtemp(prefix="mooncake-ssd-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def client(master):
    from mooncake.store import MooncakeDistributedStore
    store = MooncakeDistributedStore()
    assert harness.setup_store(store, master.address, segment=0) == 0
    return store


class Pages:
    """A registered buffer of `n` pages, written and checked page by page."""

    def __init__(self, store, n):
        self.store = store
        self.buf = np.zeros(n * PAGE, dtype=np.uint8)
        assert store.register_buffer(self.buf.ctypes.data, self.buf.nbytes) == 0
        self.n = n

    def ptrs(self, count):
        return [self.buf.ctypes.data + i * PAGE for i in range(count)]

    def put(self, first, count):
        for i in range(count):
            self.buf[i * PAGE:(i + 1) * PAGE] = page_bytes(first + i)
        keys = [f"page-{first + i}" for i in range(count)]
        return self.store.batch_put_from(keys, self.ptrs(count), [PAGE] * count)

    def get(self, first, count):
        """Per page: True read back right, False wrong bytes (never allowed), None not found."""
        self.buf[:count * PAGE] = 0
        keys = [f"page-{first + i}" for i in range(count)]
        got = self.store.batch_get_into(keys, self.ptrs(count), [PAGE] * count)
        out = []
        for i, rc in enumerate(got):
            if rc < 0:
                out.append(None)
                continue
            assert rc == PAGE
            out.append(bool(np.array_equal(self.buf[i * PAGE:(i + 1) * PAGE],
                                           page_bytes(first + i))))
        return out


def await_metric(master, name, at_least, timeout=30.0):
    deadline = time.monotonic() + timeout
    while harness.master_metric(master, name) < at_least:
        assert time.monotonic() < deadline, f"{name} < {at_least}"
        time.sleep(0.02)


def write_gib(master, pages, total_pages, batch):
    """Writes the pages in batches, each once the tier has caught up with the one before (the
    pool holds 256 pages; an object not yet on disk when its space is needed is lost)."""
    for first in range(0, total_pages, batch):
        assert pages.put(first, batch) == [0] * batch, f"put of pages {first}+{batch}"
        await_metric(master, "offload_stored", first + batch)


def test_one_gib_through_a_64_mib_pool_reads_back(offload_master, ssd_dir):
    node = harness.start_storage_node(offload_master, "64mb", args=[f"--ssd_offload_path={ssd_dir}"])
    try:
        store = client(offload_master)
        total, batch = 4096, 64  # 1 GiB in 256 KiB pages
        pages = Pages(store, batch)
        write_gib(offload_master, pages, total, batch)
        assert harness.master_metric(offload_master, "evicted_to_disk") >= total - 256
        exists = store.batch_is_exist([f"page-{i}" for i in range(total)])
        assert exists == [1] * total
        for first in range(0, total, batch):
            assert pages.get(first, batch) == [True] * batch, f"pages {first}+{batch}"

        # kill -9, then a restart on the same directory and segment name: every page comes back.
        node.stop(signal.SIGKILL)
        node = harness.start_storage_node(offload_master, "64mb", port=node.port,
                                          args=[f"--ssd_offload_path={ssd_dir}"])
        assert f"{total} objects recovered" in node.log()
        await_metric(offload_master, "offload_recovered", total)
        for first in range(0, total, batch):
            assert pages.get(first, batch) == [True] * batch, f"after restart: {first}+{batch}"
        store.close()
    finally:
        node.stop()


def test_a_torn_bucket_is_dropped_at_restart_and_never_served(offload_master, ssd_dir):
    node = harness.start_storage_node(offload_master, "64mb", args=[f"--ssd_offload_path={ssd_dir}"])
    try:
        store = client(offload_master)
        pages = Pages(store, 64)
        assert pages.put(0, 64) == [0] * 64
        await_metric(offload_master, "offload_stored", 64)
        node.stop(signal.SIGKILL)
        # A crash mid-write leaves a bucket cut short: tear the newest one in the middle.
        buckets = sorted(f for f in os.listdir(ssd_dir) if f.endswith(".mcb"))
        torn = os.path.join(ssd_dir, buckets[-1])
        with open(torn, "r+b") as f:
            f.truncate(os.path.getsize(torn) // 2 + 1000)
        node = harness.start_storage_node(offload_master, "64mb", port=node.port,
                                          args=[f"--ssd_offload_path={ssd_dir}"])
        assert "torn" in node.log()
        result = pages.get(0, 64)
        assert False not in result, "a torn record was served"
        assert 0 < result.count(True) < 64
        store.close()
    finally:
        node.stop()


def test_a_full_disk_costs_only_disk_copies(offload_master):
    """The offload directory is a 16 MiB tmpfs (in a private mount namespace): writes past it fail
    with ENOSPC, are logged and counted, and nothing else is lost."""
    # Root needs only a mount namespace (a chroot refuses user namespaces; tools/foreign_root
    # binds its roots onto themselves so that unshare can make their mounts private); anyone
    # else gets root inside a user namespace first.
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    if shutil.which("unshare") is None or subprocess.run(
            unshare + ["true"], capture_output=True).returncode != 0:
        pytest.skip(f"{' '.join(unshare)} (a private mount namespace) is not available here, so "
                    "no small tmpfs can be mounted for the full-disk case")
    d = tempfile.mkdtemp(prefix="mooncake-ssd-full-")
    script = f'mount -t tmpfs -o size=16m none {d} && exec "$@"'
    node = harness.start_storage_node(offload_master, "64mb", wrap=unshare + ["sh", "-c",
                                                                              script, "sh"],
                                      args=[f"--ssd_offload_path={d}"])
    try:
        store = client(offload_master)
        pages = Pages(store, 64)
        total = 256  # 64 MiB of pages: four times what the disk holds
        for first in range(0, total, 64):
            assert pages.put(first, 64) == [0] * 64
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        while "ENOSPC" not in node.log():
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.1)
        assert node.alive()
        # Every page still present reads back right; the newest (in memory) are all there.
        for first in range(0, total, 64):
            assert False not in pages.get(first, 64)
        assert pages.get(192, 64) == [True] * 64
        assert store.batch_is_exist(["page-255"]) == [1]
        store.close()
    finally:
        node.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_bad_offload_settings_name_the_field(offload_master, ssd_dir):
    from mooncake.store import MooncakeDistributedStore
    store = MooncakeDistributedStore()
    rc = harness.setup_store(store, offload_master.address, segment=0, enable_ssd_offload=True,
                             ssd_offload_path=ssd_dir)
    assert rc == harness.INVALID_PARAMS  # a pure client has no segment to offload
    store = MooncakeDistributedStore()
    assert harness.setup_store(store, offload_master.address, enable_ssd_offload=True,
                               ssd_offload_path="relative/dir") == harness.INVALID_PARAMS
    # A master without --enable_offload: the storage node says so and keeps serving memory.
    plain = harness.start_master()
    node = harness.start_storage_node(plain, "16mb", args=[f"--ssd_offload_path={ssd_dir}"])
    try:
        deadline = time.monotonic() + 5
        while "--enable_offload" not in node.log():
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.05)
        assert node.alive()
    finally:
        node.stop()
        plain.stop()
    bad = subprocess.run([os.path.join(harness.BIN_DIR, "mooncake_master"), "--enable_offload",
                          "--offload_on_evict"], capture_output=True, text=True, timeout=20)
    assert bad.returncode != 0 and "offload_on_evict" in bad.stderr
