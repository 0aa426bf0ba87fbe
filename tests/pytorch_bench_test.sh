#!/usr/bin/env bash
# bench/pytorch_mlp.py and bench/compare as a user runs them: bad flags exit
# 2 naming the flag; without torch pytorch_mlp exits 2 saying so and compare
# shows its runs as failed without stopping. Where python3 has torch: a
# short CPU run of pytorch_mlp and a tiny CPU comparison, whose JSON figures
# are recomputed here (step times, samples/s, FLOPs, ratios).
# Usage: pytorch_bench_test.sh NNBENCH_DIR   (python3 from PATH, or Debian's
# /usr/bin/python3 where only that one has torch: python3-torch, which
# tools/test installs)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=$here/../bench
nnbench=$(cd "$1" && pwd)/nnbench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export TORCHINDUCTOR_CACHE_DIR=$work/inductor PYTHONWARNINGS=ignore
# shellcheck source=tests/expect.sh
source "$here/expect.sh"

python=python3
if ! python3 -c 'import torch' 2>/dev/null &&
  /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  python=/usr/bin/python3
fi
echo "python: $(command -v "$python")"
pytorch=("$python" "$bench/pytorch_mlp.py")
compare=("$python" "$bench/compare")

echo "== pytorch_mlp: usage errors"
expect 0 "usage: pytorch_mlp" -- "${pytorch[@]}" --help
expect 2 "unrecognized arguments: --bogus" -- "${pytorch[@]}" --bogus
expect 2 "unrecognized arguments: extra" -- "${pytorch[@]}" extra
expect 2 "argument --preset: invalid choice: 'huge'" -- "${pytorch[@]}" --preset huge
expect 2 "argument --layers: expected" -- "${pytorch[@]}" --layers 784
expect 2 "argument --layers: expected" -- "${pytorch[@]}" --layers 784,,10
expect 2 "argument --layers: expected" -- "${pytorch[@]}" --layers 784,16,1
expect 2 "argument --layers: not allowed with argument --preset" -- "${pytorch[@]}" \
  --preset small --layers 4,3,2
expect 2 "argument --batch: '0' is not a whole number >= 1" -- "${pytorch[@]}" --batch 0
expect 2 "argument --batch: '3000000000' is more than" -- "${pytorch[@]}" --batch 3000000000
expect 2 "argument --steps: '0' is not a whole number >= 1" -- "${pytorch[@]}" --steps 0
expect 2 "argument --warmup: 'x' is not a whole number" -- "${pytorch[@]}" --warmup x
expect 2 "argument --seed: '-1' is not a whole number" -- "${pytorch[@]}" --seed=-1
expect 2 "argument --precision: invalid choice: 'fp8'" -- "${pytorch[@]}" --precision fp8
expect 2 "argument --data: invalid choice: 'gpu'" -- "${pytorch[@]}" --data gpu
expect 2 "argument --optimizer: invalid choice: 'sgd'" -- "${pytorch[@]}" --optimizer sgd
expect 2 "argument --device: 'gpu' is not cpu, cuda or cuda:N" -- "${pytorch[@]}" --device gpu
expect 2 "argument --mode: invalid choice: 'fast'" -- "${pytorch[@]}" --mode fast
expect 2 "--mode: graphs needs CUDA" -- "${pytorch[@]}" --device cpu --mode graphs
expect 2 "--precision: tf32 is a CUDA tensor-core mode" -- "${pytorch[@]}" --device cpu \
  --precision tf32

echo "== compare: usage errors"
expect 0 "usage: compare" -- "${compare[@]}" --help
expect 2 "argument --configs: 'huge': choose from" -- "${compare[@]}" --configs small,huge
expect 2 "argument --device: invalid choice: 'tpu'" -- "${compare[@]}" --device tpu
expect 2 "argument --steps: '0' is not a whole number >= 1" -- "${compare[@]}" --steps 0
expect 2 "--pytorch-mode: graphs needs --device cuda" -- "${compare[@]}" --device cpu \
  --pytorch-mode graphs
