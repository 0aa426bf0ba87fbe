#!/usr/bin/env bash
# nntrain and nnpredict as a user runs them: every bad flag exits 2 with a
# message naming it; a CSV regression and a classification train, save,
# predict; Ctrl-C (simulated at a fixed iteration) saves a checkpoint and
# --resume continues with the very costs of an uninterrupted run.
# Usage: cli_test.sh BIN_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# shellcheck source=tests/expect.sh
source "$here/expect.sh"

# Data: y = 2 a - b + 0.5 (regression) and class = (a > b) (classification).
awk 'BEGIN { srand(7); print "a,b,y,class";
  for (i = 0; i < 200; i++) { a = rand() * 2 - 1; b = rand() * 2 - 1;
    printf "%.6f,%.6f,%.6f,%d\n", a, b, 2 * a - b + 0.5, (a > b) } }' >data.csv
head -n 101 data.csv >small.csv
printf 'a,b,y,class\n1,2,3\n' >ragged.csv
printf 'not a checkpoint' >bad.safetensors

echo "== usage errors"
expect 0 "usage: nntrain" -- "$bin/nntrain" --help
expect 0 "usage: nnpredict" -- "$bin/nnpredict" --help
expect 2 "unknown or incomplete option '--bogus'" -- "$bin/nntrain" --bogus
expect 2 "unknown or incomplete option" -- "$bin/nntrain" --lr
expect 2 "--lr: 'abc' is not a number" -- "$bin/nntrain" --lr abc
expect 2 "--lr: '-1' is not a number" -- "$bin/nntrain" --lr -1
expect 2 "--epochs: '0' is not a whole number" -- "$bin/nntrain" --epochs 0
expect 2 "--batch: '-3' is not a whole number" -- "$bin/nntrain" --batch -3
expect 2 "--hidden: expected widths" -- "$bin/nntrain" --hidden 3,,4
expect 2 "--hidden" -- "$bin/nntrain" --hidden 0
expect 2 "--dropout: '1.5'" -- "$bin/nntrain" --dropout 1.5
expect 2 "--device: 'gpu'" -- "$bin/nntrain" --device gpu
expect 2 "--precision: 'fp16' is not fp32, tf32 or bf16" -- "$bin/nntrain" --precision fp16
expect 2 "--fusion: 'on' is not auto or off" -- "$bin/nntrain" --fusion on
expect 2 "--data: 'gpu'" -- "$bin/nntrain" --data gpu
expect 2 "--output: 'foo'" -- "$bin/nntrain" --output foo
expect 2 "--activation: unknown name 'softmax'" -- "$bin/nntrain" --activation softmax
expect 2 "--optimizer: unknown name 'sgd'" -- "$bin/nntrain" --optimizer sgd
expect 2 "--init: 'uniform'" -- "$bin/nntrain" --init uniform
expect 2 "--seed: 'x1'" -- "$bin/nntrain" --seed x1
expect 2 "--early-stop needs --val-split" -- "$bin/nntrain" --early-stop 3
expect 2 "needs --target" -- "$bin/nntrain" --train data.csv
expect 2 "go together" -- "$bin/nntrain" --train-x data.npy
expect 2 "not both" -- "$bin/nntrain" --train data.csv --target y --train-x a.npy
expect 2 "--l2: 'abc'" -- "$bin/nntrain" --l2 abc
expect 2 "--decay: '-1'" -- "$bin/nntrain" --decay -1
expect 2 "--val-split: '2'" -- "$bin/nntrain" --val-split 2
expect 2 "--early-stop: '0'" -- "$bin/nntrain" --early-stop 0
expect 2 "--iterations: '0'" -- "$bin/nntrain" --iterations 0
expect 2 "--print-every: '0'" -- "$bin/nntrain" --print-every 0
expect 2 "--device: 'cuda:x'" -- "$bin/nntrain" --device cuda:x
expect 2 "--test-x and --test-y go together" -- "$bin/nntrain" --train-x a.npy --train-y b.npy --test-x c.npy
expect 2 "--train FILE.csv needs --target" -- "$bin/nntrain" --test data.csv
expect 2 "unknown or incomplete option '--bogus'" -- "$bin/nnpredict" --bogus
expect 2 "--device: 'tpu'" -- "$bin/nnpredict" --model m.safetensors --x data.csv --device tpu
expect 2 "missing.safetensors" -- "$bin/nnpredict" --model missing.safetensors --x data.csv
expect 2 "unexpected argument 'extra'" -- "$bin/nntrain" extra
expect 2 "--model and --x are required" -- "$bin/nnpredict" --x data.csv
expect 2 "must end in .csv or .npy" -- "$bin/nnpredict" --model m.safetensors --x data.csv --out p.txt

