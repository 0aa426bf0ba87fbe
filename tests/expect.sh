# expect.sh — sourced by the command-line tests: counts checks and failures.
#   expect CODE PATTERN -- command...   exit status CODE and output (stdout
#                                       and stderr) matching PATTERN
#   succeeds WHAT -- command...         exit status 0: its output (stdout
#                                       and stderr) in $output, and shown;
#                                       else a failure naming WHAT, status 1
#   fail MESSAGE                        records a failure
#   finish                              prints "N passed, N failed", returns
#                                       non-zero on any failure
#   write_quadrants_csv FILE            a,b,class: 400 points of [-1, 1]²,
#                                       class 1 where a·b > 0 (a small task
#                                       a 2-16-16-1 network learns)
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

write_quadrants_csv() { # file
  awk 'BEGIN { srand(7); print "a,b,class";
    for (i = 0; i < 400; i++) { a = rand() * 2 - 1; b = rand() * 2 - 1;
      printf "%.6f,%.6f,%d\n", a, b, (a * b > 0) } }' >"$1"
}
