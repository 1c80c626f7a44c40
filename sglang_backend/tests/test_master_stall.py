"""A master stopped (SIGSTOP) for longer than client_ttl does not expire its clients when it
resumes: the silence was its own (Mooncake #3937: every client expired, the index wiped)."""

import os
import re
import signal
import time

import harness


def expired_clients(master):
    status, body = harness.http_get(f"http://{harness.HOST}:{master.metrics_port}/metrics")
    assert status == 200
    m = re.search(rb"^mooncake_master_expired_clients_total (\d+)", body, re.M)
    return int(m.group(1)) if m else None


def test_a_stalled_master_keeps_its_clients(stores):
    master = harness.start_master(client_ttl=2)
    try:
        store = stores()
        assert harness.setup_store(store, master.address) == 0
        keys = [f"stall-{i}" for i in range(32)]
        for k in keys:
            assert store.put(k, k.encode() * 100) == 0
        before = expired_clients(master)
        os.kill(master.proc.pid, signal.SIGSTOP)
        harness.wait_stopped(master.proc.pid)
        time.sleep(5)  # 2.5 x client_ttl
        os.kill(master.proc.pid, signal.SIGCONT)
        time.sleep(1.0)  # a few ticks and heartbeats
        assert expired_clients(master) == before
        assert store.batch_is_exist(keys) == [1] * len(keys)
        assert all(store.get(k) == k.encode() * 100 for k in keys)
    finally:
        master.stop()