echo "== bad data"
expect 2 "missing.csv" -- "$bin/nntrain" --train missing.csv --target y --device cpu
expect 2 "ragged.csv" -- "$bin/nntrain" --train ragged.csv --target y --device cpu
expect 2 "nope" -- "$bin/nntrain" --train data.csv --target nope --device cpu
expect 2 "bad.safetensors" -- "$bin/nntrain" --train data.csv --target y --resume bad.safetensors --device cpu
expect 2 "fp32 only; bf16 needs a CUDA device" -- "$bin/nntrain" --train data.csv --target y --output linear --device cpu --precision bf16
expect 2 "bad.safetensors" -- "$bin/nnpredict" --model bad.safetensors --x data.csv --target y

echo "== regression from CSV"
expect 0 "model saved to reg.safetensors" -- "$bin/nntrain" --train data.csv --target y \
  --hidden none --output linear --optimizer adam --lr 0.05 --batch 32 --epochs 60 \
  --save reg.safetensors --log reg.csv --device cpu --fusion off
[ -s reg.safetensors ] || fail "reg.safetensors was not written"
[ "$(head -n 1 reg.csv)" = "epoch,iteration,cost,validation_cost,validation_metric,test_metric" ] ||
  fail "log header: $(head -n 1 reg.csv)"
[ "$(grep -c . reg.csv)" -eq 61 ] || fail "expected 60 epoch rows in reg.csv, got $(($(grep -c . reg.csv) - 1))"
expect 0 "mse 0\.0000" -- "$bin/nnpredict" --model reg.safetensors --x data.csv --target y --out reg_pred.npy
[ -s reg_pred.npy ] || fail "reg_pred.npy was not written"
cut -d, -f1,2,3 data.csv >two_features.csv
expect 2 "2 features but the model reg.safetensors takes 3" -- "$bin/nnpredict" --model reg.safetensors --x two_features.csv --target y

echo "== classification, test set, predict"
expect 0 "test: accuracy" -- "$bin/nntrain" --train data.csv --target class --test small.csv \
  --hidden 8 --activation tanh --output sigmoid --lr 0.05 --batch 16 --epochs 30 \
  --save cls.safetensors --device cpu
expect 0 "accuracy (0\.9|1\.0)" -- "$bin/nnpredict" --model cls.safetensors --x small.csv --target class --out cls_pred.csv
[ "$(grep -c . cls_pred.csv)" -eq 101 ] || fail "cls_pred.csv should have a header and 100 rows"
expect 0 "model saved" -- "$bin/nntrain" --train data.csv --target class --hidden 8 \
  --activation tanh --output sigmoid --init cls.safetensors --epochs 1 --save init.safetensors --device cpu
expect 2 "layers" -- "$bin/nntrain" --train data.csv --target class --hidden 9 \
  --output sigmoid --init cls.safetensors --epochs 1 --save x.safetensors --device cpu

echo "== uint8 IDX images, scaled by 255 unless --no-scale"
# 6 images of 2 pixels (IDX: magic 0x00000802, dims 6 and 2, big-endian).
printf '\x00\x00\x08\x02\x00\x00\x00\x06\x00\x00\x00\x02\x00\x10\xff\xf0\x20\x00\xe0\x30\x05\x50\x90\x90' >images.idx
printf '\x00\x00\x08\x01\x00\x00\x00\x06\x00\x01\x01\x00\x00\x01' >labels.idx
expect 0 "model saved" -- "$bin/nntrain" --train-x images.idx --train-y labels.idx --hidden none \
  --output sigmoid --epochs 5 --batch full --save img.safetensors --device cpu
expect 0 "predictions written" -- "$bin/nnpredict" --model img.safetensors --x images.idx --proba --out scaled.csv
expect 0 "predictions written" -- "$bin/nnpredict" --model img.safetensors --x images.idx --proba --no-scale --out raw.csv
checks=$((checks + 1))
cmp -s scaled.csv raw.csv && fail "--no-scale made no difference to the predictions"

