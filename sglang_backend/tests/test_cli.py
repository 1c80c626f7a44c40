"""The wheel's commands and files: console scripts, python -m, shipped binaries, metadata."""

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
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
    for name in ("mooncake_master", "http_metadata_server", "mooncake_storage_node"):
        assert os.access(os.path.join(bin_dir, name), os.X_OK), name


def test_storage_node_waits_for_a_master_started_after_it():
    # Start order must not matter: the node retries an unreachable master (--connect_timeout).
    port, metrics = harness.free_port(), harness.free_port()
    node = subprocess.Popen([os.path.join(harness.BIN_DIR, "mooncake_storage_node"),
                             f"--master={harness.HOST}:{port}", "--segment_size=16mb",
                             "--connect_timeout=20"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    master = None
    try:
        time.sleep(1.5)
        assert node.poll() is None, node.communicate()
        master = harness.start_master(port=port, metrics_port=metrics)
        assert node.stdout.readline().startswith("READY"), node.stderr.read()
        status, body = harness.http_get(
            f"http://{harness.HOST}:{metrics}/get_all_segments")
        assert status == 200 and body.strip(), body
    finally:
        node.terminate()
        node.wait(10)
        if master is not None:
            master.stop()


def test_shipped_programs_need_only_the_c_library_from_the_host():
    # Every library but glibc's, libstdc++ and libgcc comes from the wheel (mooncake_cpp.libs);
    # libibverbs is not needed at load time at all (the engine loads it for RDMA only).
    site = os.path.dirname(os.path.dirname(mooncake.__file__))
    system_ok = ("linux-vdso", "ld-linux", "libc.so", "libm.so", "libstdc++", "libgcc_s",
                 "libz.so", "libatomic", "libpthread", "libdl.so", "librt.so")
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        # tools/asan: a sanitized wheel takes its sanitizer runtimes from the host, preloaded.
        system_ok += ("libasan", "libubsan")
    bin_dir = os.path.join(os.path.dirname(mooncake.__file__), "bin")
    for path in [os.path.join(bin_dir, "mooncake_master"), importlib.import_module(
            "mooncake.store").__file__]:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            lib = line.strip()
            assert "not found" not in lib, (path, lib)
            assert "libibverbs" not in lib, (path, lib)
            if os.path.basename(lib.split()[0]).startswith(system_ok):
                continue
            if "=>" not in lib:  # an LD_PRELOAD entry, not a dependency of the file
                continue
            resolved = os.path.realpath(lib.split("=>")[1].split("(")[0].strip())
            assert resolved.startswith(os.path.realpath(os.path.join(site, "mooncake_cpp.libs"))
                                       + os.sep), (path, lib)


def test_distribution_metadata():
    dist = importlib.metadata.distribution("mooncake-cpp")
    assert dist.version == mooncake.__version__
    metadata = dist.read_text("METADATA")
    assert "glibc 2.35" in metadata and "rdma-core" in metadata
    assert dist.metadata["Requires-Python"] == f"=={sys.version_info[0]}.{sys.version_info[1]}.*"
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert f"Tag: {tag}-{tag}-manylinux_2_35_x86_64" in dist.read_text("WHEEL")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"mooncake_master": "mooncake.cli:master_main",
                       "mooncake_http_metadata_server": "mooncake.cli:http_metadata_server_main",
                       "mooncake_storage_node": "mooncake.cli:storage_node_main",
                       "mooncake_client": "mooncake.cli:client_main"}
    store_module = importlib.import_module("mooncake.store")
    engine_module = importlib.import_module("mooncake.engine")
    assert store_module.__file__.endswith(
        f".cpython-{sys.version_info[0]}{sys.version_info[1]}-x86_64-linux-gnu.so")
    assert engine_module.TransferEngine.__name__ == "TransferEngine"