expect 2 "unrecognized arguments: extra" -- "${compare[@]}" extra

echo "== without torch: pytorch_mlp exits 2, compare marks its runs failed"
mkdir -p no-torch
echo 'raise ImportError("No module named torch (hidden by the test)")' >no-torch/torch.py
expect 2 "pytorch_mlp: torch is not installed" -- env PYTHONPATH="$work/no-torch" \
  "${pytorch[@]}" --device cpu
expect 0 "\\| tiny \\| 20-16-3 \\| 8 \\| fp32 \\| resident \\| [0-9,]+ \\| failed: exit 2: pytorch_mlp: torch is not installed" \
  -- env PYTHONPATH="$work/no-torch" "${compare[@]}" --nnbench "$nnbench" --device cpu \
  --configs tiny --pytorch-mode none
expect 1 "failed: cannot run $work/missing" -- env PYTHONPATH="$work/no-torch" \
  "${compare[@]}" --nnbench "$work/missing" --device cpu --configs tiny --pytorch-mode none

echo "== compare stopped by SIGINT keeps the configurations it finished"
# A stand-in nnbench: the real one for resident data; for the streamed
# configuration it interrupts compare (as timeout --signal=INT does) and
# hangs, as a run cut short by a time limit would.
cat >interrupting-nnbench <<STANDIN
#!/usr/bin/env bash
case " \$* " in *" stream "*) kill -INT "\$PPID"; sleep 30; exit 1 ;; esac
exec "$nnbench" "\$@"
STANDIN
chmod +x interrupting-nnbench
expect 1 "compare: interrupted after 1 of 2 configurations; the files hold those" -- \
  env PYTHONPATH="$work/no-torch" "${compare[@]}" --nnbench "$work/interrupting-nnbench" \
  --device cpu --configs tiny,tiny-stream --pytorch-mode none \
  --json partial.json --markdown partial.md
checks=$((checks + 1))
grep -q "^| tiny | 20-16-3 | 8 | fp32 | resident | [0-9,]* |" partial.md &&
  ! grep -q "tiny-stream" partial.md ||
  fail "partial.md is not the tiny row alone: $(cat partial.md)"
checks=$((checks + 1))
python3 -c 'import json, sys
document = json.load(open(sys.argv[1]))
names = [entry["name"] for entry in document["configurations"]]
sys.exit(0 if names == ["tiny"] and document["configurations"][0]["runs"]["nn"]["ok"] else 1)' \
  partial.json || fail "partial.json does not hold the finished tiny run: $(cat partial.json)"

echo "== a failed run keeps its stderr's tail and its time in compare's record"
# A stand-in nnbench that fails as a CUDA error does: the message first,
# then a line of advice, which is the last line compare shows.
cat >failing-nnbench <<'STANDIN'
#!/usr/bin/env bash
echo "Traceback-like context: cudaErrorIllegalAddress in the step" >&2
echo "Compile with TORCH_USE_CUDA_DSA to enable device-side assertions." >&2
exit 1
STANDIN
chmod +x failing-nnbench
expect 1 "failed: exit 1: Compile with TORCH_USE_CUDA_DSA" -- env PYTHONPATH="$work/no-torch" \
  "${compare[@]}" --nnbench "$work/failing-nnbench" --device cpu --configs tiny \
  --pytorch-mode none --json failed.json
checks=$((checks + 1))
python3 -c 'import json, sys
run = json.load(open(sys.argv[1]))["configurations"][0]["runs"]["nn"]
tail = run.get("stderr_tail", [])
sys.exit(0 if not run["ok"] and run["seconds"] >= 0
         and any("cudaErrorIllegalAddress" in line for line in tail) else 1)' \
  failed.json || fail "failed.json lacks the run's stderr tail or time: $(cat failed.json)"

