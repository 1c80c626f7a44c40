"""Drives SGLang's own Mooncake HiCache backend (sglang.srt.mem_cache.storage.mooncake_store.
mooncake_store.MooncakeStore) against our wheel. Run by test_sglang_backend.py in a fresh
interpreter, because it installs stand-ins for torch, triton and torchvision first (see
torch_stub.py): they cannot be installed here (no CPU build of torch on PyPI's default index;
the CUDA build needs several GB of NVIDIA libraries), and SGLang's storage path needs them only at
import time. Everything else SGLang imports is the real package from PyPI.

    python sglang_driver.py '{"master": "127.0.0.1:P", "metrics_port": M, "metadata": "..."}'
    python sglang_driver.py '{"master": ..., "client_server_address": "127.0.0.1:C",
                              "phase": "write"|"read"}'      # standalone_storage mode

Exits 0 after printing "SGLANG-DRIVER-OK <summary json>"; any failed check raises.
"""

import ctypes
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch_stub  # noqa: E402

STUBBED = ["torch", "triton", "torchvision"]
torch_stub.install(STUBBED)

import numpy as np  # noqa: E402

import harness  # noqa: E402
from mooncake.store import MooncakeDistributedStore  # noqa: E402
from sglang.srt.mem_cache.hicache_storage import HiCacheStorageConfig  # noqa: E402
from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory  # noqa: E402
from sglang.srt.mem_cache.storage.mooncake_store import mooncake_store  # noqa: E402


class FakeDtype:
    """What the pools read from a torch dtype."""

    def __init__(self, itemsize):
        self.itemsize = itemsize


class FakeTensor:
    """A numpy-backed stand-in for the host pool's torch tensor (what MooncakeStore reads)."""

    def __init__(self, shape, itemsize):
        self.array = np.zeros(int(np.prod(shape)) * itemsize, dtype=np.uint8)
        self.shape = shape
        self.itemsize = itemsize

    def data_ptr(self):
        return self.array.ctypes.data

    def numel(self):
        return int(np.prod(self.shape))

    def element_size(self):
        return self.itemsize


class MockMHAPageFirstPool:
    """SGLang's MHATokenToKVPoolHost with layout page_first, minus torch: kv_buffer is
    (2, size, layer_num, head_num, head_dim); a page's K (or V) is one contiguous object."""

    layout = "page_first"

    def __init__(self, pages, page_size=16, layer_num=4, head_num=2, head_dim=64, itemsize=2):
        self.page_size, self.layer_num = page_size, layer_num
        self.head_num, self.head_dim = head_num, head_dim
        self.size = pages * page_size
        self.dtype = FakeDtype(itemsize)
        self.kv_buffer = FakeTensor((2, self.size, layer_num, head_num, head_dim), itemsize)

    def get_size_per_token(self):
        return self.head_num * self.head_dim * self.layer_num * self.dtype.itemsize * 2

    def get_ksize_per_token(self):
        return self.get_size_per_token() // 2

    def object_bytes(self):
        return self.layer_num * self.dtype.itemsize * self.page_size * self.head_num * self.head_dim

    def get_page_buffer_meta(self, indices):
        assert len(indices) % self.page_size == 0
        token = self.layer_num * self.head_num * self.head_dim * self.dtype.itemsize
        v_offset = self.size * token
        base = self.kv_buffer.data_ptr()
        ptrs = []
        for i in range(0, len(indices), self.page_size):
            k = base + int(indices[i]) * token
            ptrs += [k, k + v_offset]
        return ptrs, [self.object_bytes()] * len(ptrs)


class MockMLAPageFirstPool(MockMHAPageFirstPool):
    """SGLang's MLATokenToKVPoolHost, page_first: one object per page (kv_lora_rank + rope)."""

    def __init__(self, pages, page_size=16, layer_num=4, kv_dim=576, itemsize=2):
        self.page_size, self.layer_num = page_size, layer_num
        self.head_num, self.head_dim = 1, kv_dim
        self.size = pages * page_size
        self.dtype = FakeDtype(itemsize)
        self.kv_buffer = FakeTensor((self.size, layer_num, 1, kv_dim), itemsize)

    def get_ksize_per_token(self):
        return self.head_dim * self.layer_num * self.dtype.itemsize

    def get_page_buffer_meta(self, indices):
        assert len(indices) % self.page_size == 0
        token = self.layer_num * self.head_dim * self.dtype.itemsize
        base = self.kv_buffer.data_ptr()
        ptrs = [base + int(indices[i]) * token for i in range(0, len(indices), self.page_size)]
        return ptrs, [self.object_bytes()] * len(ptrs)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def storage_config(rank, tp_size, mla, extra_config, model_name):
    return HiCacheStorageConfig(
        tp_rank=rank, tp_size=tp_size, pp_rank=0, pp_size=1, attn_cp_rank=0, attn_cp_size=1,
        is_mla_model=mla, enable_storage_metrics=False, is_page_first_layout=True,
        model_name=model_name, extra_config=extra_config)


