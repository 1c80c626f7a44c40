#!/usr/bin/env bash
# The verbs conformance suite on real soft-RoCE: guest 0 serves the responder, guest 1 runs the
# suite against it over erdma_0 (tools/rxe_test boots the guests).
set -uo pipefail
bin="$(readlink -f sim/verbs/verbs_conformance_test)"
exec "$(readlink -f tools/rxe_test)" --timeout 240 \
  "$bin --responder=7471" \
  "MC_CONFORMANCE_RESPONDER=\$ROCE_PEER0_IP0:7471 $bin"
