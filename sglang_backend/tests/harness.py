"""Test harness: starts the wheel's real programs and builds SGLang-shaped data.

Processes come from the console scripts installed with the wheel next to this interpreter
(`mooncake_master`, `mooncake_http_metadata_server`), or from `python -m
mooncake.http_metadata_server`. Every process gets free loopback ports, is waited on until it
answers, and is killed by its own pid.
"""

import contextlib
import ctypes
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# numpy is imported where arrays are made, so stdlib-only scripts (foreign_root_check.py) can use
# the rest of this module on a bare machine.

# Error codes of the Python boundary (docs/compatibility.md section 4).
OK = 0
INTERNAL_ERROR = -1
NO_AVAILABLE_HANDLE = -200
INVALID_KEY = -400
INVALID_PARAMS = -600
OBJECT_NOT_FOUND = -704
OBJECT_HAS_LEASE = -706
RPC_FAIL = -900
RPC_TIMEOUT = -901
NOT_SUPPORTED = -1012

BIN_DIR = os.path.dirname(sys.executable)
HOST = "127.0.0.1"


def free_port():
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(url, timeout=2.0):
    """(status, body) of a GET; (None, error text) if the server cannot be reached."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return None, str(e)


class Service:
    """A started program: its pid, its log, and how to stop it."""

    def __init__(self, name, argv, ready, timeout=20.0, env=None, log_path=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path or tempfile.mktemp(prefix=f"mooncake-{name}-", suffix=".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stops the process (SIGTERM, then SIGKILL) and returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def start_master(port=None, metrics_port=None, client_ttl=None, lease_ttl_ms=None, extra=(),
                 env=None):
    """mooncake_master on loopback; .address is "127.0.0.1:port"."""
    port = port or free_port()
    metrics_port = metrics_port or free_port()
    argv = [os.path.join(BIN_DIR, "mooncake_master"), f"--port={port}",
            f"--metrics_port={metrics_port}", f"--bind_address={HOST}", *extra]
    if client_ttl is not None:
        argv.append(f"--client_ttl={client_ttl}")
    if lease_ttl_ms is not None:
        argv.append(f"--default_kv_lease_ttl={lease_ttl_ms}")

    def ready():
        if http_get(f"http://{HOST}:{metrics_port}/health", 0.5)[0] != 200:
            return False
        with contextlib.closing(socket.socket()) as s:
            return s.connect_ex((HOST, port)) == 0

    service = Service("master", argv, ready, env=env)
    service.port = port
    service.metrics_port = metrics_port
    service.address = f"{HOST}:{port}"
    return service


def start_metadata_server(port=None, as_module=False, env=None):
    """The HTTP metadata server, from the console script or `python -m`; .url ends in /metadata."""
    port = port or free_port()
    if as_module:
        argv = [sys.executable, "-m", "mooncake.http_metadata_server", "--host", HOST,
                "--port", str(port)]
    else:
        argv = [os.path.join(BIN_DIR, "mooncake_http_metadata_server"), "--host", HOST,
                "--port", str(port)]
    service = Service("metadata", argv,
                      lambda: http_get(f"http://{HOST}:{port}/health", 0.5)[0] == 200, env=env)
    service.port = port
    service.url = f"http://{HOST}:{port}/metadata"
    return service


def master_metric(master, name):
    """The value of mooncake_master_<name> (or <name>_total) on the master's /metrics page."""
    status, body = http_get(f"http://{HOST}:{master.metrics_port}/metrics")
    assert status == 200, body
    for line in body.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in (f"mooncake_master_{name}",
                                             f"mooncake_master_{name}_total"):
            return float(parts[1])
    raise KeyError(name)


def start_storage_node(master, segment="64mb", port=None, args=(), wrap=(), env=None):
    """mooncake_storage_node from the wheel (through `wrap`, e.g. an unshare command, if given);
    .hostname is its segment name."""
    port = port or free_port()
    argv = [*wrap, os.path.join(BIN_DIR, "mooncake_storage_node"), f"--master={master.address}",
            f"--host={HOST}:{port}", f"--segment_size={segment}", *args]
    log_path = tempfile.mktemp(prefix="mooncake-storage-", suffix=".log")

    def ready():
        with open(log_path, "rb") as f:
            return b"READY" in f.read()

    node = Service("storage", argv, ready, env=env, log_path=log_path)
    node.hostname = f"{HOST}:{port}"
    node.port = port
    return node


def start_mooncake_client(master, segment="64mb", port=None, args=()):
    """mooncake_client from the wheel: the storage process of standalone mode. .address is what
    setup_dummy takes ("127.0.0.1:port"); .hostname is its segment name."""
    port = port or free_port()
    argv = [os.path.join(BIN_DIR, "mooncake_client"), f"--master_server_address={master.address}",
            f"--host={HOST}", f"--port={port}", f"--global_segment_size={segment}", *args]
    log_path = tempfile.mktemp(prefix="mooncake-client-", suffix=".log")

    def ready():
        with open(log_path, "rb") as f:
            return b"READY" in f.read()

    client = Service("mooncake_client", argv, ready, log_path=log_path)
    with open(log_path, "rb") as f:
        line = next(l for l in f.read().decode().splitlines() if l.startswith("READY"))
    client.hostname = line.split()[1]
    client.port = port
    client.address = f"{HOST}:{port}"
    return client