def roundtrip(backend, pool, keys, seed):
    """batch_set_v1 / batch_exists / batch_get_v1 of `keys` through SGLang's code, with bytes
    compared. Returns the bytes written."""
    pages = len(keys)
    indices = np.arange(pages * pool.page_size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, pool.kv_buffer.array.size, dtype=np.uint8)
    pool.kv_buffer.array[:] = data
    check(backend.batch_exists(keys) == 0, "fresh keys reported as existing")
    check(backend.batch_set_v1(keys, indices) == [True] * pages, "batch_set_v1 failed")
    check(backend.batch_exists(keys) == pages, "batch_exists after set")
    check(backend.batch_exists(keys + [k + "-absent" for k in keys[:4]]) == pages,
          "batch_exists prefix")
    # Writing again finds every key present (SGLang then skips the put): still success.
    check(backend.batch_set_v1(keys, indices) == [True] * pages, "second batch_set_v1")
    pool.kv_buffer.array[:] = 0
    check(backend.batch_get_v1(keys, indices) == [True] * pages, "batch_get_v1 failed")
    check(np.array_equal(pool.kv_buffer.array, data), "bytes read differ from bytes written")
    # A partial read: only the first half of the pages, into a cleared pool.
    pool.kv_buffer.array[:] = 0
    half = pages // 2
    check(backend.batch_get_v1(keys[:half], indices[:half * pool.page_size]) == [True] * half,
          "partial batch_get_v1")
    n = half * pool.page_size
    if pool.kv_buffer.shape[0] == 2:  # MHA: K run then V run
        token = pool.get_ksize_per_token()
        k_end, v_start = n * token, pool.size * token
        check(np.array_equal(pool.kv_buffer.array[:k_end], data[:k_end]), "partial K bytes")
        check(np.array_equal(pool.kv_buffer.array[v_start:v_start + k_end],
                             data[v_start:v_start + k_end]), "partial V bytes")
    else:
        end = n * pool.get_ksize_per_token()
        check(np.array_equal(pool.kv_buffer.array[:end], data[:end]), "partial MLA bytes")
    return data


def standalone(args, summary):
    """SGLang's standalone_storage mode: the pool comes from MooncakeHostTensorAllocator (SGLang
    requires it) and the store is setup_dummy to the mooncake_client at client_server_address.
    Phase "write" stores 64 pages and exits; phase "read", in a new process, reads them back."""
    pool = MockMHAPageFirstPool(pages=64)
    allocator = mooncake_store.MooncakeHostTensorAllocator()
    # MooncakeHostTensorAllocator.allocate wraps the memory with torch.frombuffer, which the stub
    # lacks: take the same allocator's memory and wrap it with numpy instead.
    size = pool.kv_buffer.array.size
    ptr = allocator.allocator.alloc(size)
    check(ptr != 0, "MooncakeHostMemAllocator.alloc")
    pool.kv_buffer.array = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(ptr))
    pool.allocator = allocator
    extra = {
        "standalone_storage": True,
        "client_server_address": args["client_server_address"],
        "master_server_address": args["master"],
        "protocol": "tcp",
        "local_hostname": harness.HOST,
        "check_server": False,
    }
    backend = StorageBackendFactory.create_backend(
        "mooncake", storage_config(0, 1, False, extra, None), pool)
    backend.register_mem_pool_host(pool)
    hashes = harness.page_hashes(64, seed="sglang-standalone")
    indices = np.arange(64 * pool.page_size, dtype=np.int64)
    data = np.random.default_rng(11).integers(0, 256, size, dtype=np.uint8)
    if args["phase"] == "write":
        pool.kv_buffer.array[:] = data
        check(backend.batch_exists(hashes) == 0, "fresh pages reported as existing")
        check(backend.batch_set_v1(hashes, indices) == [True] * 64, "batch_set_v1")
        check(backend.batch_exists(hashes) == 64, "batch_exists after set")
    else:
        check(backend.batch_exists(hashes) == 64, "pages kept across the SGLang restart")
        check(backend.batch_get_v1(hashes, indices) == [True] * 64, "batch_get_v1")
        check(np.array_equal(pool.kv_buffer.array, data), "bytes read differ from bytes written")
    summary["standalone_" + args["phase"]] = "ok"
    print("SGLANG-DRIVER-OK " + json.dumps(summary), flush=True)
    return 0


