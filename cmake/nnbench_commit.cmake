# Writes OUTPUT with
#   #define NNBENCH_COMMIT "<git describe --always --dirty>"
# ("unknown" outside a git checkout), touching it only when the text
# changes, so nnbench recompiles only when the commit does.
# Usage: cmake -DSOURCE_DIR=... -DOUTPUT=... -P nnbench_commit.cmake
execute_process(
  COMMAND git describe --always --dirty
  WORKING_DIRECTORY ${SOURCE_DIR}
  OUTPUT_VARIABLE commit
  RESULT_VARIABLE result
  OUTPUT_STRIP_TRAILING_WHITESPACE
  ERROR_QUIET)
if(NOT result EQUAL 0 OR commit STREQUAL "")
  set(commit unknown)
endif()
file(WRITE ${OUTPUT}.new "#define NNBENCH_COMMIT \"${commit}\"\n")
file(COPY_FILE ${OUTPUT}.new ${OUTPUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUTPUT}.new)
