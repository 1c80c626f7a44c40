#!/usr/bin/env python3
"""store_bench: the store through the `mooncake.store` Python API, ours beside Mooncake and redis.

Runs the same measurements, in the same run, over two wheels that expose the same API:
  ours      the `mooncake` wheel built from this repository (//sglang_backend:wheel)
  mooncake  the public `mooncake-transfer-engine-non-cuda` wheel from PyPI (baseline only)
and a Debian redis-server (SET/GET of the same object sizes with 4 clients, via redis-benchmark).

Setups: "same" (the client's own segment holds the data), "other" (a storage process on this host,
the client a pure client), "tcp" (the same two processes, forced onto TCP: MC_DISABLE_SHM=1 for ours;
Mooncake's client always uses TCP here). Each wheel runs in its own venv, because both are
`import mooncake`.

Usage: tools/store_bench [--quick] [--sizes 256kb,4mb] [--seconds 1.5] [--before OLD.whl]
(--before: another wheel of ours, e.g. built at an older commit, measured in the same run)
Prints progress on stderr and a markdown table on stdout.
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

KEYS_PER_BATCH = 128
EXIST_KEYS = 256
SEGMENT = 3 << 30


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def parse_size(text):
    m = re.fullmatch(r"(\d+)\s*([kmg]?)b?", text.strip().lower())
    if not m:
        raise ValueError(text)
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2)]


# ---------------------------------------------------------------------------------------------
# Roles that run inside a wheel's venv.


def new_store(master, segment):
    from mooncake.store import MooncakeDistributedStore  # the wheel under test

    store = MooncakeDistributedStore()
    rc = store.setup("127.0.0.1", "P2PHANDSHAKE", segment, 64 << 20, "tcp", "", master)
    if rc != 0:
        raise SystemExit(f"setup failed with {rc}")
    return store


def role_storage(args):
    store = new_store(args.master, SEGMENT)
    print("READY", flush=True)
    sys.stdin.read()  # until the orchestrator closes our stdin
    store.close()


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def role_client(args):
    import numpy as np

    store = new_store(args.master, SEGMENT if args.setup == "same" else 0)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    biggest = max(sizes)
    # One registered host pool: a put area and a get area of KEYS_PER_BATCH objects each.
    pool = np.empty(2 * KEYS_PER_BATCH * biggest + (2 << 20), dtype=np.uint8)
    pool[:] = np.arange(pool.size, dtype=np.uint64).astype(np.uint8)
    base = pool.ctypes.data
    if store.register_buffer(base, pool.nbytes) != 0:
        raise SystemExit("register_buffer failed")
    put_area, get_area = base, base + KEYS_PER_BATCH * biggest
    small = base + 2 * KEYS_PER_BATCH * biggest
    result = {}
    tag = f"{os.getpid()}"
    for size in sizes:
        ptrs = [put_area + i * size for i in range(KEYS_PER_BATCH)]
        gets = [get_area + i * size for i in range(KEYS_PER_BATCH)]
        lens = [size] * KEYS_PER_BATCH
        # Put: fresh keys each round; removal happens outside the timed region.
        elapsed, rounds = 0.0, 0
        while elapsed < args.seconds or rounds < 3:
            keys = [f"put_{tag}_{size}_{rounds}_{i}" for i in range(KEYS_PER_BATCH)]
            dt, rcs = timed(lambda: store.batch_put_from(keys, ptrs, lens))
            if any(rc != 0 for rc in rcs):
                raise SystemExit(f"batch_put_from failed: {sorted(set(rcs))}")
            elapsed += dt
            rounds += 1
            store.remove_all()
        result[f"put_{size}"] = rounds * KEYS_PER_BATCH * size / elapsed / 1e9
        # Get: the same keys again and again.
        keys = [f"get_{tag}_{size}_{i}" for i in range(KEYS_PER_BATCH)]
        rcs = store.batch_put_from(keys, ptrs, lens)
        if any(rc != 0 for rc in rcs):
            raise SystemExit(f"batch_put_from failed: {sorted(set(rcs))}")
        elapsed, rounds = 0.0, 0
        while elapsed < args.seconds or rounds < 3:
            dt, rcs = timed(lambda: store.batch_get_into(keys, gets, lens))
            if any(rc != size for rc in rcs):
                raise SystemExit(f"batch_get_into failed: {sorted(set(rcs))}")
            elapsed += dt
            rounds += 1
        if not np.array_equal(pool[: KEYS_PER_BATCH * size],
                              pool[KEYS_PER_BATCH * biggest: KEYS_PER_BATCH * biggest +
                                   KEYS_PER_BATCH * size]):
            raise SystemExit("bytes read back differ")
        result[f"get_{size}"] = rounds * KEYS_PER_BATCH * size / elapsed / 1e9
        store.remove_all()
    # batch_is_exist of 256 present keys, and 4 KiB put_from / get_into latency.
    keys = [f"exist_{tag}_{i:04d}_" + "a" * 56 for i in range(EXIST_KEYS)]
    store.batch_put_from(keys, [small] * EXIST_KEYS, [4096] * EXIST_KEYS)
    lat = [timed(lambda: store.batch_is_exist(keys))[0] for _ in range(300)]
    result["exist_us"] = statistics.median(lat) * 1e6
    put_lat, get_lat = [], []
    for i in range(300):
        key = f"small_{tag}_{i}"
        dt, rc = timed(lambda: store.put_from(key, small, 4096))
        if rc != 0:
            raise SystemExit(f"put_from failed: {rc}")
        put_lat.append(dt)
        dt, rc = timed(lambda: store.get_into(key, small + 4096, 4096))
        if rc != 4096:
            raise SystemExit(f"get_into failed: {rc}")
        get_lat.append(dt)
    result["put4k_us"] = statistics.median(put_lat) * 1e6
    result["get4k_us"] = statistics.median(get_lat) * 1e6
    store.remove_all()
    store.close()
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# Orchestrator.


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def run_setup(venv, wheel, setup, args):
    """Runs one (wheel, setup) pair with its own master and returns the client's result dict."""
    py = os.path.join(venv, "bin", "python")
    master_bin = os.path.join(venv, "bin", "mooncake_master")
    port, metrics = free_port(), free_port()
    work = tempfile.mkdtemp(prefix=f"store_bench_{wheel}_")
    procs = []
    env = dict(os.environ, MC_LOG_LEVEL="warning", GLOG_minloglevel="2")
    if setup == "tcp" and wheel in ("ours", "before"):
        env["MC_DISABLE_SHM"] = "1"
    try:
        with open(os.path.join(work, "master.log"), "w") as out:
            procs.append(subprocess.Popen([master_bin, f"--port={port}", f"--metrics_port={metrics}"],
                                          stdout=out, stderr=subprocess.STDOUT))
        if not wait_port(port):
            raise RuntimeError(f"{wheel} master did not start (see {work}/master.log)")
        master = f"127.0.0.1:{port}"
        me = os.path.abspath(__file__)
        if setup != "same":
            storage = subprocess.Popen([py, me, "--role=storage", f"--master={master}"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=open(os.path.join(work, "storage.log"), "w"),
                                       env=env, text=True)
            procs.append(storage)
            line = storage.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"{wheel} storage process failed (see {work}/storage.log)")
        client = subprocess.run([py, me, "--role=client", f"--master={master}", f"--setup={setup}",
                                 f"--sizes={args.sizes}", f"--seconds={args.seconds}"],
                                capture_output=True, text=True, env=env, timeout=600)
        for line in client.stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        raise RuntimeError(f"{wheel}/{setup} client failed: {client.stdout[-500:]}"
                           f"{client.stderr[-1500:]}")
    finally:
        for p in reversed(procs):
            if p.stdin:
                p.stdin.close()
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def redis_bench(sizes):
    """GB/s of SET and GET with 4 clients over loopback, per size, from redis-benchmark."""
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
                               "", "--appendonly", "no", "--protected-mode", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    try:
        wait_port(port)
        for size in sizes:
            n = max(200, int(4e9 / size))  # about 4 GB per test
            res = subprocess.run(["redis-benchmark", "-p", str(port), "-c", "4", "-n", str(n), "-d",
                                  str(size), "-t", "set,get", "-q"],
                                 capture_output=True, text=True, timeout=600).stdout
            for op in ("SET", "GET"):
                m = re.search(op + r": ([\d.]+) requests per second", res)
                out[f"{op.lower()}_{size}"] = float(m.group(1)) * size / 1e9 if m else 0.0
    finally:
        server.terminate()
        server.wait()
    return out


