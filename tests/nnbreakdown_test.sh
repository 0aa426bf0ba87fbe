#!/usr/bin/env bash
# nnbreakdown as a developer runs it: bad flags exit 2 naming the flag; a
# short CPU run prints one row per part of the step — each layer's forward,
# the cost, the output gradient, each layer's backward (top down), the
# update — and a step row equal to the sum of the parts.
# Usage: nnbreakdown_test.sh BIN_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# shellcheck source=tests/expect.sh
source "$here/expect.sh"
tool=$bin/nnbreakdown

echo "== usage errors"
expect 0 "usage: nnbreakdown" -- "$tool" --help
expect 2 "--layers is required" -- "$tool"
expect 2 "unknown or incomplete option '--bogus'" -- "$tool" --bogus
expect 2 "--layers: expected" -- "$tool" --layers 20,0,3
expect 2 "--layers: expected" -- "$tool" --layers 20,16,
expect 2 "--layers: expected" -- "$tool" --layers 20,16,1
expect 2 "--batch: '0' is not a whole number >= 1" -- "$tool" --layers 20,3 --batch 0
expect 2 "--precision: 'fp8'" -- "$tool" --layers 20,3 --precision fp8
expect 2 "--fusion: 'on'" -- "$tool" --layers 20,3 --fusion on
expect 2 "--device: 'gpu'" -- "$tool" --layers 20,3 --device gpu
expect 1 "fp32 only" -- "$tool" --layers 20,3 --device cpu --precision bf16

echo "== a CPU run"
if succeeds "CPU run" -- "$tool" --layers 30,16,8,4 --batch 32 --device cpu --warmup 1 --steps 5; then
  parts=$(grep -cE '^\| (forward|cost|backward|update) \|' <<<"$output")
  [ "$parts" -eq $((2 * 3 + 3)) ] || fail "expected 9 part rows, got $parts"
  order=$(awk -F' *\\| *' '/^\| (forward|cost|backward|update) \|/ {printf "%s:%s ", $2, $3}' <<<"$output")
  [ "$order" = "forward:1 forward:2 forward:3 cost: backward:dZ[L] = A - Y backward:3 backward:2 backward:1 update: " ] ||
    fail "parts out of order: $order"
  # Each row is printed to 4 decimals: the sum may be off by half a unit of
  # the last place per row.
  awk -F' *\\| *' '/^\| (forward|cost|backward|update) \|/ {sum += $6; rows++} /^\| step \|/ {step = $6}
    END {d = sum - step; if (d < 0) d = -d; exit !(step > 0 && d <= 0.00005 * (rows + 1))}' <<<"$output" ||
    fail "the parts do not add up to the step"
fi
finish
