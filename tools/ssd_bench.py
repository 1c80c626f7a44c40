"""ssd_bench: the SSD tier's read bandwidth against the disk's own, and hit rates with and without
the tier, in one run, with the installed `mooncake` wheel as the client (SGLang's calls).

  disk-only reads  the storage node holds a 64 MiB pool and an SSD tier; --gib of pages are
                   written (paced to the tier), so all but the newest 64 MiB are only on disk; the
                   client reads them back with batch_get_into in HiCache-sized batches. Baseline:
                   dd iflag=direct of a file of the same size in the same directory, same block
                   size. Both at 256 KiB and 2 MiB objects.
  hit rate         a working set 8x the pool, written once, then read in random order: the
                   fraction of pages that read back, and the bandwidth, with the tier and without
                   it (a master without --enable_offload, a node without an SSD directory).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "sglang_backend", "tests"))
import harness  # noqa: E402
from mooncake.store import MooncakeDistributedStore  # noqa: E402

POOL = 64 << 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def dd_direct_read(path, block, total):
    """GB/s dd reads `path` with O_DIRECT in blocks of `block` bytes."""
    count = total // block
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", f"bs={block}", f"count={count}",
                    "oflag=direct"], check=True, capture_output=True)
    out = subprocess.run(["dd", f"if={path}", "of=/dev/null", f"bs={block}", "iflag=direct"],
                         check=True, capture_output=True, text=True).stderr
    os.unlink(path)
    m = re.search(r"copied, ([0-9.]+) s", out)
    return total / float(m.group(1)) / 1e9


class Setup:
    """A master, a storage node with a POOL segment (and an SSD tier when `ssd_dir`), a client."""

    def __init__(self, ssd_dir, size, buffer_pages):
        extra = ["--enable_offload", "--eviction_ratio=0.3"] if ssd_dir else ["--eviction_ratio=0.3"]
        self.master = harness.start_master(extra=extra)
        args = [f"--ssd_offload_path={ssd_dir}"] if ssd_dir else []
        self.node = harness.start_storage_node(self.master, f"{POOL}", args=args)
        self.store = MooncakeDistributedStore()
        assert harness.setup_store(self.store, self.master.address, segment=0) == 0
        self.size = size
        self.buf = np.zeros(buffer_pages * size, dtype=np.uint8)
        assert self.store.register_buffer(self.buf.ctypes.data, self.buf.nbytes) == 0
        self.offload = bool(ssd_dir)

    def ptrs(self, n):
        return [self.buf.ctypes.data + i * self.size for i in range(n)]

    def fill(self, pages):
        for i, p in enumerate(pages):
            block = np.random.default_rng([7, p]).integers(0, 256, 4096, dtype=np.uint8)
            self.buf[i * self.size:(i + 1) * self.size] = np.tile(block, self.size // 4096)

    def write(self, total, batch):
        for first in range(0, total, batch):
            pages = list(range(first, min(total, first + batch)))
            self.fill(pages)
            rc = self.store.batch_put_from([f"p{p}" for p in pages], self.ptrs(len(pages)),
                                           [self.size] * len(pages))
            assert set(rc) <= {0, -200}, rc
            if self.offload:  # pace to the tier, as test_ssd_tier does
                deadline = time.monotonic() + 60
                while harness.master_metric(self.master, "offload_stored") < first + len(pages):
                    assert time.monotonic() < deadline
                    time.sleep(0.005)

    def read(self, pages, batch, check=False):
        """(pages read, seconds spent in batch_get_into)."""
        hits, spent = 0, 0.0
        for k in range(0, len(pages), batch):
            chunk = pages[k:k + batch]
            t = time.perf_counter()
            rc = self.store.batch_get_into([f"p{p}" for p in chunk], self.ptrs(len(chunk)),
                                           [self.size] * len(chunk))
            spent += time.perf_counter() - t
            hits += sum(1 for r in rc if r == self.size)
            if check:
                got = self.buf[:len(chunk) * self.size].copy()
                self.fill(chunk)
                for i, r in enumerate(rc):
                    if r == self.size:
                        a = got[i * self.size:(i + 1) * self.size]
                        assert np.array_equal(a, self.buf[i * self.size:(i + 1) * self.size])
        return hits, spent

    def close(self):
        self.store.close()
        self.node.stop()
        self.master.stop()


def disk_only(args, size, ssd_root):
    total = (args.gib << 30) // size
    batch = max(1, (16 << 20) // size) if size < (2 << 20) else 8
    d = tempfile.mkdtemp(dir=ssd_root, prefix="ssd-bench-")
    s = Setup(d, size, batch)
    try:
        log(f"  writing {args.gib} GiB of {size >> 10} KiB pages")
        s.write(total, batch)
        on_disk = list(range(0, total - (POOL // size)))  # older than the pool holds
        s.read(on_disk[:batch], batch, check=True)  # correctness first
        log(f"  reading {len(on_disk)} disk-only pages")
        hits, spent = s.read(on_disk, batch)
        assert hits == len(on_disk), (hits, len(on_disk))
        ours = hits * size / spent / 1e9
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)
    dd = dd_direct_read(os.path.join(ssd_root, "ssd-bench-dd"), size, args.gib << 30)
    return ours, dd


def hit_rate(args, with_tier, ssd_root):
    size = 256 << 10
    total = 8 * POOL // size  # working set 8x the pool
    d = tempfile.mkdtemp(dir=ssd_root, prefix="ssd-bench-") if with_tier else None
    s = Setup(d, size, 64)
    try:
        s.write(total, 64)
        order = np.random.default_rng(3).permutation(total).tolist()
        hits, spent = s.read(order, 64, check=True)
    finally:
        s.close()
        if d:
            shutil.rmtree(d, ignore_errors=True)
    return hits / total, hits * size / spent / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gib", type=int, default=1, help="GiB written per object size")
    p.add_argument("--dir", default="/tmp", help="file system of the SSD tier and of dd's file")
    args = p.parse_args()
    rows = []
    for size in (256 << 10, 2 << 20):
        log(f"disk-only reads, {size >> 10} KiB objects")
        ours, dd = disk_only(args, size, args.dir)
        rows.append((f"disk-only batch_get_into, {size >> 10} KiB", f"{ours:.2f} GB/s",
                     f"dd iflag=direct {dd:.2f} GB/s", f"{ours / dd:.2f}x"))
    for with_tier in (True, False):
        log(f"hit rate, working set 8x the pool, {'with' if with_tier else 'without'} the tier")
        rate, bw = hit_rate(args, with_tier, args.dir)
        rows.append((f"8x working set, {'with' if with_tier else 'without'} SSD tier",
                     f"hit rate {rate * 100:.1f} %", f"{bw:.2f} GB/s of hits", ""))
    print("| measurement | ours | baseline / detail | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
