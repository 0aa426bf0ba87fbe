#!/usr/bin/env bash
# nntrain's threads under ThreadSanitizer: a new run opens its device on a
# thread of its own while the main thread reads the data files; the
# streamed feeder gathers batches on producer threads; a run on a CPU
# whose OpenBLAS chose generic kernels starts itself again (execve) with
# the same arguments. Each run must train, exit 0 and leave no
# ThreadSanitizer report.
#
# Criterion cannot start under TSan here ("Could not initialize
# inheritable arena"), so the library's threads are checked through the
# tool. OpenBLAS runs one thread: its workers hand results back through
# spin-waits TSan cannot see (an uninstrumented library), which it would
# report as races on every product's output.
#
# With EMULATED_NNTRAIN, an nntrain of the CUDA backend on the CPU emulator
# (tests/cuda_emulator, whose streams run on threads of their own) built
# with TSan too: streamed runs there also check the producers, the copy
# stream and the compute stream against each other, through the events
# that order them.
# Usage: tsan_threads_test.sh NNTRAIN [EMULATED_NNTRAIN]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
absolute() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
nntrain=$(absolute "$1")
emulated=${2:+$(absolute "$2")}
fashion=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 ${TSAN_OPTIONS:-}"
# shellcheck source=tests/expect.sh
source "$here/expect.sh"

# No report, and the run's summary line, in what succeeds captured.
clean() { # what
  checks=$((checks + 1))
  if grep -q "ThreadSanitizer" <<<"$output"; then
    fail "$1: ThreadSanitizer reported (above)"
    printf '%s\n' "$output" | sed -n '/WARNING: ThreadSanitizer/,/SUMMARY/p' | head -40
  elif ! grep -q "^phases: " <<<"$output"; then
    fail "$1: no summary"
  fi
}

write_quadrants_csv quadrants.csv

echo "== a CSV run, streamed, with a validation split (OpenBLAS's core set)"
succeeds "streamed CSV run" -- env OPENBLAS_CORETYPE=Prescott "$nntrain" \
  --device cpu --train quadrants.csv --target class --hidden 16,16 --epochs 3 \
  --batch 32 --output sigmoid --data stream --val-split 0.2 \
  --save csv.safetensors && clean "streamed CSV run"

# The runs below leave OPENBLAS_CORETYPE as it is: unset, nntrain starts
# again where OpenBLAS took generic kernels.
if [ -r "$fashion/train-images-idx3-ubyte.gz" ]; then
  echo "== Fashion-MNIST: the device opened while the .gz files load"
  succeeds "Fashion-MNIST run" -- "$nntrain" --device cpu --iterations 20 \
    --save fashion.safetensors && clean "Fashion-MNIST run"
  echo "== Fashion-MNIST, streamed"
  succeeds "streamed Fashion-MNIST run" -- "$nntrain" --device cpu \
    --iterations 20 --data stream --save fashion2.safetensors &&
    clean "streamed Fashion-MNIST run"
else
  echo "note: no Fashion-MNIST in $fashion: its runs skipped"
fi

if [ -n "$emulated" ]; then
  # 3000 examples of 32 features in 4 classes: 47 batches of 64 an epoch,
  # many more than the feeder's staging buffers.
  awk 'BEGIN { srand(11); printf "f0"; for (i = 1; i < 32; i++) printf ",f%d", i;
    print ",class";
    for (j = 0; j < 3000; j++) { s0 = 0; s1 = 0;
      for (i = 0; i < 32; i++) { v = rand() * 2 - 1; printf "%.5f,", v;
        if (i % 2) s0 += v; else s1 += v }
      printf "%d\n", (s0 > 0) * 2 + (s1 > 0) } }' >blobs.csv
  for precision in fp32 bf16; do
    echo "== the emulated GPU, streamed, $precision"
    succeeds "emulated $precision run" -- "$emulated" --device cuda \
      --train blobs.csv --target class --hidden 64,64 --epochs 2 --batch 64 \
      --data stream --precision "$precision" --save "blobs-$precision.safetensors" &&
      clean "emulated $precision run"
  done
fi

finish
