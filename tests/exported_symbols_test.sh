#!/usr/bin/env bash
# Every symbol libnn exports starts with nn_ and none is one of nanomsg's
# (Criterion links nanomsg, whose API and internals also use nn_). The static
# library's global symbols are nn_ (public) or nnlib_ (private) only.
# Usage: exported_symbols_test.sh LIBNN_SO LIBNN_A
set -euo pipefail
shared=$1
static=$2

# (awk reads all of ldconfig's output: leaving early would kill ldconfig
# with SIGPIPE, which pipefail turns into a silent failure of this script.)
nanomsg=$(ldconfig -p | awk '/libnanomsg\.so/ && !found {print $NF; found = 1}')
[ -n "$nanomsg" ] || { echo "libnanomsg not found (it comes with libcriterion-dev)"; exit 1; }
nm -D --defined-only "$nanomsg" | awk '{print $NF}' | sort -u >nanomsg.symbols
[ "$(wc -l <nanomsg.symbols)" -gt 50 ] || { echo "could not read nanomsg's symbols"; exit 1; }

nm -D --defined-only "$shared" | awk '$2 ~ /^[TDRBVWi]$/ {print $3}' | sort -u >shared.symbols
nm -g --defined-only "$static" | awk 'NF == 3 {print $3}' | sort -u >static.symbols
grep -qx nn_model_create shared.symbols || { echo "nn_model_create is not exported"; exit 1; }

status=0
if grep -v '^nn_' shared.symbols; then
  echo "^ exported from $shared without the nn_ prefix"; status=1
fi
if grep -vE '^(nn_|nnlib_)' static.symbols; then
  echo "^ global in $static without the nn_/nnlib_ prefix"; status=1
fi
if grep -q '^nnlib_' shared.symbols; then
  echo "private nnlib_ symbols leak from $shared:"; grep '^nnlib_' shared.symbols; status=1
fi
clashes=$(comm -12 <(sort -u shared.symbols static.symbols) nanomsg.symbols)
if [ -n "$clashes" ]; then
  echo "symbols shared with nanomsg ($nanomsg):"; echo "$clashes"; status=1
fi
[ $status -eq 0 ] && echo "$(wc -l <shared.symbols) exported symbols, none clashes with nanomsg's $(wc -l <nanomsg.symbols)"
exit $status
