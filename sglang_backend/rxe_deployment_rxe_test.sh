#!/usr/bin/env bash
# The seed's deployment on soft-RoCE (tests/rxe_deployment.py says what it checks): the wheel is
# installed into a venv on the host, which the guests see read-only through their 9p root; guest 0
# runs the master, the metadata server and a store client, guest 1 a store client, both with
# MOONCAKE_PROTOCOL=rdma MOONCAKE_DEVICE=erdma_0,erdma_1.
set -euo pipefail
wheel="$(readlink -f sglang_backend/mooncake_cpp-*.whl)"
# The guests see the host's root read-only, except /tmp (theirs is their own): keep out of it.
work="${TEST_TMPDIR:-/tmp}"
case "$work" in /tmp | /tmp/*) work="$(mktemp -d -p /var/tmp rxe_deployment.XXXXXX)" ;; esac
venv="$work/venv"
/usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install -q --no-index --no-deps --disable-pip-version-check "$wheel"
# The scripts are copied beside the venv: the source tree may live under /tmp too.
mkdir -p "$work/scripts"
cp sglang_backend/tests/rxe_deployment.py sglang_backend/tests/harness.py "$work/scripts/"
run="MOONCAKE_PROTOCOL=rdma MOONCAKE_DEVICE=erdma_0,erdma_1 $venv/bin/python $work/scripts/rxe_deployment.py"
# A sanitized wheel (tools/asan) needs its runtime preloaded in the guests too; their reports go
# to stderr (a guest's /tmp is its own, so no log_path).
if [[ -n "${LD_PRELOAD:-}" ]]; then
  asan_options="$(sed -E 's/(^|:)log_path=[^:]*//' <<<"${ASAN_OPTIONS:-}")"
  run="LD_PRELOAD=$LD_PRELOAD ASAN_OPTIONS=$asan_options $run"
fi
exec "$(readlink -f tools/rxe_test)" --timeout 400 "$run" "$run"
