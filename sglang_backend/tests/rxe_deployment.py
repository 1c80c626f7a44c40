"""The seed's deployment on soft-RoCE: two qemu guests (tools/roce_vm), the installed wheel in each.

Guest 0 runs mooncake_master and the HTTP metadata server from the wheel's console scripts; both
guests run a MooncakeDistributedStore with a segment, configured the way SGLang's MooncakeStore
reads its environment (MOONCAKE_MASTER, MOONCAKE_TE_META_DATA_SERVER, MOONCAKE_PROTOCOL,
MOONCAKE_DEVICE, MOONCAKE_GLOBAL_SEGMENT_SIZE, MOONCAKE_LOCAL_BUFFER_SIZE). The workload is
SGLang's: MHA page_first K/V objects keyed by chained page hashes, a registered host pool,
batch_is_exist then batch_put_from / batch_get_into of 32-page batches. It runs once with the HTTP
metadata server and once with P2PHANDSHAKE. In each round every guest:
  1. writes its pages into its own segment (preferred_segment: a local copy, no network);
  2. reads the other guest's pages (RDMA READ from the other segment), every byte checked;
  3. writes more pages into the other guest's segment (RDMA WRITE), which the other guest reads
     back locally and checks.
The guests meet through marker keys in the store itself. At the end each guest proves that the
bytes moved over RDMA on both rails and not over TCP: the rxe devices' packet counters
(/sys/class/infiniband/erdma_*/ports/1/hw_counters) grew on erdma_0 and on erdma_1 by at least the
bytes moved / 4 KiB, while the kernel's TCP segment counters (/proc/net/snmp) grew by less than a
tenth of what TCP would need to carry them.

    ROCE_GUEST=0|1 python rxe_deployment.py    (inside tools/roce_vm; prints RXE-DEPLOYMENT-OK)
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from mooncake.store import MooncakeDistributedStore, ReplicateConfig  # noqa: E402

GUEST = int(os.environ["ROCE_GUEST"])
SERVICES = os.environ["ROCE_PEER0_IP0"]  # guest 0, rail 0
MASTER_PORT, METADATA_PORT = 50051, 8080
PAGES, PAGE_BYTES, BATCH = 32, 256 << 10, 16  # 32 pages x (K, V) x 256 KiB = 16 MiB per phase
RAILS = ("erdma_0", "erdma_1")
OTHER = 1 - GUEST


def log(msg):
    print(f"guest {GUEST}: {msg}", flush=True)


def rdma_counters():
    out = {}
    for dev in RAILS:
        for name in ("sent_pkts", "rcvd_pkts"):
            with open(f"/sys/class/infiniband/{dev}/ports/1/hw_counters/{name}") as f:
                out[(dev, name)] = int(f.read())
    return out


def tcp_segments():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    fields = dict(zip(rows[0][1:], rows[1][1:]))
    return int(fields["InSegs"]) + int(fields["OutSegs"])


def wait_for_port(host, port, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens at {host}:{port} after {timeout:.0f} s")


def setup_from_env(store):
    """What SGLang's MooncakeStore does with its environment, minus its defaults we do not need."""
    env = os.environ
    local = env["ROCE_IP0"]
    rc = harness.setup_store(store, env["MOONCAKE_MASTER"],
                             metadata=env["MOONCAKE_TE_META_DATA_SERVER"],
                             segment=env["MOONCAKE_GLOBAL_SEGMENT_SIZE"],
                             local_buffer=env["MOONCAKE_LOCAL_BUFFER_SIZE"],
                             protocol=env["MOONCAKE_PROTOCOL"], devices=env["MOONCAKE_DEVICE"],
                             hostname=local)
    assert rc == 0, f"setup returned {rc}"


def marker(round_name, guest, step):
    return f"rxe-deployment/{round_name}/guest{guest}/{step}"


def signal_step(store, round_name, step, value=b"1", segment=None):
    """Puts this guest's marker; into `segment` (the other guest's) once known, so that it
    outlives this guest's store closing."""
    config = ReplicateConfig()
    if segment is not None:
        config.preferred_segment = segment
    assert store.put(marker(round_name, GUEST, step), value, config) == 0


def wait_step(store, round_name, step, timeout=120.0):
    key = marker(round_name, OTHER, step)
    deadline = time.monotonic() + timeout
    while store.is_exist(key) != 1:
        if time.monotonic() > deadline:
            raise AssertionError(f"guest {OTHER} did not reach {step} in {timeout:.0f} s")
        time.sleep(0.05)
    return store.get(key)


def put_pages(store, pool, keys, seed, segment):
    """SGLang's backup loop: batch_is_exist, then batch_put_from of the missing pages."""
    config = ReplicateConfig()
    config.preferred_segment = segment
    for start in range(0, PAGES, BATCH):
        pages = range(start, start + BATCH)
        batch_keys = keys[2 * start:2 * (start + BATCH)]
        assert all(r == 0 for r in store.batch_is_exist(batch_keys)), "pages exist already"
        pool.fill(pages, seed)
        ptrs, sizes = pool.buffers(pages)
        results = store.batch_put_from(batch_keys, ptrs, sizes, config)
        assert all(r == 0 for r in results), f"batch_put_from: {results}"


