/*
 * cli.c — helpers shared by the command-line tools.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void cli_error(const char *program, const char *format, ...) {
  va_list args;
  va_start(args, format);
  fprintf(stderr, "%s: ", program);
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
}

int cli_exit_code(nn_status status) {
  switch (status) {
  case NN_OK:
    return 0;
  case NN_ERROR_INVALID_ARGUMENT:
  case NN_ERROR_INVALID_SPEC:
  case NN_ERROR_SHAPE_MISMATCH:
  case NN_ERROR_INVALID_DATA:
  case NN_ERROR_IO:
  case NN_ERROR_FORMAT:
  case NN_ERROR_UNSUPPORTED:
    return EXIT_USAGE;
  default:
    return 1;
  }
}

int cli_fail(const char *program, nn_context *ctx, nn_status status) {
  cli_error(program, "%s: %s", nn_status_str(status),
            nn_context_last_error(ctx));
  return cli_exit_code(status);
}

bool cli_parse_size(const char *program, const char *flag, const char *text,
                    size_t minimum, size_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno || end == text || *end || text[0] == '-' || value < minimum) {
    cli_error(program, "%s: '%s' is not a whole number >= %zu", flag, text,
              minimum);
    return false;
  }
  *out = (size_t)value;
  return true;
}

bool cli_parse_u64(const char *program, const char *flag, const char *text,
                   uint64_t *out) {
  size_t value = 0;
  if (!cli_parse_size(program, flag, text, 0, &value))
    return false;
  *out = value;
  return true;
}

bool cli_parse_float(const char *program, const char *flag, const char *text,
                     double minimum, double maximum, float *out) {
  char *end = NULL;
  errno = 0;
  double value = strtod(text, &end);
  if (errno || end == text || *end || !isfinite(value) || value < minimum ||
      value > maximum) {
    cli_error(program, "%s: '%s' is not a number in [%g, %g]", flag, text,
              minimum, maximum);
    return false;
  }
  *out = (float)value;
  return true;
}

bool cli_parse_device(const char *program, const char *text,
                      nn_backend_kind *kind, int *index) {
  *index = 0;
  if (strcmp(text, "auto") == 0) {
    *kind = NN_BACKEND_AUTO;
    return true;
  }
  if (strcmp(text, "cpu") == 0) {
    *kind = NN_BACKEND_CPU;
    return true;
  }
  if (strcmp(text, "cuda") == 0) {
    *kind = NN_BACKEND_CUDA;
    return true;
  }
  size_t number = 0;
  if (strncmp(text, "cuda:", 5) == 0 &&
      cli_parse_size(program, "--device", text + 5, 0, &number) &&
      number < 1024) {
    *kind = NN_BACKEND_CUDA;
    *index = (int)number;
    return true;
  }
  cli_error(program, "--device: '%s' is not auto, cpu, cuda or cuda:N", text);
  return false;
}

/* main's argv, for restart_with_blas_core; NULL: never restart. */
static char **program_arguments;

void cli_keep_arguments(char **argv) {
  program_arguments = argv;
}

/* Whether starting /proc/self/exe again runs this program as it runs now:
 * not when it was started through the dynamic loader
 * (`ld-linux-x86-64.so.2 ./nntrain ...`: /proc/self/exe is the loader,
 * which would take the program's first argument for its own), nor under
 * valgrind (the new start would leave it). */
static bool may_start_again(void) {
  const char *preload = getenv("LD_PRELOAD");
  if (preload && strstr(preload, "vgpreload"))
    return false;
  char path[4096];
  ssize_t length = readlink("/proc/self/exe", path, sizeof path - 1);
  if (length <= 0)
    return false;
  path[length] = '\0';
  const char *slash = strrchr(path, '/');
  const char *name = slash ? slash + 1 : path;
  return !(strncmp(name, "ld-", 3) == 0 && strstr(name, ".so"));
}

