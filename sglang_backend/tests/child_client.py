"""A second process for test_cross_process.py: writes or reads SGLang-shaped pages.

    python child_client.py '{"mode": "read"|"write", "master": ..., "metadata": ...,
                             "seed": N, "pages": N, "page_bytes": N, "rank": N, "tag": "..."}'

Prints one JSON line: {"put": [...]} or {"prefix": N, "got": [...], "match": bool}.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import harness  # noqa: E402
from mooncake.store import MooncakeDistributedStore  # noqa: E402


def main():
    args = json.loads(sys.argv[1])
    store = MooncakeDistributedStore()
    rc = harness.setup_store(store, args["master"], metadata=args["metadata"],
                             segment=args.get("segment", 0))
    if rc != 0:
        print(json.dumps({"setup": rc}))
        return 1
    pages = list(range(args["pages"]))
    keys = harness.mha_keys(harness.page_hashes(args["pages"], seed=args["tag"]), args["rank"])
    pool = harness.PageFirstPool(args["pages"], args["page_bytes"])
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
    print(json.dumps(result))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
