#!/usr/bin/env bash
# nnbench as a user runs it: every bad flag exits 2 with a message naming
# it; a short CPU run prints the table and writes a JSON record whose
# figures agree with each other and with the formulas recomputed here.
# Usage: nnbench_test.sh BIN_DIR [PYTHON]
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

nnbench=$bin/nnbench

echo "== usage errors"
expect 0 "usage: nnbench" -- "$nnbench" --help
expect 2 "unknown or incomplete option '--bogus'" -- "$nnbench" --bogus
expect 2 "unknown or incomplete option" -- "$nnbench" --steps
expect 2 "unexpected argument 'extra'" -- "$nnbench" extra
expect 2 "--preset: 'huge' is not small, medium or large" -- "$nnbench" --preset huge
expect 2 "--layers: expected" -- "$nnbench" --layers 784,,10
expect 2 "--layers: expected" -- "$nnbench" --layers 784
expect 2 "--layers: expected" -- "$nnbench" --layers 784,0,10
expect 2 "--layers: expected" -- "$nnbench" --layers 784,16,1
expect 2 "--layers: expected" -- "$nnbench" --layers 784,-5,10
expect 2 "--layers: expected" -- "$nnbench" --layers 784,16,
expect 2 "either --preset or --layers" -- "$nnbench" --preset small --layers 4,3,2
expect 2 "computes in fp32 only; bf16 needs a CUDA device" -- "$nnbench" --device cpu --precision bf16 --warmup 1 --steps 1
expect 2 "computes in fp32 only; tf32 needs a CUDA device" -- "$nnbench" --device cpu --precision tf32 --warmup 1 --steps 1
expect 2 "--precision: 'fp8' is not fp32, tf32 or bf16" -- "$nnbench" --precision fp8
expect 2 "--graphs: 'on' is not auto or off" -- "$nnbench" --graphs on
expect 2 "--fusion: 'on' is not auto or off" -- "$nnbench" --fusion on
expect 2 "--steps: '0' is not a whole number >= 1" -- "$nnbench" --steps 0
expect 2 "--warmup: '0' is not a whole number >= 1" -- "$nnbench" --warmup 0
expect 2 "--batch: '0' is not a whole number >= 1" -- "$nnbench" --batch 0
expect 2 "--batch: '3000000000' is more than" -- "$nnbench" --batch 3000000000
expect 2 "--data: 'gpu' is not resident or stream" -- "$nnbench" --data gpu
expect 2 "--optimizer: 'sgd'" -- "$nnbench" --optimizer sgd
expect 2 "--device: 'gpu'" -- "$nnbench" --device gpu
expect 2 "--seed: 'x'" -- "$nnbench" --seed x

echo "== a short CPU run, streamed, without a record"
expect 0 "\\| step time \\| median" -- "$nnbench" --device cpu --layers 20,16,3 --batch 8 \
  --data stream --optimizer momentum --warmup 1 --steps 3
expect 1 "--json: cannot write missing/out.json" -- "$nnbench" --device cpu --layers 20,16,3 \
  --batch 8 --warmup 1 --steps 2 --json missing/out.json

echo "== the small preset on the CPU, with a record"
expect 0 "\\| gemm floor \\| [0-9.]+ ms per step" -- "$nnbench" --device cpu --preset small \
  --batch 64 --warmup 2 --steps 5 --json out.json
checks=$((checks + 1))
ls out.json.tmp.* >/dev/null 2>&1 && fail "a temporary file was left next to out.json"
checks=$((checks + 1))
"$python" - out.json <<'PY' || fail "the JSON record is wrong (above)"
import json, math, re, sys

record = json.load(open(sys.argv[1]))
problems = []

def check(condition, what):
    if not condition:
        problems.append(what)

widths = [784, 256, 256, 256, 256, 10]  # the small preset
batch = 64
layers = range(1, len(widths))
# forward and dW for every layer, dA for every layer but the first
flops = sum((2 if l == 1 else 3) * 2 * widths[l] * widths[l - 1] * batch
            for l in layers)
parameters = sum(widths[l] * widths[l - 1] + widths[l] for l in layers)
activations = (widths[0] + widths[-1] + 2 * sum(widths[1:])) * batch * 4
minimum = 4 * parameters * 4 + activations  # params, grads, adam m and s

model, run = record["model"], record["run"]
check(record["tool"] == "nnbench" and record["schema_version"] == 1, "header")
check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["date"]), "date")
check(isinstance(record["commit"], str) and record["commit"], "commit")
check(model["layers"] == widths and model["preset"] == "small", "model")
check(model["parameters"] == parameters, "parameters")
check(run["backend"] == "cpu" and run["device"] == "cpu", "backend")
check(run["batch_size"] == batch and run["precision"] == "fp32", "batch")
check(run["step_graphs"] == "auto" and run["steps_graphed"] == 0, "no graphs on the CPU")
check(run["fusion"] == "auto" and run["fused_layers"] == 0, "nothing fused on the CPU")
check("notice" in run and run["notice"] is None, f"nothing noted: {run.get('notice')}")
check(run["steps_run"] >= run["warmup_steps"] + run["timed_steps"], "steps run")
check(run["data"] == "resident" and run["optimizer"] == "adam", "data")
check(run["warmup_steps"] == 2 and run["timed_steps"] == 5, "steps")
check(run["examples"] == run["batches_per_epoch"] * batch, "examples")
check("host clock" in record["timer"], "timer")

steps = record["step_time_ms"]
check(steps["count"] == 5, "timed step count")
check(0 < steps["min"] <= steps["median"] <= steps["max"], "min <= median <= max")
check(steps["min"] <= steps["mean"] <= steps["max"], "mean")
check(record["samples_per_second"] > 0, "samples/s")
check(math.isclose(record["samples_per_second"], batch / (steps["median"] / 1e3),
                   rel_tol=1e-9), "samples/s = batch / median")
check(record["flops_per_step"] == flops, f"flops {record['flops_per_step']} != {flops}")
check(math.isclose(record["achieved_tflops"],
                   flops / (steps["median"] / 1e3) / 1e12, rel_tol=1e-9),
      "achieved TFLOP/s")
check(record["peak_tflops"] is None and record["fraction_of_peak"] is None,
      "no peak on the CPU")

floor = record["gemm_floor"]
check(floor["median_ms"] > 0 and floor["min_ms"] <= floor["median_ms"], "floor")
check(floor["gemms_per_step"] == 3 * (len(widths) - 1) - 1, "gemms per step")
check(math.isclose(floor["step_over_floor"], steps["median"] / floor["median_ms"],
                   rel_tol=1e-9), "step / floor")
check(record["host_to_device"] is None, "no upload on the CPU")

memory = record["memory"]
check(memory["parameters_bytes"] == 4 * parameters, "parameter bytes")
check(memory["minimum_bytes"] == minimum, f"minimum {memory['minimum_bytes']} != {minimum}")
check(memory["library_layout_bytes"] >= memory["minimum_bytes"], "layout >= minimum")
check(memory["device_used_bytes"] is None, "no device memory on the CPU")

environment = record["environment"]
check(environment["cpu_cores"] >= 1 and environment["gpu"] is None, "environment")
check(isinstance(environment.get("blas_core"), str) and environment["blas_core"], "environment.blas_core names OpenBLAS's kernels")

for problem in problems:
    print("JSON check failed:", problem)
sys.exit(1 if problems else 0)
PY

finish