echo "== compare's targets: at least (speed-ups), at most (the large step / floor)"
checks=$((checks + 1))
python3 - "$bench/compare" <<'PY' || fail "compare judges its targets wrongly (above)"
import importlib.machinery, importlib.util, sys

loader = importlib.machinery.SourceFileLoader("compare", sys.argv[1])
compare = importlib.util.module_from_spec(importlib.util.spec_from_loader("compare", loader))
loader.exec_module(compare)
problems = []

def check(condition, what):
    if not condition:
        problems.append(what)

large = compare.CONFIGURATIONS["large"].targets
check(("nn step/floor", "maximum", 1.10) in large and ("nn/eager", "minimum", 1.0) in large,
      f"the large configuration's targets: {large}")
# nn's step/floor comes from its record; a failed run has none.
record = {"samples_per_second": 10.0, "gemm_floor": {"step_over_floor": 1.25}}
results = {"large": {"runs": {"nn": {"ok": True, "record": record},
                              "pytorch_eager": {"ok": True, "record": {"samples_per_second": 8.0}}}}}
found = compare.ratios("large", results, "none")
check(found["nn step/floor"] == 1.25 and found["nn/eager"] == 1.25, f"ratios: {found}")
results["large"]["runs"]["nn"] = {"ok": False, "reason": "exit 1"}
check(compare.ratios("large", results, "none")["nn step/floor"] is None, "a failed run's step/floor")
judged = compare.judge([compare.at_least("up", 1.0), compare.at_most("cost", 1.10),
                        compare.at_most("over", 1.10), compare.at_most("failed", 1.10),
                        compare.at_least("absent", 1.0)],
                       {"up": 0.9, "cost": 1.05, "over": 1.2, "failed": None})
check([target["met"] for target in judged] == [False, True, False, None, None],
      f"verdicts: {judged}")
check(judged[1]["maximum"] == 1.10 and "minimum" not in judged[1], "an at-most target's record")
check([target.get("why_not") for target in judged[3:]] == ["a run failed", "not run"],
      f"why not: {judged[3:]}")
texts = [compare.target_text(target) for target in judged]
check(texts[:3] == ["up ≥ 1×: missed (0.90×)", "cost ≤ 1.1×: met (1.05×)",
                    "over ≤ 1.1×: missed (1.20×)"], f"texts: {texts}")
for problem in problems:
    print("compare check failed:", problem)
sys.exit(1 if problems else 0)
PY

if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "SKIP: torch is not installed (the runs of pytorch_mlp and compare)"
  finish
  exit
fi

echo "== pytorch_mlp: a run that fails ends with a line naming the failure"
# measure() made to fail as CUDA fails: its own last line is advice; the
# script prints the traceback, then a line of its own that names the error.
checks=$((checks + 1))
"$python" - "$bench/pytorch_mlp.py" >failure.out 2>&1 <<'PY'
import importlib.machinery, sys
script = importlib.machinery.SourceFileLoader("pytorch_mlp", sys.argv[1]).load_module()
def failing_measure(args, device):
    raise RuntimeError("CUDA error: an illegal memory access was encountered\n"
                       "Compile with TORCH_USE_CUDA_DSA to enable device-side assertions.")
script.measure = failing_measure
sys.exit(script.main(["--device", "cpu", "--layers", "4,3,2", "--batch", "2"]))
PY
status=$?
last=$(grep -v '^$' failure.out | tail -n 1)
[ "$status" -eq 1 ] && grep -q "^Traceback" failure.out &&
  [ "$last" = "pytorch_mlp: --mode eager failed: RuntimeError: CUDA error: an illegal memory access was encountered" ] ||
  fail "a failed measurement: exit $status, last line \"$last\" ($(cat failure.out))"

echo "== pytorch_mlp: the small preset on the CPU, with a record"
expect 1 "--json: cannot write missing/out.json" -- "${pytorch[@]}" --device cpu \
  --layers 20,16,3 --batch 8 --warmup 1 --steps 2 --json missing/out.json
