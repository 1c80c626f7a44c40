#!/usr/bin/env bash
# The self-contained wheels in foreign Debian roots built with debootstrap (tools/foreign_root says
# what each root has and what is checked): cp311 in a bare Debian 12, cp313 in a bare Debian 13.
set -euo pipefail
wheel() { readlink -f sglang_backend/mooncake_cpp-0.1.0-"$1"-"$1"-manylinux_2_35_x86_64.whl; }
tests="$(dirname "$(readlink -f sglang_backend/tests/harness.py)")"
exec tools/foreign_root --test "bookworm=$(wheel cp311)" "trixie=$(wheel cp313)" --tests "$tests"