def get_pages(store, pool, keys, seed):
    """SGLang's prefetch loop: batch_is_exist of the prefix, then batch_get_into; bytes checked."""
    pool.clear()
    for start in range(0, PAGES, BATCH):
        pages = range(start, start + BATCH)
        batch_keys = keys[2 * start:2 * (start + BATCH)]
        assert harness.exists_prefix(store.batch_is_exist(batch_keys), 2) == BATCH
        ptrs, sizes = pool.buffers(pages)
        results = store.batch_get_into(batch_keys, ptrs, sizes)
        assert all(r == PAGE_BYTES for r in results), f"batch_get_into: {results}"
    for page in range(PAGES):
        for kind in range(2):
            expected = harness.expected_object(seed, page, kind, PAGE_BYTES)
            if not (pool.object_view(kind, page) == expected).all():
                raise AssertionError(f"wrong bytes in page {page} kind {kind} (seed {seed})")


def run_round(round_name, metadata):
    os.environ["MOONCAKE_TE_META_DATA_SERVER"] = metadata
    store = MooncakeDistributedStore()
    setup_from_env(store)
    pool = harness.PageFirstPool(PAGES, PAGE_BYTES)
    assert store.register_buffer(pool.ptr, pool.nbytes) == 0
    me = store.get_hostname()
    signal_step(store, round_name, "up", me.encode())
    other = wait_step(store, round_name, "up").decode()

    def keys(owner, part):
        return harness.mha_keys(harness.page_hashes(PAGES, f"{round_name}/{owner}/{part}"), 0)

    before_rdma, before_tcp = rdma_counters(), tcp_segments()
    t0 = time.monotonic()
    put_pages(store, pool, keys(GUEST, "own"), 10 + GUEST, me)  # 1: into my own segment
    signal_step(store, round_name, "own-written", segment=other)
    wait_step(store, round_name, "own-written")
    get_pages(store, pool, keys(OTHER, "own"), 10 + OTHER)  # 2: RDMA READ from the other
    put_pages(store, pool, keys(GUEST, "remote"), 20 + GUEST, other)  # 3: RDMA WRITE into it
    signal_step(store, round_name, "remote-written", segment=other)
    wait_step(store, round_name, "remote-written")
    get_pages(store, pool, keys(OTHER, "remote"), 20 + OTHER)  # local: it landed in my segment
    seconds = time.monotonic() - t0
    after_rdma, after_tcp = rdma_counters(), tcp_segments()
    signal_step(store, round_name, "done", segment=other)
    wait_step(store, round_name, "done")  # the other guest has read everything in my segment

    moved = 2 * PAGES * 2 * PAGE_BYTES  # read from and written to the other guest
    delta = {k: after_rdma[k] - before_rdma[k] for k in after_rdma}
    rails = {dev: delta[(dev, "sent_pkts")] + delta[(dev, "rcvd_pkts")] for dev in RAILS}
    tcp = after_tcp - before_tcp
    log(f"{round_name}: {moved >> 20} MiB to and from guest {OTHER} in {seconds:.2f} s "
        f"({moved / seconds / 1e6:.1f} MB/s); rxe packets " +
        ", ".join(f"{dev} {rails[dev]}" for dev in RAILS) + f"; TCP segments {tcp}")
    for dev in RAILS:
        # Data packets are at most 4 KiB (the largest RoCE MTU), and each rail carries a share.
        assert rails[dev] * 4096 >= moved / 4, f"{dev} carried too little: {rails[dev]} packets"
    assert sum(rails.values()) * 4096 >= moved, f"rxe packets cannot hold {moved} bytes: {rails}"
    # A TCP segment carries at most one MSS (1448 bytes on these 1500-byte links).
    assert tcp * 1448 < moved / 10, f"{tcp} TCP segments: the data may have gone over TCP"
    assert store.unregister_buffer(pool.ptr) == 0
    store.close()


def main():
    os.environ.setdefault("MOONCAKE_MASTER", f"{SERVICES}:{MASTER_PORT}")
    os.environ.setdefault("MOONCAKE_GLOBAL_SEGMENT_SIZE", "128mb")
    os.environ.setdefault("MOONCAKE_LOCAL_BUFFER_SIZE", "16mb")
    log(f"MOONCAKE_PROTOCOL={os.environ['MOONCAKE_PROTOCOL']} "
        f"MOONCAKE_DEVICE={os.environ['MOONCAKE_DEVICE']}")
    services = []
    if GUEST == 0:
        harness.HOST = SERVICES
        services.append(harness.start_master(MASTER_PORT, 9003))
        services.append(harness.start_metadata_server(METADATA_PORT))
        log(f"mooncake_master at {SERVICES}:{MASTER_PORT}, metadata at {services[1].url}")
    else:
        wait_for_port(SERVICES, MASTER_PORT)
        wait_for_port(SERVICES, METADATA_PORT)
    closed = os.path.join(os.environ["ROCE_WORKDIR"], "rxe-deployment-guest1-closed")
    try:
        run_round("http", f"http://{SERVICES}:{METADATA_PORT}/metadata")
        run_round("p2p", "P2PHANDSHAKE")
        if GUEST == 1:
            open(closed, "w").close()  # the shared work directory: the services may stop now
        else:
            deadline = time.monotonic() + 60
            while not os.path.exists(closed) and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        for s in reversed(services):
            s.stop()
    print(f"RXE-DEPLOYMENT-OK guest {GUEST}", flush=True)


if __name__ == "__main__":
    main()