def ensure_venvs(args, repo):
    ours = "/tmp/mooncake-bench-ours"
    base = "/tmp/mooncake-bench-mooncake"
    log("store_bench: building our wheel...")
    subprocess.run(["bazel", "build", "//sglang_backend:wheel"], cwd=repo, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wheel = os.path.join(repo, "bazel-bin", "sglang_backend",
                         "mooncake_cpp-0.1.0-cp311-cp311-manylinux_2_35_x86_64.whl")
    if not os.path.exists(wheel):
        raise SystemExit(f"no wheel at {wheel}")
    for venv in (ours, base):
        if not os.path.exists(os.path.join(venv, "bin", "python")):
            # Debian's python3: its numpy is visible through --system-site-packages.
            subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv],
                           check=True)
    subprocess.run([os.path.join(ours, "bin", "pip"), "install", "-q", "--force-reinstall",
                    "--no-deps", wheel], check=True)
    if not os.path.exists(os.path.join(base, "bin", "mooncake_master")):
        log("store_bench: installing mooncake-transfer-engine-non-cuda from PyPI (baseline)...")
        subprocess.run([os.path.join(base, "bin", "pip"), "install", "-q",
                        "mooncake-transfer-engine-non-cuda"], check=True)
    before = None
    if args.before:
        # Another build of ours (e.g. from an older commit), measured in the same run.
        before = "/tmp/mooncake-bench-before"
        if not os.path.exists(os.path.join(before, "bin", "python")):
            subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", before],
                           check=True)
        subprocess.run([os.path.join(before, "bin", "pip"), "install", "-q", "--force-reinstall",
                        "--no-deps", args.before], check=True)
    return ours, base, before


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", default="orchestrate", choices=["orchestrate", "storage", "client"])
    parser.add_argument("--master")
    parser.add_argument("--setup", default="same", choices=["same", "other", "tcp"])
    parser.add_argument("--sizes", default="256kb,4mb")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--quick", action="store_true", help="shorter runs (0.3 s per number)")
    parser.add_argument("--setups", default="same,other,tcp")
    parser.add_argument("--before", help="another wheel of ours to compare with, in the same run")
    args = parser.parse_args()
    if args.role == "storage":
        return role_storage(args)
    if args.role == "client":
        return role_client(args)
    if args.quick:
        args.seconds = 0.3
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ours, base, before = ensure_venvs(args, repo)
    systems = [("ours", ours)] + ([("before", before)] if before else []) + [("mooncake", base)]
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    results = {}
    setups = args.setups.split(",")
    total = len(systems) * len(setups) + 1
    step = 0
    for setup in setups:
        for wheel, venv in systems:
            step += 1
            log(f"store_bench: [{step}/{total}] {wheel:8s} storage {setup} ...")
            results[(wheel, setup)] = run_setup(venv, wheel, setup, args)
    step += 1
    log(f"store_bench: [{step}/{total}] redis-server SET/GET, 4 clients ...")
    redis = redis_bench(sizes)

    def fmt_size(n):
        return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"

    print("| setup | metric | ours | Mooncake | redis | ours / Mooncake | ours / redis |")
    print("|---|---|---|---|---|---|---|")
    for setup in setups:
        o, m = results[("ours", setup)], results[("mooncake", setup)]
        for size in sizes:
            for op, rop in (("put", "set"), ("get", "get")):
                key = f"{op}_{size}"
                r = redis.get(f"{rop}_{size}", 0.0)
                print(f"| {setup} | batch_{op} {fmt_size(size)} GB/s | {o[key]:.2f} | {m[key]:.2f} | "
                      f"{r:.2f} | {o[key] / m[key]:.2f}x | {o[key] / r if r else 0:.2f}x |")
        for key, name in (("exist_us", "batch_is_exist 256 keys, us"),
                          ("put4k_us", "put_from 4 KiB, us"), ("get4k_us", "get_into 4 KiB, us")):
            print(f"| {setup} | {name} | {o[key]:.0f} | {m[key]:.0f} | | {o[key] / m[key]:.2f}x | |")
    if before:
        print()
        print("| setup | metric | ours | before | ours / before |")
        print("|---|---|---|---|---|")
        for setup in setups:
            o, b = results[("ours", setup)], results[("before", setup)]
            for size in sizes:
                for op in ("put", "get"):
                    key = f"{op}_{size}"
                    print(f"| {setup} | batch_{op} {fmt_size(size)} GB/s | {o[key]:.2f} | "
                          f"{b[key]:.2f} | {o[key] / b[key]:.2f}x |")
            for key, name in (("exist_us", "batch_is_exist 256 keys, us"),
                              ("put4k_us", "put_from 4 KiB, us"),
                              ("get4k_us", "get_into 4 KiB, us")):
                print(f"| {setup} | {name} | {o[key]:.0f} | {b[key]:.0f} | {o[key] / b[key]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
