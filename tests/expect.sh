# expect.sh — sourced by the command-line tests: counts checks and failures.
#   expect CODE PATTERN -- command...   exit status CODE and output (stdout
#                                       and stderr) matching PATTERN
#   succeeds WHAT -- command...         exit status 0: its output (stdout
#                                       and stderr) in $output, and shown;
#                                       else a failure naming WHAT, status 1
#   fail MESSAGE                        records a failure
#   finish                              prints "N passed, N failed", returns
#                                       non-zero on any failure
failures=0
checks=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

expect() {
  local code=$1 pattern=$2
  shift 3
  checks=$((checks + 1))
  local output status
  output=$("$@" 2>&1)
  status=$?
  [ "$status" -eq "$code" ] || { fail "$* -> exit $status, expected $code: $output"; return; }
  grep -qE -- "$pattern" <<<"$output" || fail "$* -> output lacks /$pattern/: $output"
}

succeeds() {
  local what=$1 status
  shift 2
  checks=$((checks + 1))
  output=$("$@" 2>&1)
  status=$?
  if [ "$status" -ne 0 ]; then
    fail "$what exited $status: $output"
    return 1
  fi
  echo "$output"
}

finish() {
  echo "$((checks - failures)) passed, $failures failed"
  [ "$failures" -eq 0 ]
}
