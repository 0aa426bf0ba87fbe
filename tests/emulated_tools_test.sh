#!/usr/bin/env bash
# The command-line tools on the CUDA backend, run on the CPU emulator
# (tests/cuda_emulator): nntrain trains and checkpoints on "the GPU",
# nnbench's CUDA paths (events, the cuBLAS gemm floor, the pinned upload
# rate, device memory, the device's description, graphs, fusion) give a
# record that agrees with itself, and nnbreakdown times a step part by part
# with CUDA events. The numbers are the CPU's: only their consistency is
# checked, never a speed.
# Usage: emulated_tools_test.sh BIN_DIR [PYTHON]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1
python=${2:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# shellcheck source=tests/expect.sh
source "$here/expect.sh"

echo "== nntrain on the emulated device"
write_quadrants_csv quadrants.csv
expect 0 "nntrain: cuda:0 \\(nn CUDA emulator" -- "$bin/nntrain" --device cuda \
  --train quadrants.csv --target class --hidden 16,16 --epochs 30 --batch 32 \
  --lr 0.01 --output sigmoid --save quadrants.safetensors
checks=$((checks + 1))
[ -s quadrants.safetensors ] || fail "nntrain on the emulated device saved no checkpoint"
# The quadrants task is learnt (the CPU gets 0.98 in these 30 epochs).
expect 0 "accuracy 0\\.9[0-9]* on 400 examples" -- "$bin/nnpredict" --device cuda \
  --model quadrants.safetensors --x quadrants.csv --target class --out predictions.csv

echo "== nnbench: fp32 streamed with graphs, then bf16 fused"
expect 0 "\\| gemm floor \\|" -- "$bin/nnbench" --device cuda --layers 64,64,64,10 \
  --batch 32 --data stream --warmup 2 --steps 4 --json fp32.json
expect 0 "\\| gemm floor \\|" -- "$bin/nnbench" --device cuda --layers 64,64,64,10 \
  --batch 32 --precision bf16 --warmup 2 --steps 4 --json bf16.json
checks=$((checks + 1))
"$python" - fp32.json bf16.json <<'PY' || fail "the nnbench records are wrong (above)"
import json, math, sys

problems = []

def check(condition, what):
    if not condition:
        problems.append(what)

fp32, bf16 = (json.load(open(path)) for path in sys.argv[1:3])
for name, record in (("fp32", fp32), ("bf16", bf16)):
    run, gpu = record["run"], record["environment"]["gpu"]
    check(run["backend"] == "cuda", f"{name}: backend")
    check(gpu is not None and "emulator" in gpu["name"], f"{name}: device name")
    check("CUDA events" in record["timer"], f"{name}: timer {record['timer']}")
    check("emulator" in run["device"], f"{name}: run.device")
    steps = record["step_time_ms"]
    check(0 < steps["min"] <= steps["median"] <= steps["max"], f"{name}: steps")
    floor = record["gemm_floor"]
    check(floor is not None and floor["median_ms"] > 0, f"{name}: gemm floor")
    memory = record["memory"]
    check(memory["device_used_bytes"] is not None and
          memory["device_used_bytes"] >= memory["parameters_bytes"],
          f"{name}: device memory used")
    check(memory["device_total_bytes"] >= memory["device_used_bytes"],
          f"{name}: device total")
check(fp32["run"]["data"] == "stream", "fp32: streamed")
upload = fp32["host_to_device"]
check(upload is not None and upload["pinned_copy_gb_per_s"] > 0 and
      upload["bytes_per_step"] == 64 * 32 * 4 + 10 * 32 * 4,
      f"fp32: host to device {upload}")
check(fp32["run"]["steps_graphed"] > 0, "fp32: the steps ran as graphs")
check(bf16["run"]["precision"] == "bf16", "bf16: precision")
check(bf16["run"]["fused_layers"] == 2, f"bf16: fused {bf16['run']['fused_layers']}")
check(bf16["run"]["notice"] is None, f"bf16: notice {bf16['run']['notice']}")

for problem in problems:
    print("JSON check failed:", problem)
sys.exit(1 if problems else 0)
PY

echo "== nnbench, bf16, on a cuBLASLt whose bias gradients nn cannot use"
# The emulated cuBLASLt sums the bias gradient before alpha: nn's check
# refuses the epilogue, nothing fuses, and the record and table say why.
expect 0 "\\| note \\| cuBLASLt's DRELU_BGRAD" -- env NNEMU_LT_BGRAD=before-alpha \
  "$bin/nnbench" --device cuda --layers 64,64,64,10 --batch 32 --precision bf16 \
  --warmup 2 --steps 4 --json refused.json
checks=$((checks + 1))
"$python" - refused.json <<'PY' || fail "the refused-epilogue record is wrong (above)"
import json, sys
run = json.load(open(sys.argv[1]))["run"]
notice = run["notice"] or ""
ok = run["fused_layers"] == 0 and "before the product's alpha" in notice
print("" if ok else f"fused {run['fused_layers']}, notice {notice!r}")
sys.exit(0 if ok else 1)
PY

echo "== nnbreakdown with CUDA events"
if succeeds "nnbreakdown on the emulated device" -- \
  "$bin/nnbreakdown" --layers 30,16,8,4 --batch 32 --device cuda --warmup 1 --steps 3; then
  parts=$(grep -cE '^\| (forward|cost|backward|update) \|' <<<"$output")
  [ "$parts" -eq $((2 * 3 + 3)) ] || fail "expected 9 part rows, got $parts"
fi

echo "== nnbreakdown in bf16: the hidden layers hand over in bf16"
if succeeds "nnbreakdown --precision bf16" -- "$bin/nnbreakdown" --layers 30,16,8,4 \
  --batch 32 --device cuda --precision bf16 --warmup 1 --steps 3; then
  handed=$(grep -cE '^\| forward \| [12] \|.*\| yes, bf16 out \|' <<<"$output")
  [ "$handed" -eq 2 ] || fail "expected layers 1 and 2 to hand over in bf16, got $handed rows"
fi

finish
