"""A second process for test_cross_process.py and test_standalone.py: writes or reads
SGLang-shaped pages.

    python child_client.py '{"mode": "read"|"write", "master": ..., "metadata": ...,
                             "seed": N, "pages": N, "page_bytes": N, "rank": N, "tag": "..."}'

With "client_server_address" instead of "master" it runs in standalone mode, as SGLang does:
setup_dummy to that mooncake_client, and a pool from MooncakeHostMemAllocator ("setup_ms" in the
output is how long setup_dummy took).

Prints one JSON line: {"put": [...]} or {"prefix": N, "got": [...], "match": bool}.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import harness  # noqa: E402
from mooncake.store import MooncakeDistributedStore, MooncakeHostMemAllocator  # noqa: E402


def main():
    args = json.loads(sys.argv[1])
    store = MooncakeDistributedStore()
    standalone = "client_server_address" in args
    start = time.monotonic()
    if standalone:
        rc = store.setup_dummy(args["pages"] * 2 * args["page_bytes"], 16 << 20,
                               args["client_server_address"])
    else:
        rc = harness.setup_store(store, args["master"], metadata=args["metadata"],
                                 segment=args.get("segment", 0))
    setup_ms = (time.monotonic() - start) * 1000
    if rc != 0:
        print(json.dumps({"setup": rc}))
        return 1
    pages = list(range(args["pages"]))
    keys = harness.mha_keys(harness.page_hashes(args["pages"], seed=args["tag"]), args["rank"])
    pool = harness.PageFirstPool(args["pages"], args["page_bytes"],
                                 allocator=MooncakeHostMemAllocator() if standalone else None)
    assert store.register_buffer(pool.ptr, pool.nbytes) == 0
    if args["mode"] == "write":
        pool.fill(pages, args["seed"])
        result = {"put": store.batch_put_from(keys, *pool.buffers(pages))}
    else:
        prefix = harness.exists_prefix(store.batch_is_exist(keys), 2)
        got = store.batch_get_into(keys[:2 * prefix], *pool.buffers(pages[:prefix]))
        match = all(
            np.array_equal(pool.object_view(kind, p),
                           harness.expected_object(args["seed"], p, kind, args["page_bytes"]))
            for p in pages[:prefix] for kind in range(2))
        result = {"prefix": prefix, "got": got, "match": match}
    if standalone:
        result["setup_ms"] = setup_ms
    print(json.dumps(result))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
