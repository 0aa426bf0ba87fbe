/*
 * nnpredict — predictions of a saved model on a data file, and accuracy (or
 * MSE) when labels are given.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const program = "nnpredict";

typedef struct predict_config {
  const char *model_path, *x_path, *y_path, *out_path, *target;
  bool probabilities;
  bool no_scale; /* keep uint8 inputs as 0..255, as the model was trained */
  nn_backend_kind device;
  int device_index;
} predict_config;

static void usage(FILE *out) {
  fprintf(out,
          "usage: nnpredict --model FILE.safetensors --x PATH [--y PATH]\n"
          "                 [--out FILE.csv|FILE.npy] [--proba] [--no-scale] "
          "[--device auto|cpu|cuda[:N]]\n"
          "PATH is IDX (.gz), .npy, file.h5:dataset, or a CSV (then "
          "--target COLUMN\n"
          "names the label column, which is left out of the inputs).\n"
          "--out writes one row per example: the class (or value), or with "
          "--proba the\n"
          "output probabilities. Without --out, predictions go to stdout.\n"
          "uint8 inputs are divided by 255 as nntrain does; --no-scale keeps "
          "0..255\n"
          "(for a model trained with nntrain --no-scale).\n"
          "Exit status: 0 ok, 1 runtime failure, 2 bad usage or data.\n");
}

