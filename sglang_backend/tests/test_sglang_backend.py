"""SGLang's own Mooncake HiCache backend against our wheel.

Constructs sglang.srt.mem_cache.storage.mooncake_store.mooncake_store.MooncakeStore (through
SGLang's StorageBackendFactory, and directly) with a HiCacheStorageConfig and a mock page_first
host pool, and runs its batch_set_v1 / batch_exists / batch_get_v1 / clear with byte comparison,
for MHA (TP=2, extra-config JSON, check_server probe, model-name key prefix) and MLA (TP=2,
MOONCAKE_* environment). Stubbed modules: torch, triton and torchvision only (torch_stub.py says
why); the rest of SGLang's imports are the real PyPI packages (sglang_requirements.txt).

The scenario runs in a fresh interpreter (sglang_driver.py) so the stubs never reach the other
tests. Without sglang installed the test is skipped, saying so.
"""

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys

import pytest


DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sglang_driver.py")
REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "sglang_requirements.txt")


def sglang_missing_reason():
    if importlib.util.find_spec("sglang") is None:
        return (f"sglang is not installed in {sys.prefix}: install it with "
                f"`pip install --no-deps -r {REQUIREMENTS}` (tools/test does; it needs PyPI)")
    return None


@pytest.mark.skipif(sglang_missing_reason() is not None, reason=str(sglang_missing_reason()))
def test_sglang_mooncake_store_backend(master, metadata):
    args = {"master": master.address, "metrics_port": master.metrics_port, "metadata": metadata}
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, DRIVER, json.dumps(args)], capture_output=True,
                          text=True, timeout=240, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, (
        f"SGLang {importlib.metadata.version('sglang')} MooncakeStore failed against our wheel:\n"
        + output[-6000:])
    line = next(l for l in proc.stdout.splitlines() if l.startswith("SGLANG-DRIVER-OK"))
    summary = json.loads(line.split(" ", 1)[1])
    assert summary == {"stubbed": ["torch", "triton", "torchvision"], "mha_rank0": "ok",
                       "mha_rank1": "ok", "mla": "ok", "clear": "ok"}
