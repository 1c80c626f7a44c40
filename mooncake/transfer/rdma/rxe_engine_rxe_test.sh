#!/usr/bin/env bash
# The engine's RDMA route on rdma_rxe in two qemu guests: guest 0 supervises a storage peer,
# guest 1 runs rxe_engine_test against it, over erdma_0 and erdma_1 with RoCE v2 over IPv4
# (MC_GID_INDEX=1) and a 512-byte path MTU (MC_MTU), which the test checks in the kernel counters.
set -uo pipefail
bin="$(readlink -f mooncake/transfer/rdma/rxe_engine_test)"
peer="$(readlink -f mooncake/transfer/transfer_peer)"
exec "$(readlink -f tools/rxe_test)" --timeout 400 \
  "MC_GID_INDEX=1 MC_MTU=512 $bin --supervise=$peer" \
  "MC_GID_INDEX=1 MC_MTU=512 $bin"
