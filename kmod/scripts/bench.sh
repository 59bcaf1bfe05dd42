#!/usr/bin/env bash
# The hook's cost, measured with Debian's fio on brd under qemu (TCG): 4 KiB
# random and 1 MiB sequential O_DIRECT I/O at queue depth 1 and 32, on the
# kernel without the patch series ("unpatched", a tree of its own, built once),
# on the patched kernel with nothing attached (the static key off), attached
# in pass-through, and through dm-linear on the same device; with ratios, and
# the I/O stall each attach and detach causes under 4 writers.
#
# Usage: bench.sh [--raw]   (--raw: the "bench:" lines, not the table)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
echo "bench: the unpatched kernel (a first run builds it, about 13 minutes)" >&2
QUIESCE_MODE=bench QUIESCE_KERNEL=plain bash "$here/scripts/boottest.sh" | grep '^bench: ' >>"$lines"
echo "bench: the patched kernel" >&2
QUIESCE_MODE=bench bash "$here/scripts/boottest.sh" | grep '^bench: ' >>"$lines"
if [ "${1:-}" = --raw ]; then cat "$lines"; else awk -f "$here/bench/table.awk" "$lines"; fi