static int parse_arguments(int argc, char **argv, predict_config *config) {
  static const struct option options[] = {
      {"model", required_argument, NULL, 'm'},
      {"x", required_argument, NULL, 'x'},
      {"y", required_argument, NULL, 'y'},
      {"out", required_argument, NULL, 'o'},
      {"target", required_argument, NULL, 't'},
      {"proba", no_argument, NULL, 'p'},
      {"no-scale", no_argument, NULL, 's'},
      {"device", required_argument, NULL, 'd'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int flag;
  opterr = 0;
  while ((flag = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (flag) {
    case 'm':
      config->model_path = optarg;
      break;
    case 'x':
      config->x_path = optarg;
      break;
    case 'y':
      config->y_path = optarg;
      break;
    case 'o':
      config->out_path = optarg;
      break;
    case 't':
      config->target = optarg;
      break;
    case 'p':
      config->probabilities = true;
      break;
    case 's':
      config->no_scale = true;
      break;
    case 'd':
      if (!cli_parse_device(program, optarg, &config->device,
                            &config->device_index))
        return EXIT_USAGE;
      break;
    case 'h':
      usage(stdout);
      return -1;
    default:
      cli_error(program, "unknown or incomplete option '%s' (see --help)",
                argv[optind - 1]);
      return EXIT_USAGE;
    }
  }
  if (optind < argc) {
    cli_error(program, "unexpected argument '%s'", argv[optind]);
    return EXIT_USAGE;
  }
  if (!config->model_path || !config->x_path) {
    cli_error(program, "--model and --x are required (see --help)");
    return EXIT_USAGE;
  }
  if (config->out_path && !cli_has_suffix(config->out_path, ".csv") &&
      !cli_has_suffix(config->out_path, ".npy")) {
    cli_error(program, "--out: '%s' must end in .csv or .npy",
              config->out_path);
    return EXIT_USAGE;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Output files, written whole to a temporary name and renamed               */
/* ------------------------------------------------------------------------ */

/* rows × columns of values, one example per row. */
typedef struct prediction_table {
  const float *values;
  size_t rows, columns;
  bool integral; /* classes: written as integers / int64 */
} prediction_table;

static void write_csv(FILE *file, const prediction_table *table) {
  for (size_t j = 0; j < table->columns; j++)
    fprintf(file, "%s%s%zu", j ? "," : "", table->integral ? "class" : "output",
            j);
  fputc('\n', file);
  for (size_t i = 0; i < table->rows; i++) {
    for (size_t j = 0; j < table->columns; j++) {
      float value = table->values[i * table->columns + j];
      if (table->integral)
        fprintf(file, "%s%lld", j ? "," : "", (long long)value);
      else
        fprintf(file, "%s%.9g", j ? "," : "", (double)value);
    }
    fputc('\n', file);
  }
}

/* NumPy .npy v1.0: '<i8' classes of shape (m,) or '<f4' of (m, k). */
static void write_npy(FILE *file, const prediction_table *table) {
  char header[128];
  int length;
  if (table->integral)
    length = snprintf(header, sizeof header,
                      "{'descr': '<i8', 'fortran_order': False, 'shape': "
                      "(%zu,), }",
                      table->rows);
  else
    length = snprintf(header, sizeof header,
                      "{'descr': '<f4', 'fortran_order': False, 'shape': "
                      "(%zu, %zu), }",
                      table->rows, table->columns);
  /* Pad with spaces so that magic + length + header is a multiple of 64. */
  int total = 10 + length + 1;
  int padding = (64 - total % 64) % 64;
  unsigned short header_length = (unsigned short)(length + padding + 1);
  fwrite("\x93NUMPY\x01\x00", 1, 8, file);
  fputc(header_length & 0xff, file);
  fputc(header_length >> 8, file);
  fprintf(file, "%s%*s\n", header, padding, "");
  for (size_t i = 0; i < table->rows * table->columns; i++) {
    if (table->integral) {
      int64_t value = (int64_t)table->values[i];
      fwrite(&value, sizeof value, 1, file);
    } else {
      fwrite(&table->values[i], sizeof(float), 1, file);
    }
  }
}

static int write_table(const char *path, const prediction_table *table) {
  size_t length = strlen(path);
  char *temporary = malloc(length + 16);
  if (!temporary)
    return 1;
  snprintf(temporary, length + 16, "%s.tmp.XXXXXX", path);
  int descriptor = mkstemp(temporary);
  FILE *file = descriptor >= 0 ? fdopen(descriptor, "wb") : NULL;
  if (!file) {
    cli_error(program, "--out: cannot write next to %s: %s", path,
              strerror(errno));
    if (descriptor >= 0)
      close(descriptor), unlink(temporary);
    free(temporary);
    return 1;
  }
  if (cli_has_suffix(path, ".npy"))
    write_npy(file, table);
  else
    write_csv(file, table);
  bool ok = fflush(file) == 0 && fsync(fileno(file)) == 0;
  ok = (fclose(file) == 0) && ok && rename(temporary, path) == 0;
  if (!ok) {
    cli_error(program, "--out: writing %s failed: %s", path, strerror(errno));
    unlink(temporary);
  }
  free(temporary);
  return ok ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* Prediction                                                                */
/* ------------------------------------------------------------------------ */

typedef struct predict_run {
  nn_context *ctx;
  nn_model *model;
  nn_dataset *data;
  float *outputs; /* (k × m) model outputs, column per example */
  float *rows;    /* what is written: m rows */
} predict_run;

static void close_run(predict_run *run) {
  free(run->outputs);
  free(run->rows);
  nn_dataset_destroy(run->data);
  nn_model_destroy(run->model);
  nn_context_destroy(run->ctx);
}

static size_t output_units(const nn_model *model) {
  return nn_model_layer_units(model, nn_model_layer_count(model));
}

static nn_status load(const predict_config *config, predict_run *run) {
  nn_status status = nn_model_load(run->ctx, config->model_path, &run->model,
                                   NULL, NULL, NULL);
  if (status != NN_OK)
    return status;
  nn_load_options options = cli_load_options_for(
      nn_model_loss(run->model), output_units(run->model), !config->no_scale);
  bool csv = cli_has_suffix(config->x_path, ".csv");
  status = cli_load(run->ctx, config->x_path, config->y_path, config->target,
                    csv, &options, &run->data);
  if (status != NN_OK)
    return status;
  size_t expected = nn_model_layer_units(run->model, 0);
  if (nn_dataset_input_width(run->data) != expected) {
    cli_error(program,
              "%s: examples have %zu features but the model %s takes %zu",
              config->x_path, nn_dataset_input_width(run->data),
              config->model_path, expected);
    return NN_ERROR_SHAPE_MISMATCH;
  }
  return NN_OK;
}

/* The rows to write: classes (argmax / threshold) or the raw outputs. */
static prediction_table tabulate(const predict_config *config, predict_run *run,
                                 size_t m) {
  size_t k = output_units(run->model);
  bool regression = nn_model_loss(run->model) == NN_LOSS_MEAN_SQUARED_ERROR;
  if (config->probabilities || regression)
    return (prediction_table){run->outputs, m, k, false};
  for (size_t i = 0; i < m; i++) {
    const float *column = run->outputs + i * k;
    size_t best = 0;
    for (size_t j = 1; j < k; j++)
      best = column[j] > column[best] ? j : best;
    run->rows[i] = k == 1 ? (column[0] >= 0.5f ? 1.0f : 0.0f) : (float)best;
  }
  return (prediction_table){run->rows, m, 1, true};
}

static int predict(const predict_config *config, predict_run *run) {
  size_t m = nn_dataset_example_count(run->data), k = output_units(run->model);
  run->outputs = calloc(m * k, sizeof(float));
  run->rows = calloc(m, sizeof(float));
  if (!run->outputs || !run->rows) {
    cli_error(program, "out of memory for %zu predictions", m);
    return 1;
  }
  nn_status status = nn_model_predict(run->model, nn_dataset_inputs(run->data),
                                      m, run->outputs);
  if (status != NN_OK)
    return cli_fail(program, run->ctx, status);
  prediction_table table = tabulate(config, run, m);
  if (config->out_path) {
    if (write_table(config->out_path, &table) != 0)
      return 1;
    fprintf(stderr, "nnpredict: %zu predictions written to %s\n", m,
            config->out_path);
  } else {
    write_csv(stdout, &table);
  }
  return 0;
}

static int report_accuracy(predict_run *run) {
  if (nn_dataset_target_width(run->data) == 0)
    return 0;
  nn_metrics metrics;
  nn_status status = nn_model_evaluate(run->model, run->data, &metrics);
  if (status != NN_OK)
    return cli_fail(program, run->ctx, status);
  if (nn_model_loss(run->model) == NN_LOSS_MEAN_SQUARED_ERROR)
    fprintf(stderr, "nnpredict: mse %.6f  mae %.6f on %zu examples\n",
            metrics.mse, metrics.mae, nn_dataset_example_count(run->data));
  else
    fprintf(stderr, "nnpredict: accuracy %.4f on %zu examples\n",
            metrics.accuracy, nn_dataset_example_count(run->data));
  return 0;
}

int main(int argc, char **argv) {
  cli_keep_arguments(argv);
  predict_config config = {.device = NN_BACKEND_AUTO};
  int code = parse_arguments(argc, argv, &config);
  if (code != 0)
    return code < 0 ? 0 : code;
  predict_run run = {0};
  code =
      cli_open_context(program, config.device, config.device_index, &run.ctx);
  if (code != 0)
    return code;
  nn_status status = load(&config, &run);
  if (status != NN_OK)
    code = nn_context_last_error(run.ctx)[0]
               ? cli_fail(program, run.ctx, status)
               : cli_exit_code(status);
  else
    code = predict(&config, &run);
  if (code == 0)
    code = report_accuracy(&run);
  close_run(&run);
  return code;
}
