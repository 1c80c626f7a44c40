"""High availability of the master with real processes (docs/ha.md).

A real 3-member etcd cluster on loopback (Debian's etcd-server), two `mooncake_master
--enable_ha` processes, and the wheel as the client with master address etcd://e1;e2;e3. A writer
keeps putting objects and records each acknowledged put; faults hit the leader (kill -9, SIGSTOP),
the etcd leader (SIGSTOP) and every master in turn (restart). After each, every acknowledged object
must read back through the new leader with its bytes.
"""

import json
import os
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import urllib.request

import pytest

import harness

# tools/foreign_root copies the host's etcd into a Debian root that has none.
ETCD = os.environ.get("MOONCAKE_TEST_ETCD", "/usr/bin/etcd")
LEASE_TTL = 2

pytestmark = pytest.mark.skipif(not os.access(ETCD, os.X_OK),
                                reason="etcd is not installed (Debian package etcd-server)")


class EtcdCluster:
    """Three etcd members on loopback."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mooncake-etcd-")
        self.client_ports = [harness.free_port() for _ in range(3)]
        peer_ports = [harness.free_port() for _ in range(3)]
        initial = ",".join(f"e{i}=http://{harness.HOST}:{p}" for i, p in enumerate(peer_ports))
        self.members = []
        for i in range(3):
            argv = [ETCD, f"--name=e{i}", f"--data-dir={self.dir}/e{i}",
                    f"--listen-client-urls=http://{harness.HOST}:{self.client_ports[i]}",
                    f"--advertise-client-urls=http://{harness.HOST}:{self.client_ports[i]}",
                    f"--listen-peer-urls=http://{harness.HOST}:{peer_ports[i]}",
                    f"--initial-advertise-peer-urls=http://{harness.HOST}:{peer_ports[i]}",
                    f"--initial-cluster={initial}", "--initial-cluster-state=new",
                    "--initial-cluster-token=mooncake-test"]
            # Members wait for each other; readiness is checked for the whole cluster below.
            self.members.append(harness.Service(f"etcd{i}", argv, lambda: True))
        deadline = time.monotonic() + 30
        while not all(self.healthy(i) for i in range(3)):
            assert time.monotonic() < deadline, self.members[0].log()
            time.sleep(0.1)

    def healthy(self, i):
        status, body = harness.http_get(f"http://{harness.HOST}:{self.client_ports[i]}/health")
        return status == 200 and b"true" in body

    def endpoints(self):
        return ";".join(f"{harness.HOST}:{p}" for p in self.client_ports)

    def leader_index(self):
        for i, port in enumerate(self.client_ports):
            try:
                req = urllib.request.Request(f"http://{harness.HOST}:{port}/v3/maintenance/status",
                                             data=b"{}", method="POST")
                with urllib.request.urlopen(req, timeout=1) as resp:
                    status = json.loads(resp.read())
                if status.get("leader") == status["header"]["member_id"]:
                    return i
            except OSError:
                continue
        raise AssertionError("no etcd leader")

    def stop(self):
        for m in self.members:
            if m.proc.poll() is None:
                os.kill(m.proc.pid, signal.SIGCONT)
            m.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class HaMaster:
    """One mooncake_master --enable_ha; restartable on the same ports."""

    def __init__(self, etcd, cluster_id, name):
        self.etcd, self.cluster_id, self.name = etcd, cluster_id, name
        self.port, self.metrics_port = harness.free_port(), harness.free_port()
        self.address = f"{harness.HOST}:{self.port}"
        self.service = None
        self.start()

    def start(self):
        argv = [os.path.join(harness.BIN_DIR, "mooncake_master"), f"--port={self.port}",
                f"--metrics_port={self.metrics_port}", f"--bind_address={harness.HOST}",
                "--enable_ha", f"--etcd_endpoints={self.etcd.endpoints()}",
                f"--cluster_id={self.cluster_id}", f"--ha_lease_ttl={LEASE_TTL}"]
        self.service = harness.Service(self.name, argv, lambda: self.role() is not None)

    def get(self, path):
        status, body = harness.http_get(f"http://{harness.HOST}:{self.metrics_port}{path}", 0.5)
        return body.decode().strip() if status == 200 else None

    def role(self):
        return self.get("/role")

    def status(self):
        body = self.get("/ha_status")
        return json.loads(body) if body else {}


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Writer:
    """Puts objects in a loop from a thread and records the acknowledged ones."""

    def __init__(self, store, tag):
        self.store, self.tag = store, tag
        self.acked = {}          # key -> bytes
        self.ack_times = []      # (start, end) monotonic times of each acknowledged put
        self.failures = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop_flag.is_set():
            key = f"{self.tag}-{i}"
            value = (key.encode() * (4096 // len(key) + 1))[:4096]
            start = time.monotonic()
            if self.store.put(key, value) == 0:
                self.acked[key] = value
                self.ack_times.append((start, time.monotonic()))
            else:
                self.failures += 1
            i += 1

    def wait_acks(self, n, timeout=20):
        start = len(self.acked)
        wait_for(lambda: len(self.acked) >= start + n, timeout, f"{n} more acknowledged puts")

    def stop(self):
        self.stop_flag.set()
        self.thread.join(30)


def first_ack_started_after(writer, t):
    """When the first put that started after `t` was acknowledged."""
    return min(end for start, end in writer.ack_times if start > t)


def check_all_readable(store, acked):
    missing = [k for k, v in acked.items() if store.get(k) != v]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged objects lost: {missing[:5]}"


def in_sync_count(leader):
    return sum(s["state"] == "in_sync" for s in leader.status().get("standbys", []))


@pytest.fixture
def ha_cluster(stores, request):
    count = getattr(request, "param", 2)
    etcd = EtcdCluster()
    cluster_id = f"test-{os.getpid()}-{time.monotonic_ns()}"
    masters = [HaMaster(etcd, cluster_id, "ha-master-a")]
    wait_for(lambda: masters[0].role() == "leader", 20, "a leader")
    for name in "bc"[:count - 1]:
        masters.append(HaMaster(etcd, cluster_id, f"ha-master-{name}"))
    wait_for(lambda: in_sync_count(masters[0]) == count - 1, 20, "every standby in sync")
    os.environ["MOONCAKE_CLUSTER_ID"] = cluster_id
    store = stores()
    # Writers put 4 KiB objects for as long as the faults take (about 20000 here): the pool must
    # hold them all, or eviction (not a failover) would take some.
    assert harness.setup_store(store, f"etcd://{etcd.endpoints()}", segment=512 << 20) == 0
    yield etcd, masters, store
    store.close()  # while a master still answers
    os.environ.pop("MOONCAKE_CLUSTER_ID", None)
    for m in masters:
        if m.service.proc.poll() is None:
            os.kill(m.service.proc.pid, signal.SIGCONT)
        m.service.stop()
    etcd.stop()


def leader_of(masters):
    for m in masters:
        if m.service.alive() and m.role() == "leader":
            return m
    return None


def in_sync_standby(masters):
    leader = leader_of(masters)
    return leader is not None and any(s["state"] == "in_sync"
                                      for s in leader.status().get("standbys", []))


def test_kill_9_of_the_leader_during_writes_loses_no_acknowledged_put(ha_cluster):
    etcd, masters, store = ha_cluster
    writer = Writer(store, "kill9")
    writer.wait_acks(200)
    old = leader_of(masters)
    killed_at = time.monotonic()
    old.service.proc.kill()
    old.service.proc.wait()
    writer.wait_acks(200, timeout=30)
    writer.stop()
    first_after = first_ack_started_after(writer, killed_at)
    failover = first_after - killed_at
    print(f"failover: kill -9 to first acknowledged put {failover:.2f} s "
          f"(lease TTL {LEASE_TTL} s); {len(writer.acked)} acked, {writer.failures} failed")
    # The target is 2 x TTL (docs/benchmarks.md has the measured times); a loaded CI machine
    # gets up to the 5 s the defaults promise.
    assert failover <= 5.0
    new = leader_of(masters)
    assert new is not None and new is not old
    assert new.status()["empty_takeovers"] == 0
    check_all_readable(store, writer.acked)


def test_sigstop_of_the_leader_fails_over_and_the_old_leader_steps_down(ha_cluster):
    etcd, masters, store = ha_cluster
    writer = Writer(store, "sigstop")
    writer.wait_acks(100)
    old = leader_of(masters)
    os.kill(old.service.proc.pid, signal.SIGSTOP)
    harness.wait_stopped(old.service.proc.pid)
    writer.wait_acks(100, timeout=30)  # through the other master
    os.kill(old.service.proc.pid, signal.SIGCONT)
    # The resumed master must not serve: its lease lapsed while it was stopped.
    wait_for(lambda: old.role() == "standby", 10, "the resumed master to be a standby")
    writer.wait_acks(100)
    # It catches up from the new leader and is in sync again.
    wait_for(lambda: in_sync_standby(masters), 20, "the old leader back in sync")
    writer.stop()
    check_all_readable(store, writer.acked)


def test_sigstop_of_the_etcd_leader_loses_nothing(ha_cluster):
    etcd, masters, store = ha_cluster
    writer = Writer(store, "etcdstop")
    writer.wait_acks(100)
    stopped = etcd.members[etcd.leader_index()]
    os.kill(stopped.proc.pid, signal.SIGSTOP)
    try:
        # The masters' keepalives time out on the hung member and move to the others; the
        # leader keeps its lease or a standby takes over. Either way puts go on.
        writer.wait_acks(200, timeout=30)
    finally:
        os.kill(stopped.proc.pid, signal.SIGCONT)
    writer.wait_acks(50)
    writer.stop()
    assert leader_of(masters) is not None
    check_all_readable(store, writer.acked)


def test_restart_of_every_master_in_turn_loses_nothing(ha_cluster):
    etcd, masters, store = ha_cluster
    writer = Writer(store, "restart")
    writer.wait_acks(100)
    for _ in range(2):
        for m in list(masters):
            wait_for(lambda: in_sync_standby(masters), 20, "a standby in sync")
            m.service.stop()  # SIGTERM: a clean stop hands the lease over at once
            writer.wait_acks(50, timeout=30)
            m.start()
    wait_for(lambda: in_sync_standby(masters), 20, "a standby in sync")
    writer.stop()
    check_all_readable(store, writer.acked)


@pytest.mark.parametrize("ha_cluster", [3], indirect=True)
def test_three_masters_two_failovers_lose_nothing(ha_cluster):
    """Leader and two standbys: after a kill -9 the other standby follows the new leader (a new
    stream, a new snapshot) and can take over in turn."""
    etcd, masters, store = ha_cluster
    writer = Writer(store, "three")
    writer.wait_acks(100)
    for _ in range(2):
        old = leader_of(masters)
        old.service.proc.kill()
        old.service.proc.wait()
        writer.wait_acks(100, timeout=30)
        new = leader_of(masters)
        assert new is not None and new is not old
        # The remaining standby re-joins the new leader before the next failover.
        survivors = [m for m in masters if m.service.alive()]
        wait_for(lambda: in_sync_count(new) == len(survivors) - 1, 20, "the standby in sync")
    writer.stop()
    assert leader_of(masters).status()["empty_takeovers"] == 0
    check_all_readable(store, writer.acked)


HA_TOKEN = "ha-s3cret"


@pytest.fixture
def auth_token_env():
    """MC_AUTH_TOKEN for the masters started after it (they inherit the environment) and the
    store; requested before ha_cluster so that the cluster starts with it."""
    os.environ["MC_AUTH_TOKEN"] = HA_TOKEN
    yield HA_TOKEN
    os.environ.pop("MC_AUTH_TOKEN", None)


def _varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number, payload):
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def hello_frame(leader_id, term, token=None):
    """A replication stream's first frame: ToStandby{hello: Hello{leader_id, term, auth_token}}
    (mooncake/proto/ha.proto) behind its 4-byte little-endian length."""
    hello = _field(1, leader_id.encode()) + _varint(2 << 3) + _varint(term)
    if token is not None:
        hello += _field(3, token.encode())
    body = _field(1, hello)
    return struct.pack("<I", len(body)) + body


def auth_refusals(master):
    for line in (master.get("/metrics") or "").splitlines():
        if line.startswith("mooncake_master_auth_refusals_total "):
            return int(line.split()[1])
    return None


@pytest.mark.parametrize("ha_cluster", [3], indirect=True)
def test_a_replication_stream_without_the_token_is_refused(auth_token_env, ha_cluster):
    """With MC_AUTH_TOKEN on the masters, a peer that read the leader's id and term off a
    standby's /ha_status cannot replace the leader's stream and feed the standby a state of its
    own (docs/compatibility.md section 7): the standby refuses it, counts it, stays in sync, and
    a failover loses no acknowledged object."""
    etcd, masters, store = ha_cluster
    writer = Writer(store, "hatoken")
    writer.wait_acks(100)
    leader = leader_of(masters)
    standby = next(m for m in masters if m is not leader)
    status = standby.status()
    port, lead = status["replication_port"], status["leader"]
    refused_before = auth_refusals(standby)
    for token in (None, "wrong"):
        with socket.create_connection((harness.HOST, port), timeout=5) as s:
            s.sendall(hello_frame(lead["id"], lead["term"], token))
            reply = s.recv(4096)
            assert b"does not follow" in reply, reply
            assert s.recv(1) == b"", "the standby kept a refused stream open"
    assert auth_refusals(standby) == refused_before + 2
    writer.wait_acks(100)
    assert in_sync_count(leader) == 2, leader.status()
    leader.service.proc.kill()
    leader.service.proc.wait()
    writer.wait_acks(100, timeout=30)
    writer.stop()
    new = leader_of(masters)
    assert new is not None and new is not leader
    assert new.status()["empty_takeovers"] == 0
    check_all_readable(store, writer.acked)
    # The control: the same frame with the token is taken by the standby left (no refusal; the
    # real leader's next connection may replace it at once, closing it without a reply), so the
    # refusals above were the token's doing and not a malformed frame's.
    other = next(m for m in masters if m.service.alive() and m is not new)
    wait_for(lambda: other.status()["leader"]["id"] == new.status()["id"], 20, "a new leader")
    lead = other.status()["leader"]
    with socket.create_connection((harness.HOST, other.status()["replication_port"]),
                                  timeout=1) as s:
        s.sendall(hello_frame(lead["id"], lead["term"], HA_TOKEN))
        try:
            got = s.recv(4096)
        except socket.timeout:
            got = b""
        assert got == b"", got