echo "== OpenBLAS's generic kernels: the tool starts again with the CPU's own"
# Debian's OpenBLAS takes its generic kernels on CPUs newer than it knows;
# then nntrain starts itself again with OPENBLAS_CORETYPE set, and trains as
# a run given that setting does. Elsewhere there is nothing to check.
blas_run=(--train data.csv --target y --hidden 16,16 --output linear --epochs 3 --device cpu)
env -u OPENBLAS_CORETYPE "$bin/nntrain" "${blas_run[@]}" --save blas_auto.safetensors >blas_auto.out 2>&1 ||
  fail "nntrain without OPENBLAS_CORETYPE: $(cat blas_auto.out)"
core=$(sed -n 's/.*starting again with OPENBLAS_CORETYPE=\([A-Za-z0-9]*\).*/\1/p' blas_auto.out)
if [ -n "$core" ]; then
  checks=$((checks + 1))
  [ "$(grep -c "starting again" blas_auto.out)" -eq 1 ] || fail "started again more than once: $(cat blas_auto.out)"
  checks=$((checks + 1))
  grep -q "makes the CPU's matrix products" blas_auto.out && fail "the new start still advises OPENBLAS_CORETYPE: $(cat blas_auto.out)"
  OPENBLAS_CORETYPE=$core "$bin/nntrain" "${blas_run[@]}" --save blas_set.safetensors >blas_set.out 2>&1 ||
    fail "nntrain with OPENBLAS_CORETYPE=$core: $(cat blas_set.out)"
  checks=$((checks + 1))
  grep -q "starting again" blas_set.out && fail "started again although OPENBLAS_CORETYPE was set: $(cat blas_set.out)"
  checks=$((checks + 1))
  cmp -s blas_auto.safetensors blas_set.safetensors ||
    fail "the new start trained differently from a run with OPENBLAS_CORETYPE=$core"
  expect 0 "predictions written" -- env -u OPENBLAS_CORETYPE "$bin/nnpredict" --model blas_auto.safetensors \
    --x data.csv --target y --out blas_pred.csv --device cpu
  # Started through the dynamic loader, /proc/self/exe is the loader: no new
  # start then (it would read the first flag as its own), the advice instead.
  loader=$(ldd "$bin/nntrain" | awk '/ld-linux/ {print $1; exit}')
  if [ -x "$loader" ]; then
    expect 0 "OPENBLAS_CORETYPE=$core makes" -- env -u OPENBLAS_CORETYPE "$loader" "$bin/nntrain" \
      "${blas_run[@]}" --save blas_loader.safetensors
    checks=$((checks + 1))
    env -u OPENBLAS_CORETYPE "$loader" "$bin/nntrain" "${blas_run[@]}" --save blas_loader.safetensors 2>&1 |
      grep -q "starting again" && fail "started again through the dynamic loader"
  fi
else
  echo "(OpenBLAS's kernels fit this CPU: no new start to check)"
fi

echo "== interrupt and resume"
common=(--train data.csv --target class --hidden 6 --activation relu --output sigmoid
  --optimizer adam --lr 0.01 --batch 32 --epochs 5 --dropout 0.1 --val-split 0.2 --device cpu)
expect 0 "model saved" -- "$bin/nntrain" "${common[@]}" --save whole.safetensors --log whole.csv
checks=$((checks + 1))
NNTRAIN_TEST_INTERRUPT_AT=9 "$bin/nntrain" "${common[@]}" --save part.safetensors --log part.csv >interrupt.out 2>&1
status=$?
[ $status -eq 130 ] || fail "interrupted run exited $status: $(cat interrupt.out)"
grep -q "checkpoint saved to part.safetensors" interrupt.out || fail "no checkpoint message: $(cat interrupt.out)"
expect 0 "model saved" -- "$bin/nntrain" --train data.csv --target class --resume part.safetensors \
  --save part.safetensors --log part.csv --device cpu
checks=$((checks + 1))
cmp -s whole.csv part.csv || { fail "resumed log differs from the uninterrupted one"; diff whole.csv part.csv | head; }
checks=$((checks + 1))
cmp -s whole.safetensors part.safetensors || fail "resumed model differs from the uninterrupted one"

finish
