/*
 * nnbench — the throughput of a training step: trains an MLP on synthetic
 * data for warmup + timed steps and reports the step time, samples/s,
 * achieved TFLOP/s against the device's peak and against the gemm floor
 * (the step's matrix products alone), host-to-device rate when streaming,
 * memory against the model's minimum, and the machine. A markdown table on
 * stdout; --json FILE writes the same as a record (bench/README.md).
 */
#include "bench.h"

#include "../tools/cli.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const program = "nnbench";

/* Floor passes: as many as timed steps, within these bounds. */
#define FLOOR_PASSES_MIN 5
#define FLOOR_PASSES_MAX 50
#define UPLOAD_REPEATS 20

/* ------------------------------------------------------------------------ */
/* Presets                                                                   */
/* ------------------------------------------------------------------------ */

/* Four ReLU hidden layers each, a 10-way softmax output. */
typedef struct bench_preset {
  const char *name;
  size_t inputs, hidden; /* n[0], and n[1..4] */
  size_t batch;          /* default batch size */
} bench_preset;

#define PRESET_HIDDEN_LAYERS 4
#define PRESET_CLASSES 10

static const bench_preset presets[] = {
    {"small", 784, 256, 256},     /* MNIST-sized inputs; 0.4M parameters */
    {"medium", 1024, 1024, 1024}, /* 4.2M parameters */
    {"large", 8192, 8192, 8192},  /* 268M parameters */
};

static void apply_preset(const bench_preset *preset, bench_config *config) {
  bench_model *model = &config->model;
  model->layer_count = PRESET_HIDDEN_LAYERS + 1;
  model->widths[0] = preset->inputs;
  for (size_t l = 1; l <= PRESET_HIDDEN_LAYERS; l++)
    model->widths[l] = preset->hidden;
  model->widths[model->layer_count] = PRESET_CLASSES;
  config->preset = preset->name;
}

static const bench_preset *find_preset(const char *name) {
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
    if (strcmp(presets[i].name, name) == 0)
      return &presets[i];
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Flags                                                                     */
/* ------------------------------------------------------------------------ */

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: nnbench [options]\n"
      "Trains an MLP (ReLU hidden layers, softmax output) on synthetic data "
      "and\nreports the throughput of a training step.\n"
      "\n"
      "model:\n"
      "  --preset small|medium|large   small 784-256x4-10 (batch 256), "
      "medium\n"
      "                                1024-1024x4-10 (1024), large "
      "8192-8192x4-10\n"
      "                                (8192) [small]\n"
      "  --layers 784,256,256,10       widths n[0],...,n[L] instead of a "
      "preset\n"
      "                                (output >= 2 units)\n"
      "run:\n"
      "  --batch N                     batch size [the preset's; 256 with "
      "--layers]\n"
      "  --precision fp32|tf32|bf16    the matrix products' precision "
      "(tf32, bf16:\n"
      "                                CUDA only) [fp32]\n"
      "  --graphs auto|off             each step as one CUDA graph launch "
      "where it\n"
      "                                applies, or every kernel launched "
      "[auto]\n"
      "  --fusion auto|off             cuBLASLt epilogues (bias + ReLU in the "
      "forward\n"
      "                                product, dReLU + db in the backward) "
      "[auto]\n"
      "  --data resident|stream        data on the device, or streamed from "
      "pinned\n"
      "                                host memory [resident]\n"
      "  --optimizer gd|momentum|rmsprop|adam  [adam]\n"
      "  --warmup N                    untimed steps first, N >= 1 [10]\n"
      "  --steps N                     timed steps [50]\n"
      "  --device auto|cpu|cuda[:N]    [auto]\n"
      "  --seed N                      data, weights and shuffle [1]\n"
      "output:\n"
      "  --json FILE                   also write the result as a JSON "
      "record\n"
      "  --help\n"
      "\n"
      "Exit status: 0 ok, 1 runtime failure, 2 bad usage.\n");
}

