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
echo "default job: test accuracy $accuracy"