def page_hashes(n, seed="prompt"):
    """n chained 64-hex SHA-256 page hashes, as SGLang's radix cache makes them."""
    out, prev = [], b""
    for i in range(n):
        prev = hashlib.sha256(prev + f"{seed}/{i}".encode()).hexdigest().encode()
        out.append(prev.decode())
    return out


def mha_keys(hashes, tp_rank):
    """SGLang's MHA object keys: K and V per page."""
    keys = []
    for h in hashes:
        keys += [f"{h}_{tp_rank}_k", f"{h}_{tp_rank}_v"]
    return keys


def mla_keys(hashes, legacy=False):
    """SGLang's MLA object keys: one per page ("{hash}__k" now, "{hash}_k" in 0.5.x)."""
    return [f"{h}_k" if legacy else f"{h}__k" for h in hashes]


class PageFirstPool:
    """A page_first host KV pool: K objects of every page, then V objects (MHA); K only (MLA).

    Object (kind, page) is `page_bytes` contiguous bytes, like SGLang's page_first layout where a
    page's K (or V) for all layers is one run. The memory is a numpy array, or comes from
    MooncakeHostMemAllocator when `allocator` is given (then only the touched pages are real).
    """

    def __init__(self, num_pages, page_bytes, mla=False, allocator=None, reserve_bytes=0):
        import numpy as np
        self.num_pages = num_pages
        self.page_bytes = page_bytes
        self.kinds = 1 if mla else 2
        self.nbytes = max(self.kinds * num_pages * page_bytes, reserve_bytes)
        self.allocator = allocator
        if allocator is not None:
            self.ptr = allocator.alloc(self.nbytes)
            assert self.ptr, "MooncakeHostMemAllocator.alloc returned 0"
            used = self.kinds * num_pages * page_bytes
            self.array = np.ctypeslib.as_array((ctypes.c_uint8 * used).from_address(self.ptr))
        else:
            self.array = np.zeros(self.nbytes, dtype=np.uint8)
            self.ptr = self.array.ctypes.data

    def free(self):
        if self.allocator is not None and self.ptr:
            self.array = None
            assert self.allocator.free(self.ptr) == 0
            self.ptr = 0

    def offset(self, kind, page):
        return (kind * self.num_pages + page) * self.page_bytes

    def object_view(self, kind, page):
        start = self.offset(kind, page)
        return self.array[start:start + self.page_bytes]

    def buffers(self, pages):
        """(ptrs, sizes) for the objects of `pages`, in key order (K, V per page for MHA)."""
        ptrs = []
        for p in pages:
            for kind in range(self.kinds):
                ptrs.append(self.ptr + self.offset(kind, p))
        return ptrs, [self.page_bytes] * len(ptrs)

    def fill(self, pages, seed):
        """Fills the objects of `pages` with bytes determined by `seed` and the page."""
        import numpy as np
        for p in pages:
            for kind in range(self.kinds):
                rng = np.random.default_rng([seed, p, kind])
                self.object_view(kind, p)[:] = rng.integers(0, 256, self.page_bytes,
                                                            dtype=np.uint8)

    def clear(self):
        self.array[:] = 0


def expected_object(seed, page, kind, size):
    """The bytes PageFirstPool.fill(…, seed) wrote for object (kind, page)."""
    import numpy as np
    return np.random.default_rng([seed, page, kind]).integers(0, 256, size, dtype=np.uint8)


def setup_store(store, master, metadata="P2PHANDSHAKE", segment=64 << 20,
                local_buffer=16 << 20, protocol="tcp", devices="", engine=None,
                hostname=HOST, **kwargs):
    """store.setup with SGLang's 7 positional arguments (8 when an engine is given)."""
    args = [hostname, metadata, segment, local_buffer, protocol, devices, master]
    if engine is not None:
        args.append(engine)
    return store.setup(*args, **kwargs)


def sglang_warmup(store):
    """SGLang's MooncakeStore.warmup(): put 4 KiB (up to 10 tries), then is_exist and get."""
    import uuid
    key = "sglang_mooncake_store_warmup_key" + uuid.uuid4().hex
    value = bytes(4 * 1024)
    for _ in range(10):
        if store.put(key, value) == 0:
            break
        time.sleep(1.0)
    else:
        raise AssertionError("warmup put failed 10 times")
    assert store.is_exist(key) == 1
    assert store.get(key) == value
    return key


def exists_prefix(results, objects_per_page):
    """SGLang's batch_exists: pages in the leading run of keys that exist."""
    for i, r in enumerate(results):
        if r != 1:
            return i // objects_per_page
    return len(results) // objects_per_page


def wait_stopped(pid, timeout=5.0):
    """Waits until every thread of `pid` is stopped (SIGSTOP is delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