static void default_config(bench_config *config) {
  memset(config, 0, sizeof *config);
  apply_preset(find_preset("small"), config);
  config->precision = "fp32";
  config->placement = NN_DATA_RESIDENT;
  config->optimizer = NN_OPTIMIZER_ADAM;
  config->warmup_steps = 10;
  config->timed_steps = 50;
  config->device = NN_BACKEND_AUTO;
  config->seed = 1;
}

/* One width of --layers: a whole number in 1..INT_MAX (cuBLAS takes int). */
static bool parse_width(const char *item, size_t length, size_t *width) {
  char text[32];
  if (length == 0 || length >= sizeof text)
    return false;
  memcpy(text, item, length);
  text[length] = '\0';
  char *end = NULL;
  unsigned long long value = strtoull(text, &end, 10);
  if (*end || text[0] == '-' || text[0] == '+' || value < 1 || value > INT_MAX)
    return false;
  *width = (size_t)value;
  return true;
}

/* "784,256,256,10" -> n[0..L]: at least two widths, no empty items, an
 * output of at least 2 units (softmax). */
static bool parse_layers(const char *text, bench_model *model) {
  size_t count = 0;
  bool ok = true;
  for (const char *item = text; ok; item = strchr(item, ',') + 1) {
    size_t length = strcspn(item, ",");
    ok = count <= BENCH_MAX_LAYERS &&
         parse_width(item, length, &model->widths[count++]);
    if (item[length] == '\0')
      break;
  }
  ok = ok && count >= 2 && model->widths[count - 1] >= 2;
  if (!ok) {
    cli_error(program,
              "--layers: expected 2 to %d widths like 784,256,256,10 (each "
              "1..%d, the output >= 2), got '%s'",
              BENCH_MAX_LAYERS + 1, INT_MAX, text);
    return false;
  }
  model->layer_count = count - 1;
  return true;
}

/* cuBLAS takes the batch as an int. */
static bool parse_batch(const char *text, size_t *batch) {
  if (!cli_parse_size(program, "--batch", text, 1, batch))
    return false;
  if (*batch <= INT_MAX)
    return true;
  cli_error(program, "--batch: '%s' is more than %d", text, INT_MAX);
  return false;
}

static bool parse_precision(const char *text, bench_config *config) {
  if (nn_precision_from_name(text, &config->precision_kind) == NN_OK) {
    config->precision = nn_precision_name(config->precision_kind);
    return true;
  }
  cli_error(program, "--precision: '%s' is not fp32, tf32 or bf16", text);
  return false;
}

static bool parse_placement(const char *text, nn_data_placement *placement) {
  if (strcmp(text, "resident") == 0)
    *placement = NN_DATA_RESIDENT;
  else if (strcmp(text, "stream") == 0)
    *placement = NN_DATA_STREAMING;
  else {
    cli_error(program, "--data: '%s' is not resident or stream", text);
    return false;
  }
  return true;
}

static bool parse_graphs(const char *text, nn_step_graphs *graphs) {
  if (strcmp(text, "auto") == 0)
    *graphs = NN_STEP_GRAPHS_AUTO;
  else if (strcmp(text, "off") == 0)
    *graphs = NN_STEP_GRAPHS_OFF;
  else {
    cli_error(program, "--graphs: '%s' is not auto or off", text);
    return false;
  }
  return true;
}

static bool parse_fusion(const char *text, nn_fusion *fusion) {
  if (nn_fusion_from_name(text, fusion) == NN_OK)
    return true;
  cli_error(program, "--fusion: '%s' is not auto or off", text);
  return false;
}

static bool parse_optimizer(const char *text, nn_optimizer *optimizer) {
  if (nn_optimizer_from_name(text, optimizer) == NN_OK)
    return true;
  cli_error(program, "--optimizer: '%s' is not gd, momentum, rmsprop or adam",
            text);
  return false;
}

