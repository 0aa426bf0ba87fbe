#!/usr/bin/env bash
# The main job: nntrain with no arguments trains the default network on
# Fashion-MNIST and must reach at least 0.88 test accuracy, print its summary
# and save the model. (How fast is for the benchmarks, not asserted here.)
# Usage: default_job_test.sh BIN_DIR
set -euo pipefail
bin=$1
if [ ! -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$bin/nntrain" --device cpu | tee out.txt
accuracy=$(awk '/^test: accuracy/ {print $3}' out.txt)
[ -n "$accuracy" ] || { echo "no test accuracy in the summary"; exit 1; }
awk -v a="$accuracy" 'BEGIN { exit !(a >= 0.88) }' ||
  { echo "test accuracy $accuracy < 0.88"; exit 1; }
grep -q "^model saved to model.safetensors" out.txt && [ -s model.safetensors ] ||
  { echo "the model was not saved"; exit 1; }
# The phases: training is the "time:" line's figure, reading 30 MB of .gz
# takes a measurable time, and the parts add up to no more than the whole.
phases=$(grep '^phases:' out.txt) || { echo "no phases line"; exit 1; }
training=$(awk '/^time:/ {print $2}' out.txt)
awk -v line="$phases" -v training="$training" 'BEGIN {
  n = split(line, word, /[ ,;]+/)
  for (k = 1; k < n; k++) if (word[k + 1] == "s") value[word[k - 1]] = word[k]
  since = line; sub(/ s since start.*/, "", since); sub(/.*; /, "", since)
  opening = value["context"] + value["data"]
  # "context X s and data Y s at once": the two overlapped.
  if (line ~ /at once/) opening = value["context"] > value["data"] ? value["context"] : value["data"]
  sum = opening + value["model"] + value["training"] + value["evaluation"] + value["saving"]
  if (value["training"] != training) { print "phases: training " value["training"] " but time: " training; exit 1 }
  if (!(value["data"] > 0)) { print "phases: no time for reading the data"; exit 1 }
  if (!(value["evaluation"] > 0)) { print "phases: no time for the evaluation"; exit 1 }
  if (!(since > 0) || sum > since + 0.02) { print "phases add up to " sum " s, more than the " since " s since start"; exit 1 }
}' || { echo "in: $phases"; exit 1; }
echo "default job: test accuracy $accuracy; $phases"