/* Debian's OpenBLAS takes slow generic kernels on CPUs newer than it knows
 * and reads OPENBLAS_CORETYPE only when it loads
 * (nn_context_faster_blas_core), so the program starts itself again, same
 * arguments, with that in its environment. Nothing has been written or
 * computed yet; nntrain's main thread may be reading the data files (they
 * are opened close-on-exec), which is why the new environment is a copy
 * given to execve, not setenv's: another thread may call getenv meanwhile.
 * Returns only if the new start failed, and the program goes on with
 * OpenBLAS's own choice. */
static void restart_with_blas_core(const char *program, const char *core) {
  extern char **environ;
  if (!program_arguments || !may_start_again())
    return;
  size_t count = 0;
  while (environ[count])
    count++;
  char setting[64];
  snprintf(setting, sizeof setting, "OPENBLAS_CORETYPE=%s", core);
  char **environment = malloc((count + 2) * sizeof *environment);
  if (!environment)
    return;
  memcpy(environment, environ, count * sizeof *environment);
  environment[count] = setting;
  environment[count + 1] = NULL;
  cli_error(program,
            "OpenBLAS chose generic kernels for this CPU: starting again "
            "with %s (set OPENBLAS_CORETYPE to choose)",
            setting);
  fflush(NULL);
  execve("/proc/self/exe", program_arguments, environment);
  cli_error(program,
            "could not start again (%s): going on with OpenBLAS's "
            "generic kernels",
            strerror(errno));
  free(environment);
}

int cli_open_context(const char *program, nn_backend_kind kind, int index,
                     nn_context **out) {
  char message[1024];
  nn_status status =
      nn_context_create(kind, index, out, message, sizeof message);
  if (status != NN_OK) {
    cli_error(program, "%s: %s", nn_status_str(status), message);
    return status == NN_ERROR_NO_DEVICE ? EXIT_USAGE : cli_exit_code(status);
  }
  const char *faster_core = nn_context_faster_blas_core(*out);
  if (faster_core)
    restart_with_blas_core(program, faster_core);
  if (nn_context_notice(*out)[0])
    cli_error(program, "%s", nn_context_notice(*out));
  return 0;
}

nn_status cli_load(nn_context *ctx, const char *x_or_csv_path,
                   const char *y_path, const char *csv_target, bool is_csv,
                   const nn_load_options *options, nn_dataset **out) {
  if (is_csv)
    return nn_dataset_load_csv(ctx, x_or_csv_path, csv_target, options, out);
  return nn_dataset_load(ctx, x_or_csv_path, y_path, options, out);
}

nn_load_options cli_load_options_for(nn_loss loss, size_t output_units,
                                     bool scale_uint8) {
  nn_load_options options;
  nn_load_options_default(&options);
  options.scale_uint8 = scale_uint8;
  switch (loss) {
  case NN_LOSS_CATEGORICAL_CROSS_ENTROPY:
    options.targets = NN_TARGETS_CLASSES;
    options.class_count = output_units;
    break;
  case NN_LOSS_BINARY_CROSS_ENTROPY:
    options.targets = NN_TARGETS_BINARY;
    break;
  default:
    options.targets = NN_TARGETS_VALUES;
    break;
  }
  return options;
}

bool cli_has_suffix(const char *path, const char *suffix) {
  size_t length = strlen(path), suffix_length = strlen(suffix);
  return length >= suffix_length &&
         strcmp(path + length - suffix_length, suffix) == 0;
}

double cli_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

char *cli_notice_snapshot(const nn_context *ctx) {
  return strdup(nn_context_notice(ctx));
}

const char *cli_new_notice(const nn_context *ctx, char *snapshot) {
  const char *now = nn_context_notice(ctx);
  const char *added = NULL;
  if (snapshot && strcmp(snapshot, now) != 0) {
    const size_t kept = strlen(snapshot);
    added = now;
    if (kept > 0 && strncmp(now, snapshot, kept) == 0)
      added = now + kept + strspn(now + kept, "; ");
  }
  free(snapshot);
  return added && *added ? added : NULL;
}
