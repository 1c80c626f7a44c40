"""The installed wheel on a bare machine, with the standard library only (tools/foreign_root).

Starts mooncake_master, mooncake_http_metadata_server and mooncake_storage_node from the wheel's
console scripts (beside this interpreter), then:
  - a writer process puts objects of 1 KiB to 4 MiB with random bytes, and a second process
    (its own store client) reads each back over TCP and compares every byte;
  - objects go to the storage node's segment too (the writer's own segment is small);
  - protocol="rdma" fails setup with an error that names rdma-core where the host has none (the
    foreign roots), or says there is no RDMA device where it has rdma-core but no NIC; a TCP store
    in the same process still works.
Prints "FOREIGN-ROOT-OK <summary>" and exits 0, or raises.

    python foreign_root_check.py             (the driver)
    python foreign_root_check.py reader ...  (internal: the reading process)
"""

import ctypes
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from harness import HOST, free_port, http_get  # stdlib only, beside this script

BIN = os.path.dirname(sys.executable)
SIZES = [1 << 10, 4 << 10, 64 << 10, 1 << 20, 4 << 20]
PER_SIZE = 6


def wait(what, ready, proc, log, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}:\n{open(log).read()[-3000:]}")
        if ready():
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} not ready after {timeout} s:\n{open(log).read()[-3000:]}")


def start(work, name, argv):
    log = os.path.join(work, name + ".log")
    proc = subprocess.Popen([os.path.join(BIN, argv[0])] + argv[1:], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    return proc, log


def payload(key, size):
    """Deterministic bytes for `key` (both processes compute them)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{key}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def setup(store, master, metadata, segment, protocol="tcp", device=""):
    return store.setup(HOST, metadata, segment, 16 << 20, protocol, device, master)


def reader(master, metadata, keys):
    from mooncake.store import MooncakeDistributedStore
    store = MooncakeDistributedStore()
    assert setup(store, master, metadata, 16 << 20) == 0, "reader setup failed"
    for key, size in keys:
        got = store.get(key)
        assert len(got) == size, f"{key}: got {len(got)} bytes, expected {size}"
        assert got == payload(key, size), f"{key}: bytes differ"
        assert store.is_exist(key) == 1, key
    store.close()
    print("READER-OK", len(keys))


def has_rdma_core():
    try:
        ctypes.CDLL("libibverbs.so.1")
        return True
    except OSError:
        return False


def rdma_without_rdma_core(master, metadata):
    """setup(protocol="rdma") in a fresh process: its exit code and everything it printed."""
    code = (
        "import sys\n"
        "from mooncake.store import MooncakeDistributedStore\n"
        "s = MooncakeDistributedStore()\n"
        f"rc = s.setup({HOST!r}, {metadata!r}, 16 << 20, 16 << 20, 'rdma', 'erdma_0', {master!r})\n"
        "print('RDMA-SETUP', rc, flush=True)\n"
        "t = MooncakeDistributedStore()\n"
        f"ok = t.setup({HOST!r}, {metadata!r}, 16 << 20, 16 << 20, 'tcp', '', {master!r})\n"
        "assert ok == 0 and t.put('after-rdma', b'x' * 100) == 0 and t.get('after-rdma') == b'x' * 100\n"
        "print('TCP-AFTER-RDMA ok', flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def main():
    from mooncake.store import MooncakeDistributedStore
    work = tempfile.mkdtemp(prefix="foreign_root_check_")
    port, metrics, meta_port = free_port(), free_port(), free_port()
    master = f"{HOST}:{port}"
    metadata = f"http://{HOST}:{meta_port}/metadata"
    procs = []
    try:
        m, mlog = start(work, "master", ["mooncake_master", f"--port={port}",
                                         f"--metrics_port={metrics}", f"--bind_address={HOST}"])
        procs.append(m)
        def master_ready():
            if http_get(f"http://{HOST}:{metrics}/health")[0] != 200:
                return False
            with socket.socket() as s:
                return s.connect_ex((HOST, port)) == 0
        wait("mooncake_master", master_ready, m, mlog)
        h, hlog = start(work, "metadata", ["mooncake_http_metadata_server", "--host", HOST,
                                           "--port", str(meta_port)])
        procs.append(h)
        wait("mooncake_http_metadata_server",
             lambda: http_get(f"http://{HOST}:{meta_port}/health")[0] == 200, h, hlog)
        n, nlog = start(work, "storage", ["mooncake_storage_node", f"--master={master}",
                                          f"--metadata={metadata}", "--segment_size=256mb"])
        procs.append(n)

        def one_segment():
            status, body = http_get(f"http://{HOST}:{metrics}/get_all_segments")
            return status == 200 and body.strip() != b""
        wait("mooncake_storage_node", one_segment, n, nlog)

        store = MooncakeDistributedStore()
        assert setup(store, master, metadata, 16 << 20) == 0, "writer setup failed"
        keys = []
        for size in SIZES:
            for i in range(PER_SIZE):
                key = f"foreign-{size}-{i}"
                rc = store.put(key, payload(key, size))
                assert rc == 0, f"put {key} ({size} bytes) returned {rc}"
                keys.append((key, size))
        total = sum(size for _, size in keys)
        assert store.get("foreign-no-such-key") == b""
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "reader", master, metadata,
                            json.dumps(keys)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "READER-OK" in r.stdout, r.stdout + r.stderr
        rc, out = rdma_without_rdma_core(master, metadata)
        assert rc == 0 and "TCP-AFTER-RDMA ok" in out, out
        rdma_rc = int(out.split("RDMA-SETUP", 1)[1].split()[0])
        assert rdma_rc != 0, out
        if has_rdma_core():
            # The host's own libibverbs loaded: the error is about devices, not the library.
            assert "no RDMA device" in out, out
            rdma_line = next(line for line in out.splitlines() if "no RDMA device" in line)
        else:
            assert "rdma-core" in out and "libibverbs.so.1" in out, out
            rdma_line = next(line for line in out.splitlines() if "rdma-core" in line)
        store.close()
        summary = {"objects": len(keys), "bytes": total, "rdma_setup": rdma_rc,
                   "rdma_error": rdma_line.strip()[:300], "rdma_core": has_rdma_core(),
                   "python": sys.version.split()[0]}
        print("FOREIGN-ROOT-OK", json.dumps(summary), flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "reader":
        reader(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
    else:
        main()
