#!/usr/bin/env bash
# The wheels for the CPython versions no Debian release ships (3.10, 3.12), with this machine's
# own interpreters of those versions (pyenv): install offline, programs from the wheel, put/get.
# Arguments: PYTHON=WHEEL pairs (sglang_backend/BUILD.bazel passes them from @python_headers).
set -euo pipefail
tests="$(dirname "$(readlink -f sglang_backend/tests/harness.py)")"
pairs=()
for pair in "$@"; do pairs+=("${pair%%=*}=$(readlink -f "${pair#*=}")"); done
exec tools/foreign_root --host "${pairs[@]}" --tests "$tests"
