#!/usr/bin/env python3
"""standalone_bench: standalone mode (setup_dummy to a mooncake_client) against embedded mode
(setup with the process's own segment), the same batches in the same run.

Each mode gets its own master, so the pool is exactly one segment: in embedded mode the SGLang-side
process's, in standalone mode the storage process's. The host pool comes from
MooncakeHostMemAllocator in both (SGLang's standalone mode requires it; embedded mode registers
it). A round is batch_put_from of 128 fresh keys, then batch_get_into of the same keys, every byte
checked; rounds alternate between the modes. Two passes: the pool left alone between calls (as
when the GPU's DMA fills and drains it, SGLang's case), and rewritten by this process's CPU
before each call (its cache then favours the process that wrote it: embedded mode). Warm-up rounds (uncounted) first touch the whole segment. Also reported: setup_dummy connect time.

Usage: tools/standalone_bench [--object 256kb] [--rounds 20] [--keys 128]
Prints progress on stderr and a markdown table on stdout.
"""

import argparse
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sglang_backend",
                                "tests"))

import numpy as np  # noqa: E402

import harness  # noqa: E402
from mooncake.store import MooncakeDistributedStore, MooncakeHostMemAllocator  # noqa: E402

SEGMENT = 1 << 30


def parse_size(text):
    m = re.fullmatch(r"(\d+)\s*([kmg]?)b?", text.strip().lower())
    if not m:
        raise ValueError(f"bad size {text!r}")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2)]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Mode:
    """One mode's store and its rounds: batch_put_from of fresh keys, then batch_get_into."""

    def __init__(self, tag, store, pool, keys_per_batch):
        self.tag, self.store, self.pool = tag, store, pool
        self.ptrs = [pool.ptr + i * pool.page_bytes for i in range(keys_per_batch)]
        self.sizes = [pool.page_bytes] * keys_per_batch
        self.nbytes = keys_per_batch * pool.page_bytes
        self.src = np.random.default_rng(1).integers(0, 256, self.nbytes, dtype=np.uint8)
        self.results, self.rounds = {}, 0  # touch -> (put GB/s list, get GB/s list)

    def round(self, counted, touch):
        """One round. With `touch`, this process's CPU rewrites the pool before the put and clears
        it before the get, and the bytes are checked; without, the pool is left alone between
        calls, as when the GPU's DMA fills and drains it (SGLang's case)."""
        keys = [f"{self.tag}-{self.rounds}-{i}" for i in range(len(self.ptrs))]
        self.rounds += 1
        if touch:
            self.pool.array[:self.nbytes] = self.src
        t = time.perf_counter()
        rc = self.store.batch_put_from(keys, self.ptrs, self.sizes)
        put = self.nbytes / (time.perf_counter() - t) / 1e9
        assert rc == [0] * len(keys), rc
        if touch:
            self.pool.array[:self.nbytes] = 0
        t = time.perf_counter()
        got = self.store.batch_get_into(keys, self.ptrs, self.sizes)
        get = self.nbytes / (time.perf_counter() - t) / 1e9
        assert got == self.sizes, got
        if touch:
            assert np.array_equal(self.pool.array[:self.nbytes], self.src), "bytes read differ"
        if (self.rounds * self.nbytes) % (SEGMENT // 2) == 0:
            self.store.remove_all(True)  # keep the pool from filling (eviction is not measured)
        if counted:
            self.results.setdefault(touch, ([], []))
            self.results[touch][0].append(put)
            self.results[touch][1].append(get)
        return put, get


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--object", default="256kb")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--keys", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=None,
                    help="uncounted rounds first (default: enough to touch the whole segment)")
    a = ap.parse_args()
    obj = parse_size(a.object)
    warmup = a.warmup if a.warmup is not None else SEGMENT // (a.keys * obj)
    allocator = MooncakeHostMemAllocator()

    log("embedded: a master and this process's own 1 GiB segment")
    masters = [harness.start_master(), harness.start_master()]
    embedded = MooncakeDistributedStore()
    assert harness.setup_store(embedded, masters[0].address, segment=SEGMENT) == 0
    log("standalone: a master and a mooncake_client holding a 1 GiB segment, setup_dummy here")
    storage = harness.start_mooncake_client(masters[1], segment=f"{SEGMENT >> 20}mb")
    connects = []
    for _ in range(5):
        probe = MooncakeDistributedStore()
        t = time.perf_counter()
        assert probe.setup_dummy(0, 16 << 20, storage.address) == 0
        connects.append((time.perf_counter() - t) * 1000)
        probe.close()
    standalone = MooncakeDistributedStore()
    assert standalone.setup_dummy(SEGMENT, 16 << 20, storage.address) == 0
    modes = []
    for tag, store in (("embedded", embedded), ("standalone", standalone)):
        pool = harness.PageFirstPool(a.keys, obj, mla=True, allocator=allocator)
        assert store.register_buffer(pool.ptr, pool.nbytes) == 0
        modes.append(Mode(tag, store, pool, a.keys))
    # Rounds alternate between the modes, so both see the same machine.
    for touch in (False, True):
        for mode in modes:
            mode.pool.array[:mode.nbytes] = mode.src
        for r in range(warmup + a.rounds):
            counted = r >= warmup
            line = []
            for mode in modes:
                put, get = mode.round(counted, touch)
                line.append(f"{mode.tag} put {put:.2f} get {get:.2f} GB/s")
            phase = "round" if counted else "warm-up"
            log(f"  {'touched' if touch else 'untouched'} pool, {phase} {r + 1}: " +
                ", ".join(line))
        for mode in modes:  # the untouched rounds moved the same bytes back and forth
            assert np.array_equal(mode.pool.array[:mode.nbytes], mode.src), "bytes read differ"
        warmup = 2
    for mode in modes:
        mode.store.close()
        mode.pool.free()
    storage.stop()
    for m in masters:
        m.stop()

    size = f"{a.keys} x {obj >> 10} KiB"
    print("| measurement | standalone | embedded (same run) | ratio |")
    print("|---|---|---|---|")
    for touch, what in ((False, "pool untouched between calls"),
                        (True, "pool rewritten by the CPU before each call")):
        e = [statistics.median(v) for v in modes[0].results[touch]]
        s = [statistics.median(v) for v in modes[1].results[touch]]
        for i, call in enumerate(("batch_put_from", "batch_get_into")):
            print(f"| {call} {size}, {what} | {s[i]:.2f} GB/s | {e[i]:.2f} GB/s | "
                  f"{s[i] / e[i]:.2f}x |")
    print(f"| setup_dummy connect (median of 5) | {statistics.median(connects):.2f} ms | | |")


if __name__ == "__main__":
    main()