enum flag {
  FLAG_PRESET = 256,
  FLAG_LAYERS,
  FLAG_BATCH,
  FLAG_PRECISION,
  FLAG_GRAPHS,
  FLAG_FUSION,
  FLAG_DATA,
  FLAG_OPTIMIZER,
  FLAG_WARMUP,
  FLAG_STEPS,
  FLAG_DEVICE,
  FLAG_SEED,
  FLAG_JSON,
  FLAG_HELP,
};

static const struct option long_options[] = {
    {"preset", required_argument, NULL, FLAG_PRESET},
    {"layers", required_argument, NULL, FLAG_LAYERS},
    {"batch", required_argument, NULL, FLAG_BATCH},
    {"precision", required_argument, NULL, FLAG_PRECISION},
    {"graphs", required_argument, NULL, FLAG_GRAPHS},
    {"fusion", required_argument, NULL, FLAG_FUSION},
    {"data", required_argument, NULL, FLAG_DATA},
    {"optimizer", required_argument, NULL, FLAG_OPTIMIZER},
    {"warmup", required_argument, NULL, FLAG_WARMUP},
    {"steps", required_argument, NULL, FLAG_STEPS},
    {"device", required_argument, NULL, FLAG_DEVICE},
    {"seed", required_argument, NULL, FLAG_SEED},
    {"json", required_argument, NULL, FLAG_JSON},
    {"help", no_argument, NULL, FLAG_HELP},
    {NULL, 0, NULL, 0},
};

/* What the flags said about the model, checked once all are read. */
typedef struct model_flags {
  const char *preset, *layers;
  bool batch_set;
} model_flags;

/* Applies one flag; false on a bad value (already reported). */
static bool apply_flag(int flag, const char *value, bench_config *config,
                       model_flags *model) {
  switch (flag) {
  case FLAG_PRESET:
    return (model->preset = value) != NULL;
  case FLAG_LAYERS:
    return (model->layers = value) != NULL;
  case FLAG_BATCH:
    model->batch_set = true;
    return parse_batch(value, &config->batch_size);
  case FLAG_PRECISION:
    return parse_precision(value, config);
  case FLAG_GRAPHS:
    return parse_graphs(value, &config->step_graphs);
  case FLAG_FUSION:
    return parse_fusion(value, &config->fusion);
  case FLAG_DATA:
    return parse_placement(value, &config->placement);
  case FLAG_OPTIMIZER:
    return parse_optimizer(value, &config->optimizer);
  case FLAG_WARMUP:
    return cli_parse_size(program, "--warmup", value, 1, &config->warmup_steps);
  case FLAG_STEPS:
    return cli_parse_size(program, "--steps", value, 1, &config->timed_steps);
  case FLAG_DEVICE:
    return cli_parse_device(program, value, &config->device,
                            &config->device_index);
  case FLAG_SEED:
    return cli_parse_u64(program, "--seed", value, &config->seed);
  case FLAG_JSON:
    return (config->json_path = value) != NULL;
  }
  return false;
}

/* The model from --preset or --layers (not both), and the batch size the
 * preset suggests unless --batch was given. */
static bool resolve_model(const model_flags *flags, bench_config *config) {
  if (flags->preset && flags->layers) {
    cli_error(program, "use either --preset or --layers, not both");
    return false;
  }
  size_t batch = 256;
  if (flags->layers) {
    config->preset = NULL;
    if (!parse_layers(flags->layers, &config->model))
      return false;
  } else {
    const bench_preset *preset =
        find_preset(flags->preset ? flags->preset : "small");
    if (!preset) {
      cli_error(program, "--preset: '%s' is not small, medium or large",
                flags->preset);
      return false;
    }
    apply_preset(preset, config);
    batch = preset->batch;
  }
  if (!flags->batch_set)
    config->batch_size = batch;
  return true;
}

