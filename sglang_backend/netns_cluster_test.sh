#!/usr/bin/env bash
# The bounded namespace-cluster run (tests/netns_cluster.py says what it builds and checks): the
# wheel in a venv, 4 seeded fault runs that must hold every invariant (seeds 319-322 draw all 7
# fault kinds between them), then one sabotaged run (its workers store some wrong bytes) that must
# fail, so a checker that stopped checking is noticed.
# The long run is :netns_cluster_long (manual).
set -euo pipefail
runs="${NETNS_RUNS:-4}"
parallel="${NETNS_PARALLEL:-1}"
export PATH="$PATH:/usr/sbin:/sbin"  # ip, nft and tc; Bazel's test PATH has only /bin:/usr/bin
if [[ "$(id -u)" != 0 ]]; then
  echo "SKIPPED: the namespace cluster needs root (ip netns add)"
  exit 0
fi
# As root, tools/setup provides the rest: missing tools are a failure, not a skip.
for tool in ip nft tc; do
  command -v "$tool" > /dev/null || { echo "FAIL: $tool not found (run tools/setup)"; exit 1; }
done
ip netns add "mc-probe$$" || { echo "FAIL: ip netns add does not work here"; exit 1; }
ip netns del "mc-probe$$"
wheel="$(readlink -f sglang_backend/mooncake_cpp-*cp311*.whl)"
work="$(mktemp -d -p "${TEST_TMPDIR:-/tmp}" netns.XXXXXX)"
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/python" -m pip install -q --no-index --no-deps --disable-pip-version-check "$wheel"
tests="$(dirname "$(readlink -f sglang_backend/tests/netns_cluster.py)")"
out="${TEST_UNDECLARED_OUTPUTS_DIR:-$work}"
"$work/venv/bin/python" "$tests/netns_cluster.py" --runs "$runs" --seed "${NETNS_SEED:-319}" \
  --parallel "$parallel" --slot-base 40 --out "$work/logs" --summary "$out/netns_summary.json" "$@"
echo "--- sabotaged run (must fail) ---"
if "$work/venv/bin/python" "$tests/netns_cluster.py" --runs 1 --seed 7 --slot-base 40 \
  --sabotage --out "$work/sabotage" > "$work/sabotage.log" 2>&1; then
  cat "$work/sabotage.log"
  echo "FAIL: the checker passed a run whose workers stored wrong bytes"
  exit 1
fi
grep -q "bytes:" "$work/sabotage.log" || { cat "$work/sabotage.log"; echo "FAIL: no bytes violation"; exit 1; }
grep -m1 "bytes:" "$work/sabotage.log"
echo "the sabotaged run failed as it must"
