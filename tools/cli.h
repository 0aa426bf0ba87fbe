/*
 * cli.h — what nntrain and nnpredict share: argument parsing helpers, the
 * mapping from nn_status to exit codes, loading data from flags.
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad data.
 */
#ifndef NN_TOOLS_CLI_H
#define NN_TOOLS_CLI_H

#include <nn.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { EXIT_USAGE = 2 };

/* Prints "program: message" to stderr. */
void cli_error(const char *program, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* 1 for failures of the machine (memory, GPU, numerics), 2 for failures of
 * the input (flags, data, files). */
int cli_exit_code(nn_status status);

/* Reports a failed library call (with the context's message) and returns the
 * exit code for it. */
int cli_fail(const char *program, nn_context *ctx, nn_status status);

/* Strict number parsing: the whole text must be a number in range. On
 * failure prints "program: --flag: ..." and returns false. */
bool cli_parse_size(const char *program, const char *flag, const char *text,
                    size_t minimum, size_t *out);
bool cli_parse_u64(const char *program, const char *flag, const char *text,
                   uint64_t *out);
bool cli_parse_float(const char *program, const char *flag, const char *text,
                     double minimum, double maximum, float *out);

/* "auto", "cpu", "cuda" or "cuda:N". */
bool cli_parse_device(const char *program, const char *text,
                      nn_backend_kind *kind, int *index);

/* Remembers main's argv (NULL-terminated), so that cli_open_context may
 * start the program again with faster OpenBLAS kernels. */
void cli_keep_arguments(char **argv);

/* Creates the context, printing the fallback notice if AUTO chose the CPU.
 * A CPU context on which OpenBLAS chose kernels slower than the CPU's
 * (nn_context_faster_blas_core) first starts the program again with
 * OPENBLAS_CORETYPE set, when cli_keep_arguments was called. */
int cli_open_context(const char *program, nn_backend_kind kind, int index,
                     nn_context **out);

/* Loads data named on the command line: a CSV with a target column, or
 * X/Y files (IDX, .npy, file.h5:dataset). y_path/target may be NULL. */
nn_status cli_load(nn_context *ctx, const char *x_or_csv_path,
                   const char *y_path, const char *csv_target, bool is_csv,
                   const nn_load_options *options, nn_dataset **out);

/* Target encoding that a model's loss expects; scale_uint8 divides uint8
 * inputs by 255. */
nn_load_options cli_load_options_for(nn_loss loss, size_t output_units,
                                     bool scale_uint8);

/* True when path ends with suffix. */
bool cli_has_suffix(const char *path, const char *suffix);

/* Monotonic seconds. */
double cli_now(void);

/* The context's notice now, copied whole (NULL when out of memory): what
 * cli_new_notice compares with once the library has run, to tell whether
 * it left a note (a fast path it gave up while training). */
char *cli_notice_snapshot(const nn_context *ctx);
/* The notes the context added since snapshot (the library appends them,
 * "; " between), else NULL (also for a NULL snapshot); frees snapshot. */
const char *cli_new_notice(const nn_context *ctx, char *snapshot);

#endif