/* 0 to go on, -1 after --help, or the exit code for bad flags. */
static int parse_arguments(int argc, char **argv, bench_config *config) {
  model_flags model = {0};
  int flag;
  opterr = 0;
  while ((flag = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
    if (flag == FLAG_HELP) {
      usage(stdout);
      return -1;
    }
    if (flag == '?' || flag == ':') {
      cli_error(program, "unknown or incomplete option '%s' (see --help)",
                argv[optind - 1]);
      return EXIT_USAGE;
    }
    if (!apply_flag(flag, optarg, config, &model))
      return EXIT_USAGE;
  }
  if (optind < argc) {
    cli_error(program, "unexpected argument '%s' (see --help)", argv[optind]);
    return EXIT_USAGE;
  }
  return resolve_model(&model, config) ? 0 : EXIT_USAGE;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct bench_session {
  bench_config config;
  bench_environment environment;
  bench_measurement measurement;
  size_t examples, batches_per_epoch; /* of the synthetic set */
  size_t model_bytes; /* nn_model_memory_bytes after the timed run */
  char backend_name[320];
  bool on_cuda;
  char error[512];
} bench_session;

static nn_status create_model(const bench_config *config, nn_context *ctx,
                              nn_model **model) {
  const bench_model *shape = &config->model;
  nn_layer_spec layers[BENCH_MAX_LAYERS];
  for (size_t l = 0; l < shape->layer_count; l++)
    layers[l] = (nn_layer_spec){shape->widths[l + 1], NN_ACTIVATION_RELU, 0};
  layers[shape->layer_count - 1].activation = NN_ACTIVATION_SOFTMAX;
  nn_model_spec spec = {shape->widths[0], shape->layer_count, layers,
                        NN_LOSS_CATEGORICAL_CROSS_ENTROPY};
  nn_status status = nn_model_create(ctx, &spec, model);
  if (status == NN_OK)
    status = nn_model_init(*model, NN_INIT_HE, config->seed);
  if (status == NN_OK)
    status = nn_model_set_precision(*model, config->precision_kind);
  if (status == NN_OK)
    status = nn_model_set_fusion(*model, config->fusion);
  return status;
}

/* The timed steps, given the context: data, model, training. 0, or the
 * exit code once the failure is reported. */
static int time_training(bench_session *session, nn_context *ctx) {
  const bench_config *config = &session->config;
  bench_data data;
  if (!bench_data_create(config, &data, session->error,
                         sizeof session->error)) {
    cli_error(program, "%s", session->error);
    return 1;
  }
  session->examples = data.examples;
  session->batches_per_epoch = data.batches_per_epoch;
  nn_model *model = NULL;
  nn_status status = create_model(config, ctx, &model);
  if (status == NN_OK)
    status = bench_time_steps(config, ctx, model, &data, session->on_cuda,
                              &session->measurement);
  int code = status == NN_OK ? 0 : cli_fail(program, ctx, status);
  size_t timed = session->measurement.step_count;
  if (code == 0 && timed < config->timed_steps) { /* epochs_needed's bug */
    cli_error(program, "training ended after %zu of %zu timed steps", timed,
              config->timed_steps);
    code = 1;
  }
  session->model_bytes = nn_model_memory_bytes(model);
  nn_model_destroy(model);
  bench_data_destroy(&data);
  return code;
}

/* Everything the library allocated is freed before the floor runs, so the
 * floor has the device to itself. */
static int train_and_time(bench_session *session) {
  const bench_config *config = &session->config;
  nn_context *ctx = NULL;
  int code =
      cli_open_context(program, config->device, config->device_index, &ctx);
  if (code != 0)
    return code;
  session->on_cuda = nn_context_backend(ctx) == NN_BACKEND_CUDA;
  snprintf(session->backend_name, sizeof session->backend_name, "%s",
           nn_context_backend_name(ctx));
  if (!session->on_cuda) { /* AUTO fell back, or --device cpu */
    session->environment.has_gpu = false;
    session->measurement.memory.known = false;
  }
  code = time_training(session, ctx);
  nn_context_destroy(ctx);
  return code;
}

static size_t floor_passes(const bench_config *config) {
  size_t passes = config->timed_steps;
  passes = passes < FLOOR_PASSES_MIN ? FLOOR_PASSES_MIN : passes;
  return passes > FLOOR_PASSES_MAX ? FLOOR_PASSES_MAX : passes;
}

/* The gemm floor, and the upload rate when streaming on CUDA. */
static int measure_alone(bench_session *session, bench_report *report) {
  const bench_config *config = &session->config;
  const bench_model *model = &config->model;
  int device = config->device_index;
  bool ok =
      session->on_cuda
          ? bench_gemm_floor_cuda(model, config->batch_size, device,
                                  config->precision_kind, floor_passes(config),
                                  config->seed, &report->floor, session->error,
                                  sizeof session->error)
          : bench_gemm_floor_cpu(
                model, config->batch_size, floor_passes(config), config->seed,
                &report->floor, session->error, sizeof session->error);
  if (ok && session->on_cuda && !session->measurement.data_resident)
    ok = bench_measure_upload(
        device, model->widths[0] * config->batch_size,
        model->widths[model->layer_count] * config->batch_size, UPLOAD_REPEATS,
        &report->transfer, session->error, sizeof session->error);
  if (!ok)
    cli_error(program, "%s", session->error);
  return ok ? 0 : 1;
}

static void fill_report(bench_session *session, bench_report *report) {
  const bench_config *config = &session->config;
  const bench_measurement *measurement = &session->measurement;
  report->config = config;
  report->backend_name = session->backend_name;
  report->on_cuda = session->on_cuda;
  report->examples = session->examples;
  report->batches_per_epoch = session->batches_per_epoch;
  report->parameter_count = bench_parameter_count(&config->model);
  report->measurement = measurement;
  report->steps =
      bench_summarize(measurement->step_seconds, measurement->step_count);
  report->epoch_starts = bench_summarize(measurement->epoch_start_seconds,
                                         measurement->epoch_start_count);
  report->flops_per_step = bench_step_flops(&config->model, config->batch_size);
  report->peak = bench_peak_tflops(
      session->environment.has_gpu ? session->environment.gpu.name : NULL,
      config->precision);
  report->memory =
      bench_plan_memory(&config->model, config->batch_size, config->optimizer,
                        config->precision_kind, measurement->data_resident,
                        session->examples, session->model_bytes);
  report->environment = &session->environment;
}

static int report_results(bench_session *session) {
  bench_report report = {0};
  int code = measure_alone(session, &report);
  if (code != 0)
    return code;
  fill_report(session, &report);
  bench_print_table(&report);
  const char *path = session->config.json_path;
  if (path &&
      !bench_write_json(&report, path, session->error, sizeof session->error)) {
    cli_error(program, "%s", session->error);
    return 1;
  }
  if (path)
    printf("\nrecord written to %s\n", path);
  return 0;
}

int main(int argc, char **argv) {
  cli_keep_arguments(argv);
  static bench_session session; /* large; zeroed */
  default_config(&session.config);
  int code = parse_arguments(argc, argv, &session.config);
  if (code != 0)
    return code < 0 ? 0 : code;
  bench_describe_host(&session.environment);
  /* Free device memory before the library's context exists: the baseline
   * of "device used". Not for --device cpu, which must not touch CUDA. */
  if (session.config.device != NN_BACKEND_CPU)
    bench_describe_gpu(session.config.device_index, &session.environment,
                       &session.measurement.memory);
  code = train_and_time(&session);
  if (code == 0)
    code = report_results(&session);
  bench_measurement_destroy(&session.measurement);
  return code;
}