def main():
    args = json.loads(sys.argv[1])
    for var in list(os.environ):
        if var.startswith("MOONCAKE_") or var == "LOCAL_HOSTNAME":
            del os.environ[var]
    summary = {"stubbed": STUBBED}
    if "client_server_address" in args:
        return standalone(args, summary)

    # A storage node already holding a segment, so SGLang's check_server probe
    # (GET http://<master>:<metrics_port>/get_all_segments) sees a mounted segment.
    node = MooncakeDistributedStore()
    check(harness.setup_store(node, args["master"], metadata=args["metadata"],
                              segment=128 << 20) == 0, "storage node setup")

    # 1. MHA, TP=2, configured through --hicache-storage-backend-extra-config, built by SGLang's
    #    StorageBackendFactory like the HiCache controller does; keys get the model prefix.
    extra = {
        "master_server_address": args["master"],
        "metadata_server": args["metadata"],
        "global_segment_size": 256 << 20,
        "protocol": "tcp",
        "device_name": "",
        "local_hostname": harness.HOST,
        "master_metrics_port": args["metrics_port"],
        "check_server": True,
        "extra_backend_tag": "test",
    }
    hashes = harness.page_hashes(128, seed="sglang-mha")
    alive = []  # ranks live as long as the process (a closed store unmounts its segment)
    for rank in range(2):
        pool = MockMHAPageFirstPool(pages=128)
        config = storage_config(rank, 2, False, extra, "Qwen/Qwen3-8B")
        backend = StorageBackendFactory.create_backend("mooncake", config, pool)
        backend.register_mem_pool_host(pool)
        alive.append(backend)
        check(backend.config_prefix == "test_Qwen-Qwen3-8B", backend.config_prefix)
        roundtrip(backend, pool, hashes, seed=rank)
        # The objects are SGLang's MHA keys with the prefix and this rank.
        raw = backend.store
        check(raw.is_exist(f"test_Qwen-Qwen3-8B_{hashes[0]}_{rank}_k") == 1, "MHA key layout")
        check(raw.is_exist(f"test_Qwen-Qwen3-8B_{hashes[0]}_{rank}_v") == 1, "MHA key layout")
        check(raw.get_size(f"test_Qwen-Qwen3-8B_{hashes[0]}_{rank}_k") == pool.object_bytes(),
              "MHA object size")
        summary[f"mha_rank{rank}"] = "ok"

    # 2. MLA, TP=2, configured through MOONCAKE_* environment variables (SGLang's env path).
    os.environ.update({
        "MOONCAKE_MASTER": args["master"],
        "MOONCAKE_TE_META_DATA_SERVER": args["metadata"],
        "MOONCAKE_GLOBAL_SEGMENT_SIZE": str(256 << 20),
        "MOONCAKE_PROTOCOL": "tcp",
        "MOONCAKE_DEVICE": "",
        "MOONCAKE_LOCAL_HOSTNAME": harness.HOST,
    })
    hashes = harness.page_hashes(64, seed="sglang-mla")
    backends = []
    for rank in range(2):
        pool = MockMLAPageFirstPool(pages=64)
        backend = mooncake_store.MooncakeStore(storage_config(rank, 2, True, None, None), pool)
        backend.register_mem_pool_host(pool)
        backends.append((backend, pool))
    written = roundtrip(backends[0][0], backends[0][1], hashes, seed=7)
    # Rank 1 shares MLA objects: it finds rank 0's pages and reads the same bytes.
    b1, pool1 = backends[1]
    check(b1.batch_exists(hashes) == 64, "MLA rank 1 sees rank 0's pages")
    check(b1.batch_get_v1(hashes, np.arange(64 * pool1.page_size)) == [True] * 64, "MLA get")
    check(np.array_equal(pool1.kv_buffer.array, written), "MLA bytes")
    check(b1.store.is_exist(f"{hashes[0]}__k") == 1, "MLA key layout {hash}__k")
    summary["mla"] = "ok"

    # 3. clear() is remove_all(): objects nobody has read since they were written go at once.
    fresh = harness.page_hashes(8, seed="sglang-clear")
    b0, pool0 = backends[0]
    check(b0.batch_set_v1(fresh, np.arange(8 * pool0.page_size)) == [True] * 8, "set for clear")
    b0.clear()
    check(b0.batch_exists(fresh) == 0, "clear() removed unread objects")
    summary["clear"] = "ok"

    print("SGLANG-DRIVER-OK " + json.dumps(summary), flush=True)
    node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
