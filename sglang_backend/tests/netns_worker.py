"""One storage host of the namespace cluster (netns_cluster.py): a MooncakeDistributedStore from
the wheel that contributes a 64 MiB segment and runs a HiCache-shaped workload against the cluster.

    python netns_worker.py '{"mode": "work"|"check", "master": "10.80.0.1:50051", "metadata": URL,
                             "host": "10.80.0.2", "run": "seed", "until": EPOCH, "log": PATH, ...}'

Keys are SGLang's MHA keys of chained page hashes. A conversation c is a chain of page hashes;
a request takes its first n pages, asks which exist (batch_is_exist), reads the existing prefix
(batch_get_into) and puts the missing rest (batch_put_from), like a prefill with the L3 cache.
Workers share conversations, so they read each other's pages. An object's bytes are a function of
its key alone, so every read is checked byte for byte wherever the object came from.

With "sabotage", about 1 put in 20 stores one wrong byte: the checker must then report it.

"work" appends one JSON line per request to `log` (times, codes, and any wrong bytes), then a
"done" line, and keeps serving its segment until its stdin closes; "check"
reads every key of every conversation once and prints one JSON line with what it found.
"""

import hashlib
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import harness  # noqa: E402
from mooncake.store import MooncakeDistributedStore, ReplicateConfig  # noqa: E402

CONVERSATIONS = 40
MAX_PAGES = 24
PAGE_BYTES = 16 << 10


def conversation_keys(run, c):
    """The 2 * MAX_PAGES keys of conversation c (K and V per page), in page order."""
    return harness.mha_keys(harness.page_hashes(MAX_PAGES, seed=f"{run}/conv{c}"), 0)


def object_bytes(key):
    """The one right content of `key`."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).integers(0, 256, PAGE_BYTES, dtype=np.uint8)


class Host:
    def __init__(self, args):
        self.args = args
        self.store = MooncakeDistributedStore()
        rc = harness.setup_store(self.store, args["master"], metadata=args["metadata"],
                                 segment=args.get("segment", 64 << 20), local_buffer=16 << 20,
                                 hostname=args["host"])
        if rc != 0:
            raise SystemExit(f"setup failed: {rc}")
        self.pool = harness.PageFirstPool(MAX_PAGES, PAGE_BYTES)
        assert self.store.register_buffer(self.pool.ptr, self.pool.nbytes) == 0
        self.keys = [conversation_keys(args["run"], c) for c in range(CONVERSATIONS)]
        # Objects go to this host's segment while it is mounted (there is room for all of
        # them), so the checker knows which host's death may take them.
        self.config = ReplicateConfig()
        self.config.preferred_segment = self.store.get_hostname()
        self.expected = {}
        self.rng = random.Random(f"{args['run']}/{args['host']}/{os.getpid()}")

    def expect(self, key):
        if key not in self.expected:
            self.expected[key] = object_bytes(key)
        return self.expected[key]

    def view(self, i):
        """Pool object i in key order (page i // 2, K then V)."""
        return self.pool.object_view(i % 2, i // 2)

    def request(self, c, pages):
        keys = self.keys[c][:2 * pages]
        rec = {"c": c, "n": pages, "t0": time.time()}
        exist = self.store.batch_is_exist(keys)
        prefix = harness.exists_prefix(exist, 2)
        rec["prefix"] = prefix
        bad = []
        if prefix:
            self.pool.clear()
            ptrs, sizes = self.pool.buffers(range(prefix))
            got = self.store.batch_get_into(keys[:2 * prefix], ptrs, sizes)
            rec["got"] = got
            for i, rc in enumerate(got):
                if rc == PAGE_BYTES and not np.array_equal(self.view(i), self.expect(keys[i])):
                    bad.append(keys[i])
                elif rc >= 0 and rc != PAGE_BYTES:
                    bad.append(keys[i])  # a wrong length is wrong bytes too
            # Read failures cut the usable prefix, as SGLang would.
            ok = 0
            while ok < len(got) and got[ok] == PAGE_BYTES:
                ok += 1
            prefix = ok // 2
        if prefix < pages:
            for p in range(prefix, pages):
                for kind in range(2):
                    self.pool.object_view(kind, p)[:] = self.expect(keys[2 * p + kind])
            if self.args.get("sabotage") and self.rng.random() < 0.05:
                self.pool.object_view(0, prefix)[7] ^= 0x5A  # a wrong byte, for the checker
            ptrs, sizes = self.pool.buffers(range(prefix, pages))
            put_keys = keys[2 * prefix:2 * pages]
            rec["put_first"] = 2 * prefix
            rec["put"] = self.store.batch_put_from(put_keys, ptrs, sizes, self.config)
        rec["t1"] = time.time()
        if bad:
            rec["bad"] = bad
        return rec

    def work(self):
        rng = self.rng
        with open(self.args["log"], "a", buffering=1) as log:
            log.write(json.dumps({"start": time.time(), "pid": os.getpid(),
                                  "segment": self.store.get_hostname()}) + "\n")
            while time.time() < self.args["until"]:
                c = rng.randrange(CONVERSATIONS)
                rec = self.request(c, rng.randint(1, MAX_PAGES))
                log.write(json.dumps(rec) + "\n")
                time.sleep(rng.uniform(0.005, 0.03))
            log.write(json.dumps({"done": time.time()}) + "\n")
        # The segment stays up (its objects readable) until the driver has run the final check
        # and closes our stdin.
        sys.stdin.read()

    def check(self):
        """Every key once: exists, then a read of the ones that exist, checked byte for byte."""
        out = []
        for c in range(CONVERSATIONS):
            keys = self.keys[c]
            exist = self.store.batch_is_exist(keys)
            self.pool.clear()
            ptrs, sizes = self.pool.buffers(range(MAX_PAGES))
            got = self.store.batch_get_into(keys, ptrs, sizes)
            for i, key in enumerate(keys):
                match = got[i] == PAGE_BYTES and np.array_equal(self.view(i), self.expect(key))
                out.append({"c": c, "i": i, "exist": exist[i], "got": got[i], "match": match})
        print(json.dumps({"keys": out}), flush=True)


def main():
    args = json.loads(sys.argv[1])
    host = Host(args)
    print("READY", flush=True)
    if args["mode"] == "work":
        host.work()
    else:
        host.check()
    host.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
