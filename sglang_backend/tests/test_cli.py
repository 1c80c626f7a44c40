"""The wheel's commands and files: console scripts, python -m, shipped binaries, metadata."""

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import urllib.request

import harness
import mooncake


def test_python_m_http_metadata_server_serves_metadata():
    server = harness.start_metadata_server(as_module=True)
    try:
        url = f"http://{harness.HOST}:{server.port}/metadata?key=mooncake/test"
        body = json.dumps({"ip_or_host_name": "h", "rpc_port": 1}).encode()
        req = urllib.request.Request(url, data=body, method="PUT")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        assert harness.http_get(url) == (200, body)
        assert harness.http_get(url + "-absent")[0] == 404
    finally:
        assert server.stop() == 0  # SIGTERM: a clean exit


def test_console_scripts_exec_the_shipped_binaries(master):
    # The fixture's master was started through the console script; it answers SGLang's probe.
    status, _ = harness.http_get(f"http://{harness.HOST}:{master.metrics_port}/get_all_segments")
    assert status == 200
    out = subprocess.run([os.path.join(harness.BIN_DIR, "mooncake_master"), "--port=0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "port" in (out.stdout + out.stderr)
    bin_dir = os.path.join(os.path.dirname(mooncake.__file__), "bin")
    for name in ("mooncake_master", "http_metadata_server"):
        assert os.access(os.path.join(bin_dir, name), os.X_OK), name


def test_distribution_metadata():
    dist = importlib.metadata.distribution("mooncake-cpp")
    assert dist.version == mooncake.__version__
    assert "Debian 12" in dist.metadata["Description"] or "Debian 12" in dist.read_text(
        "METADATA")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"mooncake_master": "mooncake.cli:master_main",
                       "mooncake_http_metadata_server": "mooncake.cli:http_metadata_server_main"}
    store_module = importlib.import_module("mooncake.store")
    engine_module = importlib.import_module("mooncake.engine")
    assert store_module.__file__.endswith(".cpython-311-x86_64-linux-gnu.so")
    assert engine_module.TransferEngine.__name__ == "TransferEngine"
    assert sys.version_info[:2] == (3, 11)
