"""ha_bench: the cost of --enable_ha on the hot path, and failover times, in one run.

Setups, each with its own processes and the installed `mooncake` wheel as the client:
  single  one mooncake_master, the client on its host:port
  ha      a 3-member etcd cluster and two `mooncake_master --enable_ha`, the client on etcd://
Measurements (same process, same order): put_from of 4 KiB (p50/p99 latency), batch_is_exist of
256 keys (p50), batch_put_from of 128 x 256 KiB (GB/s). Then --failovers times: kill -9 of the
leader under a put loop, time to the first acknowledged put through the new leader.
"""

import argparse
import os
import signal
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "sglang_backend", "tests"))
import harness  # noqa: E402
import test_ha  # noqa: E402
from mooncake.store import MooncakeDistributedStore  # noqa: E402


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def measure(store, tag, args):
    buf = np.random.default_rng(1).integers(0, 256, 128 * (256 << 10), dtype=np.uint8)
    ptr = buf.ctypes.data
    assert store.register_buffer(ptr, buf.nbytes) == 0
    out = {}
    lat = []
    for i in range(args.puts):
        t = time.perf_counter()
        assert store.put_from(f"{tag}-s-{i}", ptr, 4096) == 0
        lat.append(time.perf_counter() - t)
    lat.sort()
    out["put_from_4k_p50_us"] = lat[len(lat) // 2] * 1e6
    out["put_from_4k_p99_us"] = lat[int(len(lat) * 0.99)] * 1e6
    keys = [f"{tag}-s-{i}" for i in range(256)]
    lat = []
    for _ in range(args.exists):
        t = time.perf_counter()
        r = store.batch_is_exist(keys)
        lat.append(time.perf_counter() - t)
        assert r == [1] * 256
    lat.sort()
    out["batch_is_exist_256_p50_us"] = lat[len(lat) // 2] * 1e6
    size = 256 << 10
    ptrs = [ptr + i * size for i in range(128)]
    total, elapsed = 0, 0.0
    for b in range(args.batches):
        keys = [f"{tag}-b{b}-{i}" for i in range(128)]
        t = time.perf_counter()
        r = store.batch_put_from(keys, ptrs, [size] * 128)
        elapsed += time.perf_counter() - t
        assert r == [0] * 128, r[:4]
        total += 128 * size
    out["batch_put_from_128x256k_GBps"] = total / elapsed / 1e9
    store.unregister_buffer(ptr)
    return out


def new_store(master):
    store = MooncakeDistributedStore()
    assert harness.setup_store(store, master, segment=args.segment << 20) == 0
    return store


def run_single(args):
    master = harness.start_master()
    try:
        store = new_store(master.address)
        result = measure(store, "single", args)
        store.close()
        return result
    finally:
        master.stop()


def ha_cluster():
    etcd = test_ha.EtcdCluster()
    cluster_id = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    masters = [test_ha.HaMaster(etcd, cluster_id, "bench-a")]
    test_ha.wait_for(lambda: masters[0].role() == "leader", 20, "a leader")
    masters.append(test_ha.HaMaster(etcd, cluster_id, "bench-b"))
    test_ha.wait_for(lambda: test_ha.in_sync_standby(masters), 20, "a standby in sync")
    os.environ["MOONCAKE_CLUSTER_ID"] = cluster_id
    return etcd, masters


def stop_cluster(etcd, masters):
    for m in masters:
        if m.service.alive():
            os.kill(m.service.proc.pid, signal.SIGCONT)
        m.service.stop()
    etcd.stop()


def run_ha(args):
    etcd, masters = ha_cluster()
    try:
        store = new_store(f"etcd://{etcd.endpoints()}")
        result = measure(store, "ha", args)
        failovers = []
        for n in range(args.failovers):
            test_ha.wait_for(lambda: test_ha.in_sync_standby(masters), 30, "a standby in sync")
            writer = test_ha.Writer(store, f"fo{n}")
            writer.wait_acks(50)
            leader = test_ha.leader_of(masters)
            killed = time.monotonic()
            leader.service.proc.kill()
            leader.service.proc.wait()
            writer.wait_acks(20, timeout=30)
            writer.stop()
            failovers.append(test_ha.first_ack_started_after(writer, killed) - killed)
            lost = [k for k, v in writer.acked.items() if store.get(k) != v]
            assert not lost, f"{len(lost)} acknowledged objects lost"
            log(f"ha_bench: failover {n + 1}/{args.failovers}: {failovers[-1]:.2f} s, "
                f"{len(writer.acked)} acked puts all readable")
            leader.start()
        result["failover_s"] = failovers
        store.close()
        return result
    finally:
        stop_cluster(etcd, masters)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--puts", type=int, default=3000)
    p.add_argument("--exists", type=int, default=1000)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--segment", type=int, default=2048, help="MiB")
    p.add_argument("--failovers", type=int, default=5)
    args = p.parse_args()
    log("ha_bench: single master...")
    single = run_single(args)
    log("ha_bench: HA (3 etcd members, 2 masters)...")
    ha = run_ha(args)
    print("| measurement | single master | HA | HA / single |")
    print("|---|---|---|---|")
    for k in ("put_from_4k_p50_us", "put_from_4k_p99_us", "batch_is_exist_256_p50_us",
              "batch_put_from_128x256k_GBps"):
        print(f"| {k} | {single[k]:.1f} | {ha[k]:.1f} | {ha[k] / single[k]:.2f}x |")
    f = ha["failover_s"]
    if f:
        print(f"\nfailover (kill -9 of the leader -> first acknowledged put), {len(f)} runs: "
              f"median {statistics.median(f):.2f} s, max {max(f):.2f} s "
              f"(lease TTL {test_ha.LEASE_TTL} s)")
