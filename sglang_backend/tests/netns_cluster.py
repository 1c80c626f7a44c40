"""A cluster of real processes on hosts made of network namespaces, with seeded faults, checked
against the VOPR's invariants (docs/testing.md, "Namespace cluster").

    python netns_cluster.py --runs 200 --seed 1 --parallel 2 [--out DIR]

Each run builds 4 hosts, each a namespace with a veth link to a bridge namespace:

    h0 10.S.0.1  mooncake_master (+ its HTTP metadata server)
    h1..h3       netns_worker.py: a store from the wheel with a 64 MiB segment and a HiCache-shaped
                 workload on 40 shared conversations

and injects 2 faults chosen by the run's seed, at seeded times:

    kill9           kill -9 of a worker, restarted 1 s later (a new process and segment)
    stop_long       SIGSTOP of a worker for client_ttl + 2 s (the master must declare it dead)
    stop_short      SIGSTOP for 1 s (less than client_ttl: nothing may be lost)
    link            its link down for 0.5 to 1.5 s
    cut_master      a host and the master cannot reach each other (blackhole routes both ways)
    cut_peers       a host and the other storage hosts cannot reach each other; the master can
    lossy           5 to 20 % of its packets dropped (nft) and its egress shaped by tbf, 2 to 4 s

Invariants, checked on every run:

    bytes      no read ever returns wrong bytes (every object's content is a function of its key)
    lost       an acknowledged object is still readable at the end, unless a segment that may
               hold it was unmounted (its owner died or was declared dead) after that put
               began. Workers put to their own segment
               (preferred_segment), so the segments that may hold an object are those of the
               writers of every put of its key (a put of an existing key answers 0 without
               writing); a put made while its writer's segment was not mounted may have gone
               anywhere, and is then excused by any unmount after it began
    exists     at the end, after client_ttl has passed since the last fault, every object that
               batch_is_exist reports is readable, with the right bytes
    hung       no call takes longer than its bound (HUNG_SECONDS: the 5 s RPC timeout twice, the
               transfer timeout and slack), and every worker finishes by its deadline

Needs root (ip netns), iproute2, nftables and the wheel installed in this interpreter.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import netns_worker  # noqa: E402

BIN_DIR = os.path.dirname(sys.executable)
CLIENT_TTL = 5
TRANSFER_TIMEOUT = 3
HUNG_SECONDS = 2 * 5 + TRANSFER_TIMEOUT + 7
FAULTS = ["kill9", "stop_long", "stop_short", "link", "cut_master", "cut_peers", "lossy"]
DEATHS = {"kill9", "stop_long"}
WORKERS = 3


def sh(*argv, check=True):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stdout.strip()}")
    return r


class Net:
    """Namespaces mc<slot>h0..h3 around a bridge in mc<slot>br, subnet 10.<80+slot>.0.0/24."""

    def __init__(self, slot):
        self.slot = slot
        self.prefix = f"mc{slot}"
        self.bridge = f"{self.prefix}br"
        self.hosts = [f"{self.prefix}h{i}" for i in range(WORKERS + 1)]

    def ip(self, i):
        return f"10.{80 + self.slot}.0.{i + 1}"

    def exec(self, i, *argv, check=True):
        return sh("ip", "netns", "exec", self.hosts[i], *argv, check=check)

    def up(self):
        self.down()
        sh("ip", "netns", "add", self.bridge)
        b = ["ip", "netns", "exec", self.bridge]
        sh(*b, "ip", "link", "add", "br0", "type", "bridge")
        sh(*b, "ip", "link", "set", "br0", "up")
        for i, ns in enumerate(self.hosts):
            sh("ip", "netns", "add", ns)
            v, p = f"{self.prefix}v{i}", f"{self.prefix}p{i}"
            sh("ip", "link", "add", v, "type", "veth", "peer", "name", p)
            sh("ip", "link", "set", v, "netns", ns)
            sh("ip", "link", "set", p, "netns", self.bridge)
            sh(*b, "ip", "link", "set", p, "master", "br0")
            sh(*b, "ip", "link", "set", p, "up")
            self.exec(i, "ip", "link", "set", v, "name", "eth0")
            self.exec(i, "ip", "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            self.exec(i, "ip", "link", "set", "eth0", "up")
            self.exec(i, "ip", "link", "set", "lo", "up")

    def down(self):
        for ns in [*self.hosts, self.bridge]:
            sh("ip", "netns", "del", ns, check=False)

    # Faults.
    def link(self, i, up):
        self.exec(i, "ip", "link", "set", "eth0", "up" if up else "down")

    def cut(self, a, b, on):
        """Blackhole routes between hosts a and b, both ways."""
        verb = "add" if on else "del"
        self.exec(a, "ip", "route", verb, "blackhole", f"{self.ip(b)}/32", check=on)
        self.exec(b, "ip", "route", verb, "blackhole", f"{self.ip(a)}/32", check=on)

    def lossy(self, i, percent, on):
        if on:
            self.exec(i, "nft", "add", "table", "inet", "mcfault")
            for hook in ("input", "output"):
                self.exec(i, "nft", "add", "chain", "inet", "mcfault", hook,
                          f"{{ type filter hook {hook} priority 0; }}")
                self.exec(i, "nft", "add", "rule", "inet", "mcfault", hook, "meta", "l4proto",
                          "tcp", "numgen", "random", "mod", "100", "<", str(percent), "drop")
            self.exec(i, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "200mbit",
                      "burst", "64kb", "latency", "20ms")
        else:
            self.exec(i, "nft", "delete", "table", "inet", "mcfault", check=False)
            self.exec(i, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)


class Run:
    def __init__(self, seed, slot, out_dir, duration, sabotage=False):
        self.sabotage = sabotage
        self.seed = seed
        self.slot = slot
        self.net = Net(slot)
        self.dir = os.path.join(out_dir, f"run-{seed}")
        os.makedirs(self.dir, exist_ok=True)
        self.duration = duration
        self.rng = random.Random(seed)
        self.procs = {}       # worker index -> Popen
        self.logs = {}        # worker index -> [log paths, one per incarnation]
        self.events = []      # (time, what)
        self.violations = []
        self.env = dict(os.environ, MC_DISABLE_SHM="1", MC_TRANSFER_TIMEOUT=str(TRANSFER_TIMEOUT),
                        MC_LOG_LEVEL="INFO")

    def event(self, what):
        self.events.append((time.time(), what))

    # Processes.
    def start_master(self):
        argv = ["ip", "netns", "exec", self.net.hosts[0],
                os.path.join(BIN_DIR, "mooncake_master"), f"--bind_address={self.net.ip(0)}",
                "--port=50051", "--metrics_port=9003", f"--client_ttl={CLIENT_TTL}",
                "--enable_http_metadata_server", "--http_metadata_server_port=8080"]
        self.master_log = os.path.join(self.dir, "master.log")
        self.master = subprocess.Popen(argv, stdout=open(self.master_log, "wb"),
                                       stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + 20
        while time.time() < deadline:
            r = self.net.exec(0, sys.executable, "-c",
                              "import urllib.request,sys; urllib.request.urlopen("
                              f"'http://{self.net.ip(0)}:9003/health', timeout=1)", check=False)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("master did not start")

    def start_worker(self, i):
        n = len(self.logs.setdefault(i, []))
        log = os.path.join(self.dir, f"worker{i}.{n}.jsonl")
        self.logs[i].append(log)
        args = {"mode": "work", "master": f"{self.net.ip(0)}:50051",
                "metadata": f"http://{self.net.ip(0)}:8080/metadata", "host": self.net.ip(i),
                "run": str(self.seed), "until": self.until, "log": log,
                "sabotage": self.sabotage}
        argv = ["ip", "netns", "exec", self.net.hosts[i], sys.executable,
                os.path.join(HERE, "netns_worker.py"), json.dumps(args)]
        out = open(os.path.join(self.dir, f"worker{i}.{n}.out"), "wb")
        self.procs[i] = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out,
                                         stderr=subprocess.STDOUT, env=self.env)

    def signal(self, i, sig):
        # ip netns exec execs the program, so the Popen pid is the worker's.
        os.kill(self.procs[i].pid, sig)

    # Faults.
    def fault(self, kind, i):
        r = self.rng
        if kind == "kill9":
            self.signal(i, signal.SIGKILL)
            self.procs[i].wait()
            self.event(f"kill9 h{i}")
            time.sleep(1)
            self.start_worker(i)
            self.event(f"restart h{i}")
        elif kind in ("stop_long", "stop_short"):
            hold = CLIENT_TTL + 2 if kind == "stop_long" else 1.0
            self.signal(i, signal.SIGSTOP)
            self.event(f"{kind} h{i} {hold:.1f}s")
            time.sleep(hold)
            self.signal(i, signal.SIGCONT)
            self.event(f"cont h{i}")
        elif kind == "link":
            hold = r.uniform(0.5, 1.5)
            self.net.link(i, False)
            self.event(f"link down h{i} {hold:.2f}s")
            time.sleep(hold)
            self.net.link(i, True)
            self.event(f"link up h{i}")
        elif kind == "cut_master":
            hold = r.uniform(0.5, 1.5)
            self.net.cut(i, 0, True)
            self.event(f"cut h{i}-master {hold:.2f}s")
            time.sleep(hold)
            self.net.cut(i, 0, False)
            self.event(f"heal h{i}-master")
        elif kind == "cut_peers":
            hold = r.uniform(0.5, 1.5)
            peers = [j for j in range(1, WORKERS + 1) if j != i]
            for j in peers:
                self.net.cut(i, j, True)
            self.event(f"cut h{i}-peers {hold:.2f}s")
            time.sleep(hold)
            for j in peers:
                self.net.cut(i, j, False)
            self.event(f"heal h{i}-peers")
        elif kind == "lossy":
            hold, pct = r.uniform(2, 4), r.randint(5, 20)
            self.net.lossy(i, pct, True)
            self.event(f"lossy h{i} {pct}% {hold:.2f}s")
            time.sleep(hold)
            self.net.lossy(i, pct, False)
            self.event(f"clean h{i}")

    # The run.
    def run(self):
        start = self.started = time.time()
        self.net.up()
        try:
            self.start_master()
            self.until = time.time() + self.duration + 3
            for i in range(1, WORKERS + 1):
                self.start_worker(i)
            plan = sorted((self.rng.uniform(3, self.duration - 1), self.rng.choice(FAULTS),
                           self.rng.randint(1, WORKERS)) for _ in range(2))
            self.plan = [(round(t, 2), k, i) for t, k, i in plan]
            t0 = time.time()
            for at, kind, i in plan:
                time.sleep(max(0.0, t0 + at - time.time()))
                self.fault(kind, i)
            self.last_fault = time.time()
            self.wait_workers()
            # Dead clients are declared dead within client_ttl (plus a heartbeat and a tick).
            time.sleep(max(0.0, self.last_fault + CLIENT_TTL + 3 - time.time()))
            self.check_time = time.time()
            self.final = self.check_all()
            self.metrics = self.master_metrics()
            self.stop_workers()
        finally:
            for p in self.procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
            if getattr(self, "master", None) is not None:
                self.master.terminate()
                try:
                    self.master.wait(10)
                except subprocess.TimeoutExpired:
                    self.master.kill()
                    self.master.wait()
            self.net.down()
        self.evaluate()
        self.seconds = time.time() - start
        return self.summary()

    def done(self, i):
        path = self.logs[i][-1]
        if not os.path.exists(path):
            return False
        with open(path, "rb") as f:
            return b'"done"' in f.read()

    def wait_workers(self):
        """Every worker's workload ends by its deadline (its segment then stays up)."""
        deadline = self.until + HUNG_SECONDS + 10
        for i, p in self.procs.items():
            while not self.done(i) and p.poll() is None and time.time() < deadline:
                time.sleep(0.1)
            if self.done(i):
                continue
            if p.poll() is None:
                self.violations.append(f"hung: worker h{i} still working {HUNG_SECONDS + 10} s "
                                       "past its deadline")
            else:
                self.violations.append(f"worker h{i} exited with {p.returncode}: "
                                       f"{self.tail(i)}")

    def stop_workers(self):
        for i, p in self.procs.items():
            if p.poll() is not None:
                continue
            p.stdin.close()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                self.violations.append(f"hung: worker h{i} did not close within 15 s")
                continue
            if p.returncode != 0:
                self.violations.append(f"worker h{i} exited with {p.returncode}: "
                                       f"{self.tail(i)}")

    def tail(self, i):
        n = len(self.logs[i]) - 1
        with open(os.path.join(self.dir, f"worker{i}.{n}.out"), "rb") as f:
            return f.read().decode(errors="replace")[-600:]

    def check_all(self):
        args = {"mode": "check", "master": f"{self.net.ip(0)}:50051",
                "metadata": f"http://{self.net.ip(0)}:8080/metadata", "host": self.net.ip(1),
                "run": str(self.seed), "segment": 0}
        r = subprocess.run(["ip", "netns", "exec", self.net.hosts[1], sys.executable,
                            os.path.join(HERE, "netns_worker.py"), json.dumps(args)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=self.env, timeout=120)
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                return json.loads(line)["keys"]
        raise RuntimeError(f"final check failed: {r.stdout[-500:]} {r.stderr[-1500:]}")

    def master_metrics(self):
        r = self.net.exec(0, sys.executable, "-c",
                          "import urllib.request; print(urllib.request.urlopen("
                          f"'http://{self.net.ip(0)}:9003/metrics', timeout=3).read().decode())",
                          check=False)
        out = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith("mooncake_master_"):
                out[parts[0][len("mooncake_master_"):]] = float(parts[1])
        return out

    def segment_events(self):
        """(wall-clock time, "mounted"|"unmounted", segment name) from the master's log, up to
        the final check (the workers' own closes come after it)."""
        events = []
        year = datetime.datetime.now().year
        pat = re.compile(r"^I(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d+) .*\] "
                         r"(mounted|unmounted) segment (\S+)")
        with open(self.master_log, "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                m = pat.match(line)
                if m:
                    mo, d, hh, mm, ss, frac, what, name = m.groups()
                    # The master logs local time (common/logging.cc): a naive datetime is local.
                    t = datetime.datetime(year, int(mo), int(d), int(hh), int(mm), int(ss),
                                          int(frac[:6].ljust(6, "0"))).timestamp()
                    if not self.started - 60 < t < time.time() + 60:
                        # A skewed clock would excuse every loss: refuse to judge the run.
                        raise RuntimeError(f"master log time {t} outside the run: {line}")
                    if t < self.check_time:
                        events.append((t, what, name))
        if not any(what == "mounted" for _, what, _ in events):
            raise RuntimeError("no 'mounted segment' line in the master's log")
        return sorted(events)

    @staticmethod
    def mounted_throughout(events, name, t0, t1):
        state = False
        for t, what, n in events:
            if n != name:
                continue
            if t <= t0:
                state = what == "mounted"
            elif t <= t1 and what == "unmounted":
                return False
        return state

    def evaluate(self):
        keys = [netns_worker.conversation_keys(str(self.seed), c)
                for c in range(netns_worker.CONVERSATIONS)]
        acked = set()  # (c, i) with an acknowledged put
        puts = {}      # (c, i) -> [(t0, t1, writer's segment)] of every put, acknowledged or not
        self.requests = self.reads = self.puts = 0
        longest = 0.0
        for i, paths in self.logs.items():
            for path in paths:
                if not os.path.exists(path):
                    continue
                segment = None
                with open(path) as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                        except ValueError:
                            continue  # a line cut by kill -9
                        if "segment" in rec:
                            segment = rec["segment"]
                        if "c" not in rec:
                            continue
                        self.requests += 1
                        longest = max(longest, rec["t1"] - rec["t0"])
                        if rec["t1"] - rec["t0"] > HUNG_SECONDS:
                            self.violations.append(
                                f"hung: a request on h{i} took {rec['t1'] - rec['t0']:.1f} s")
                        for key in rec.get("bad", []):
                            self.violations.append(f"bytes: h{i} read wrong bytes of {key}")
                        self.reads += sum(1 for g in rec.get("got", []) if g > 0)
                        for j, rc in enumerate(rec.get("put", [])):
                            k = (rec["c"], rec["put_first"] + j)
                            puts.setdefault(k, []).append((rec["t0"], rec["t1"], segment))
                            if rc == 0:
                                self.puts += 1
                                acked.add(k)
        self.longest = longest
        events = self.segment_events()
        unmounts = [(t, n) for t, what, n in events if what == "unmounted"]
        self.unmounts = len(unmounts)
        # The workload fits in the segments, so eviction is not an excuse: an eviction would
        # leave the checker unable to tell which losses it explains, and fails the run.
        evicted = self.metrics.get("evicted_objects_total", 0) + \
            self.metrics.get("evicted_to_disk_total", 0)
        if "evicted_objects_total" not in self.metrics:
            self.violations.append("workload: the master's metrics could not be read")
        elif evicted > 0:
            self.violations.append(f"workload: the master evicted {evicted} objects; the "
                                   "workload must fit in the segments for losses to be judged")
        self.lost_allowed = self.verified = 0
        for k in self.final:
            ck = (k["c"], k["i"])
            key = keys[k["c"]][k["i"]]
            if k["got"] > 0 and not k["match"]:
                self.violations.append(f"bytes: the final read of {key} returned wrong bytes")
            if k["exist"] == 1 and not k["match"]:
                self.violations.append(f"exists: {key} exists but reads {k['got']}")
            if ck in acked:
                excused = False
                for t0, t1, segment in puts[ck]:
                    if self.mounted_throughout(events, segment, t0, t1):
                        excused |= any(t >= t0 and n == segment for t, n in unmounts)
                    else:  # put while its own segment was away: it may be anywhere
                        excused |= any(t >= t0 for t, n in unmounts)
                if k["match"]:
                    self.verified += 1
                elif excused:
                    self.lost_allowed += 1
                else:
                    where = ", ".join(f"{sg} at {t0:.3f}" for t0, _, sg in puts[ck])
                    self.violations.append(
                        f"lost: {key} (put by {where}; none of those segments unmounted since) "
                        f"reads {k['got']}")
        self.acked = len(acked)
        if self.acked == 0:
            self.violations.append("workload: no put was acknowledged")

    def summary(self):
        return {"seed": self.seed, "plan": self.plan, "events": [w for _, w in self.events],
                "requests": self.requests, "objects_read": self.reads, "acked": self.acked,
                "verified": self.verified, "lost_allowed": self.lost_allowed,
                "unmounts": self.unmounts, "longest_request_s": round(self.longest, 2),
                "seconds": round(self.seconds, 1), "violations": self.violations[:20]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of workload per run")
    ap.add_argument("--out", default=None, help="keep logs here (default: a temporary folder)")
    ap.add_argument("--summary", default=None, help="write the JSON summary here")
    ap.add_argument("--slot-base", type=int, default=0,
                    help="first namespace slot (mc<slot>*, 10.<80+slot>.0.0/24)")
    ap.add_argument("--sabotage", action="store_true",
                    help="workers store some wrong bytes: every run must then fail (checks the "
                         "checker)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIPPED: the namespace cluster needs root (ip netns add)")
        return 0
    out = args.out or tempfile.mkdtemp(prefix="netns-cluster-")
    seeds = list(range(args.seed, args.seed + args.runs))
    slots = list(range(args.slot_base, args.slot_base + args.parallel))
    lock = threading.Lock()
    results, start = [], time.time()

    def one(seed):
        with lock:
            slot = slots.pop()
        try:
            try:
                s = Run(seed, slot, out, args.duration, args.sabotage).run()
            except Exception as e:  # a harness failure is reported, not a pass
                s = {"seed": seed, "violations": [f"harness: {e!r}"]}
        finally:
            with lock:
                slots.append(slot)
        with lock:
            results.append(s)
            bad = sum(1 for r in results if r["violations"])
            print(f"[{len(results)}/{len(seeds)}] seed {seed}: "
                  f"{'FAIL' if s['violations'] else 'ok'} {s.get('plan')} acked {s.get('acked')} "
                  f"verified {s.get('verified')} lost_allowed {s.get('lost_allowed')} "
                  f"longest {s.get('longest_request_s')} s ({bad} failing, "
                  f"{time.time() - start:.0f} s)", flush=True)
            for v in s["violations"][:5]:
                print(f"    {v}", flush=True)
        return s

    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(one, seeds))
    results.sort(key=lambda r: r["seed"])
    failing = [r for r in results if r["violations"]]
    faults = {}
    for r in results:
        for _, kind, _ in r.get("plan", []):
            faults[kind] = faults.get(kind, 0) + 1
    total = {"runs": len(results), "failing": len(failing), "faults": faults,
             "requests": sum(r.get("requests", 0) for r in results),
             "acked": sum(r.get("acked", 0) for r in results),
             "verified": sum(r.get("verified", 0) for r in results),
             "lost_allowed": sum(r.get("lost_allowed", 0) for r in results),
             "longest_request_s": max((r.get("longest_request_s", 0) for r in results),
                                      default=0),
             "seconds": round(time.time() - start, 1), "logs": out}
    print("SUMMARY " + json.dumps(total), flush=True)
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump({"total": total, "runs": results}, f, indent=1)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