expect 0 "\\| step time \\| median [0-9.]+ ms" -- "${pytorch[@]}" --device cpu --preset small \
  --steps 3 --warmup 1 --json out.json
checks=$((checks + 1))
ls out.json.tmp.* >/dev/null 2>&1 && fail "a temporary file was left next to out.json"
checks=$((checks + 1))
python3 - out.json <<'PY' || fail "the pytorch_mlp record is wrong (above)"
import json, math, re, sys

record = json.load(open(sys.argv[1]))
problems = []

def check(condition, what):
    if not condition:
        problems.append(what)

widths, batch = [784, 256, 256, 256, 256, 10], 256  # the small preset
products = sum(widths[l] * widths[l - 1] for l in range(1, len(widths)))
flops = batch * (6 * products - 2 * widths[1] * widths[0])
parameters = products + sum(widths[1:])
activations = (widths[0] + widths[-1] + 2 * sum(widths[1:])) * batch * 4

model, run = record["model"], record["run"]
check(record["tool"] == "pytorch_mlp" and record["schema_version"] == 1, "header")
check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["date"]), "date")
check(isinstance(record["commit"], str) and record["commit"], "commit")
check(model["layers"] == widths and model["preset"] == "small", "model")
check(model["parameters"] == parameters, "parameters")
check(run["backend"] == "cpu" and run["device"] == "cpu", "backend")
check(run["mode"] == "eager" and run["optimizer"] == "adam", "mode")
check(run["batch_size"] == batch and run["precision"] == "fp32", "batch")
check(run["warmup_steps"] == 1 and run["timed_steps"] == 3, "steps")
check(run["examples"] == run["batches_per_epoch"] * batch == 4 * batch, "examples")
check("Adam" in run["optimizer_implementation"], "optimizer implementation")

steps = record["step_time_ms"]
check(steps["count"] == 3, "timed step count")
check(0 < steps["min"] <= steps["median"] <= steps["max"], "min <= median <= max")
check(steps["min"] <= steps["mean"] <= steps["max"], "mean")
check(math.isclose(record["samples_per_second"], batch / (steps["median"] / 1e3),
                   rel_tol=1e-9), "samples/s = batch / median")
check(record["flops_per_step"] == flops, f"flops {record['flops_per_step']} != {flops}")
check(math.isclose(record["achieved_tflops"],
                   flops / (steps["median"] / 1e3) / 1e12, rel_tol=1e-9),
      "achieved TFLOP/s")
check(record["peak_tflops"] is None and record["fraction_of_peak"] is None,
      "no peak on the CPU")
check(record["gemm_floor"] is None and record["host_to_device"] is None,
      "no floor, no upload")
memory = record["memory"]
check(memory["parameters_bytes"] == 4 * parameters, "parameter bytes")
check(memory["minimum_bytes"] == 4 * 4 * parameters + activations, "minimum")
check(memory["device_used_bytes"] is None, "no device memory on the CPU")
environment = record["environment"]
check(environment["gpu"] is None and environment["torch_version"], "environment")

for problem in problems:
    print("JSON check failed:", problem)
sys.exit(1 if problems else 0)
PY

echo "== pytorch_mlp: every optimizer and precision on the CPU"
for optimizer in gd momentum rmsprop adam; do
  for precision in fp32 bf16; do
    expect 0 "\\| step time \\| median [0-9.]+ ms" -- "${pytorch[@]}" --device cpu \
      --layers 20,16,3 --batch 8 --warmup 1 --steps 2 --optimizer "$optimizer" \
      --precision "$precision"
  done
done

# torch.compile came with PyTorch 2.0; Debian 12's torch (1.13) lacks it, and
# then compare's second mode on the CPU is none.
if "$python" -c 'import sys, torch; sys.exit(0 if hasattr(torch, "compile") else 1)'; then
  second_mode=compile
  speeds="\\| [0-9,]+ \\| [0-9,]+ \\| [0-9,]+ \\|"
