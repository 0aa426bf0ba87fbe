#!/usr/bin/env bash
# Installs the built tree into a temporary prefix and builds the example
# program against it every way a user would: pkg-config (shared and static)
# and CMake's find_package(nn) (nn::nn and nn::nn_static). Runs each build.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build_dir" --prefix "$prefix" >/dev/null
pc_file=$(find "$prefix" -name nn.pc)
[ -n "$pc_file" ] || { echo "no nn.pc installed under $prefix"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc_file")
libdir=$(pkg-config --variable=libdir nn)
for file in "$libdir/libnn.so" "$libdir/libnn.a" "$prefix/include/nn.h" \
  "$libdir/cmake/nn/nnConfig.cmake"; do
  [ -e "$file" ] || { echo "missing after install: $file"; exit 1; }
done

example=$source_dir/examples/train_xor.c
echo "== pkg-config, shared"
# shellcheck disable=SC2046
cc "$example" $(pkg-config --cflags nn) -o "$work/xor_pc_shared" $(pkg-config --libs nn)
# (grep >/dev/null, not grep -q, after ldd: with pipefail, grep -q leaving
# early can kill ldd with SIGPIPE and fail a check that passed.)
ldd "$work/xor_pc_shared" | grep "$libdir/libnn.so" >/dev/null ||
  { echo "pkg-config shared build does not use the installed libnn.so"; exit 1; }
"$work/xor_pc_shared"

echo "== pkg-config, static"
static_libs=$(pkg-config --static --libs nn | sed 's/-lnn\b/-l:libnn.a/')
# shellcheck disable=SC2086
cc "$example" $(pkg-config --cflags nn) -o "$work/xor_pc_static" $static_libs
if ldd "$work/xor_pc_static" | grep libnn.so >/dev/null; then
  echo "static build still links libnn.so"; exit 1
fi
"$work/xor_pc_static"

echo "== find_package(nn)"
cmake -S "$source_dir/examples" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/consumer" -j2 >/dev/null
"$work/consumer/train_xor"
"$work/consumer/train_xor_static"
if ldd "$work/consumer/train_xor_static" | grep libnn.so >/dev/null; then
  echo "nn::nn_static links libnn.so"; exit 1
fi
echo "install test passed"