else
  second_mode=none
  speeds="\\| [0-9,]+ \\| [0-9,]+ \\| not run \\|"
  expect 2 "pytorch_mlp: --mode compile: torch [^ ]+ has no torch.compile" -- \
    "${pytorch[@]}" --device cpu --mode compile --layers 20,16,3 --batch 8
fi

echo "== compare: tiny resident and streamed configurations on the CPU ($second_mode beside eager)"
expect 0 "\\| tiny-stream \\| 20-16-3 \\| 8 \\| fp32 \\| stream $speeds" \
  -- "${compare[@]}" --nnbench "$nnbench" --device cpu --configs tiny,tiny-stream \
  --pytorch-mode "$second_mode" --steps 3 --json compare.json --markdown compare.md
checks=$((checks + 1))
grep -q "^| tiny | 20-16-3 | 8 | fp32 | resident |" compare.md ||
  fail "compare.md lacks the tiny row: $(cat compare.md)"
checks=$((checks + 1))
python3 - compare.json "$second_mode" <<'PY' || fail "the compare record is wrong (above)"
import json, math, sys

document = json.load(open(sys.argv[1]))
second = sys.argv[2]  # compile, or none where torch has no torch.compile
pytorch_modes = ["eager"] + ([] if second == "none" else [second])
problems = []

def check(condition, what):
    if not condition:
        problems.append(what)

def speed(entry, run):
    return entry["runs"][run]["record"]["samples_per_second"]

check(document["tool"] == "compare" and document["device"] == "cpu", "header")
check(document["pytorch_mode"] == second, f"{second} beside eager on the cpu")
entries = {entry["name"]: entry for entry in document["configurations"]}
check(list(entries) == ["tiny", "tiny-stream"], "configurations")
for name, entry in entries.items():
    runs = entry["runs"]
    check(list(runs) == ["nn"] + [f"pytorch_{mode}" for mode in pytorch_modes],
          f"{name}: runs")
    check(all(run["ok"] for run in runs.values()), f"{name}: every run ok")
    if not all(run["ok"] for run in runs.values()):
        continue
    tools = [runs[run]["record"]["tool"] for run in runs]
    check(tools == ["nnbench"] + ["pytorch_mlp"] * len(pytorch_modes), f"{name}: tools")
    modes = [runs[run]["record"]["run"]["mode"] for run in list(runs)[1:]]
    check(modes == pytorch_modes, f"{name}: modes")
    for run in runs.values():
        record = run["record"]
        check(record["run"]["timed_steps"] == 3 and record["step_time_ms"]["count"] == 3,
              f"{name}: steps")
        check(record["model"]["layers"] == [20, 16, 3] and record["run"]["batch_size"] == 8,
              f"{name}: model")
        check(record["run"]["data"] == entry["data"], f"{name}: data")
        check(record["step_time_ms"]["median"] > 0, f"{name}: step time")
    ratios = entry["ratios"]
    for mode in pytorch_modes:
        expected = speed(entry, "nn") / speed(entry, f"pytorch_{mode}")
        check(math.isclose(ratios[f"nn/{mode}"], expected, rel_tol=1e-12),
              f"{name}: nn/{mode} {ratios[f'nn/{mode}']} != {expected}")

stream, resident = entries["tiny-stream"], entries["tiny"]
if all(run["ok"] for entry in entries.values() for run in entry["runs"].values()):
    expected = speed(stream, "nn") / speed(resident, "nn")
    check(math.isclose(stream["ratios"]["nn stream/resident"], expected, rel_tol=1e-12),
          "nn stream/resident")
    target = stream["targets"][0]
    check(target["ratio"] == "nn stream/resident" and target["minimum"] == 0.95,
          "stream target")
    check(target["measured"] == stream["ratios"]["nn stream/resident"]
          and target["met"] == (target["measured"] >= 0.95), "stream target judged")
check(resident["targets"] == [], "no target for tiny")

for problem in problems:
    print("JSON check failed:", problem)
sys.exit(1 if problems else 0)
PY

finish
