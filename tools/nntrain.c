/*
 * nntrain — train a fully connected network from data files.
 *
 * With no arguments it trains the default network on Fashion-MNIST
 * (/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist).
 * Thin on purpose: parse flags, call the library, report.
 */
#include "cli.h"

#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const program = "nntrain";

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define MAX_HIDDEN_LAYERS 64

typedef struct train_config {
  /* data */
  const char *train_x, *train_y, *test_x, *test_y;
  const char *train_csv, *test_csv, *target;
  /* model */
  size_t hidden[MAX_HIDDEN_LAYERS];
  size_t hidden_count;
  nn_activation activation;
  nn_loss loss;
  float dropout;
  /* init */
  nn_init init;
  const char *init_file;
  /* training */
  nn_train_options options;
  size_t iterations; /* 0: run options.epochs */
  nn_precision precision;
  nn_fusion fusion;
  nn_backend_kind device;
  int device_index;
  /* output */
  const char *save_path, *resume_path, *log_path;
  size_t print_every;
  bool print_every_set;
  bool no_scale; /* keep uint8 inputs as 0..255 */
} train_config;

static void usage(FILE *out) {
  fprintf(out,
          "usage: nntrain [options]\n"
          "Trains a fully connected network. With no data flags: "
          "Fashion-MNIST from\n" FASHION_MNIST_DIR ".\n"
          "\n"
          "data:\n"
          "  --train-x PATH --train-y PATH   training inputs and labels: "
          "IDX (.gz),\n"
          "                                  .npy, or file.h5:dataset\n"
          "  --test-x PATH --test-y PATH     test set, same formats\n"
          "  --train FILE.csv --target COL   CSV with a header row; COL is "
          "the target\n"
          "  --test FILE.csv                 test CSV with the same columns\n"
          "  --no-scale                      keep uint8 inputs in 0..255 "
          "(default: / 255)\n"
          "model:\n"
          "  --hidden 20,7,5|none            hidden widths (none: logistic "
          "regression)\n"
          "                                  [256,128]\n"
          "  --activation NAME               relu, leaky_relu, tanh, "
          "sigmoid, linear, gelu,\n"
          "                                  gelu_tanh\n"
          "                                  [relu]\n"
          "  --output sigmoid|softmax|linear the loss follows the output "
          "[softmax]\n"
          "init:\n"
          "  --init zeros|normal|he|xavier|glorot|FILE.safetensors  [he]\n"
          "  --seed N                        [1]\n"
          "training:\n"
          "  --optimizer gd|momentum|rmsprop|adam  [adam]\n"
          "  --lr X                          learning rate [0.001]\n"
          "  --decay X                       lr / (1 + X·epoch) [0]\n"
          "  --batch N|full                  mini-batch size [128]\n"
          "  --epochs N | --iterations N     [10 epochs]\n"
          "  --l2 X                          L2 regularization lambda [0]\n"
          "  --dropout P                     drop probability of hidden "
          "units [0]\n"
          "  --val-split F                   hold out a fraction for "
          "validation [0]\n"
          "  --early-stop N                  stop after N epochs without "
          "improvement\n"
          "  --device auto|cpu|cuda[:N]      [auto]\n"
          "  --precision fp32|tf32|bf16      matrix products (tf32, bf16: "
          "GPU) [fp32]\n"
          "  --fusion auto|off               cuBLASLt epilogues for ReLU and "
          "gelu_tanh\n"
          "                                  layers (GPU) [auto]\n"
          "  --data auto|stream|resident     where the data lives while "
          "training [auto]\n"
          "output:\n"
          "  --save FILE.safetensors         [model.safetensors]\n"
          "  --resume FILE.safetensors       continue a saved run (same "
          "data flags)\n"
          "  --log FILE.csv                  epoch,iteration,cost,... per "
          "report\n"
          "  --print-every N                 report every N iterations\n"
          "  --help\n"
          "\n"
          "Ctrl-C saves a checkpoint at the next batch boundary; --resume "
          "continues it.\n"
          "Exit status: 0 ok, 1 runtime failure, 2 bad usage or data.\n");
}

static void default_config(train_config *config) {
  memset(config, 0, sizeof *config);
  config->hidden[0] = 256;
  config->hidden[1] = 128;
  config->hidden_count = 2;
  config->activation = NN_ACTIVATION_RELU;
  config->loss = NN_LOSS_CATEGORICAL_CROSS_ENTROPY;
  config->init = NN_INIT_HE;
  nn_train_options_default(&config->options);
  config->options.optimizer.kind = NN_OPTIMIZER_ADAM;
  config->options.learning_rate = 0.001f;
  config->options.batch_size = 128;
  config->options.epochs = 10;
  config->device = NN_BACKEND_AUTO;
  config->save_path = "model.safetensors";
}

/* ------------------------------------------------------------------------ */
/* Flags                                                                     */
/* ------------------------------------------------------------------------ */

/* "20,7,5" -> widths; every item must be a number >= 1 (no empty items). */
static bool parse_hidden(const char *text, train_config *config) {
  config->hidden_count = 0;
  if (strcmp(text, "none") == 0)
    return true;
  bool ok = true;
  for (const char *item = text; ok; item = strchr(item, ',') + 1) {
    size_t length = strcspn(item, ",");
    char width[32];
    ok = length > 0 && length < sizeof width &&
         config->hidden_count < MAX_HIDDEN_LAYERS;
    if (ok) {
      memcpy(width, item, length);
      width[length] = '\0';
      ok = cli_parse_size(program, "--hidden", width, 1,
                          &config->hidden[config->hidden_count++]);
    }
    if (item[length] == '\0')
      break;
  }
  if (!ok)
    cli_error(program,
              "--hidden: expected widths like 20,7,5 (at most %d) or none, "
              "got '%s'",
              MAX_HIDDEN_LAYERS, text);
  return ok;
}

static bool parse_output(const char *text, nn_loss *loss) {
  if (strcmp(text, "sigmoid") == 0)
    *loss = NN_LOSS_BINARY_CROSS_ENTROPY;
  else if (strcmp(text, "softmax") == 0)
    *loss = NN_LOSS_CATEGORICAL_CROSS_ENTROPY;
  else if (strcmp(text, "linear") == 0)
    *loss = NN_LOSS_MEAN_SQUARED_ERROR;
  else {
    cli_error(program, "--output: '%s' is not sigmoid, softmax or linear",
              text);
    return false;
  }
  return true;
}

static bool parse_init(const char *text, train_config *config) {
  if (nn_init_from_name(text, &config->init) == NN_OK)
    return true;
  if (cli_has_suffix(text, ".safetensors")) {
    config->init_file = text;
    return true;
  }
  cli_error(program,
            "--init: '%s' is not zeros, normal, he, xavier, glorot or a "
            ".safetensors file",
            text);
  return false;
}

static bool parse_named(const char *flag, const char *text,
                        nn_status (*parse)(const char *, int *), int *out) {
  if (parse(text, out) == NN_OK)
    return true;
  cli_error(program, "%s: unknown name '%s' (see --help)", flag, text);
  return false;
}

static nn_status parse_activation_name(const char *text, int *out) {
  nn_activation value;
  nn_status status = nn_activation_from_name(text, &value);
  if (status == NN_OK && value == NN_ACTIVATION_SOFTMAX)
    return NN_ERROR_INVALID_ARGUMENT; /* output layers only */
  *out = (int)value;
  return status;
}

static nn_status parse_optimizer_name(const char *text, int *out) {
  nn_optimizer value;
  nn_status status = nn_optimizer_from_name(text, &value);
  *out = (int)value;
  return status;
}

static bool parse_placement(const char *text, nn_data_placement *out) {
  static const char *const names[] = {"auto", "stream", "resident"};
  for (int i = 0; i < 3; i++)
    if (strcmp(text, names[i]) == 0) {
      *out = (nn_data_placement)i;
      return true;
    }
  cli_error(program, "--data: '%s' is not auto, stream or resident", text);
  return false;
}

static bool parse_batch(const char *text, train_config *config) {
  if (strcmp(text, "full") == 0) {
    config->options.batch_size = 0;
    return true;
  }
  return cli_parse_size(program, "--batch", text, 1,
                        &config->options.batch_size);
}

enum flag {
  FLAG_TRAIN_X = 256,
  FLAG_TRAIN_Y,
  FLAG_TEST_X,
  FLAG_TEST_Y,
  FLAG_TRAIN,
  FLAG_TEST,
  FLAG_TARGET,
  FLAG_HIDDEN,
  FLAG_ACTIVATION,
  FLAG_OUTPUT,
  FLAG_INIT,
  FLAG_SEED,
  FLAG_OPTIMIZER,
  FLAG_LR,
  FLAG_DECAY,
  FLAG_BATCH,
  FLAG_EPOCHS,
  FLAG_ITERATIONS,
  FLAG_L2,
  FLAG_DROPOUT,
  FLAG_VAL_SPLIT,
  FLAG_EARLY_STOP,
  FLAG_DEVICE,
  FLAG_PRECISION,
  FLAG_FUSION,
  FLAG_DATA,
  FLAG_NO_SCALE,
  FLAG_SAVE,
  FLAG_RESUME,
  FLAG_LOG,
  FLAG_PRINT_EVERY,
  FLAG_HELP,
};

static const struct option long_options[] = {
    {"train-x", required_argument, NULL, FLAG_TRAIN_X},
    {"train-y", required_argument, NULL, FLAG_TRAIN_Y},
    {"test-x", required_argument, NULL, FLAG_TEST_X},
    {"test-y", required_argument, NULL, FLAG_TEST_Y},
    {"train", required_argument, NULL, FLAG_TRAIN},
    {"test", required_argument, NULL, FLAG_TEST},
    {"target", required_argument, NULL, FLAG_TARGET},
    {"hidden", required_argument, NULL, FLAG_HIDDEN},
    {"activation", required_argument, NULL, FLAG_ACTIVATION},
    {"output", required_argument, NULL, FLAG_OUTPUT},
    {"init", required_argument, NULL, FLAG_INIT},
    {"seed", required_argument, NULL, FLAG_SEED},
    {"optimizer", required_argument, NULL, FLAG_OPTIMIZER},
    {"lr", required_argument, NULL, FLAG_LR},
    {"decay", required_argument, NULL, FLAG_DECAY},
    {"batch", required_argument, NULL, FLAG_BATCH},
    {"epochs", required_argument, NULL, FLAG_EPOCHS},
    {"iterations", required_argument, NULL, FLAG_ITERATIONS},
    {"l2", required_argument, NULL, FLAG_L2},
    {"dropout", required_argument, NULL, FLAG_DROPOUT},
    {"val-split", required_argument, NULL, FLAG_VAL_SPLIT},
    {"early-stop", required_argument, NULL, FLAG_EARLY_STOP},
    {"device", required_argument, NULL, FLAG_DEVICE},
    {"precision", required_argument, NULL, FLAG_PRECISION},
    {"fusion", required_argument, NULL, FLAG_FUSION},
    {"data", required_argument, NULL, FLAG_DATA},
    {"no-scale", no_argument, NULL, FLAG_NO_SCALE},
    {"save", required_argument, NULL, FLAG_SAVE},
    {"resume", required_argument, NULL, FLAG_RESUME},
    {"log", required_argument, NULL, FLAG_LOG},
    {"print-every", required_argument, NULL, FLAG_PRINT_EVERY},
    {"help", no_argument, NULL, FLAG_HELP},
    {NULL, 0, NULL, 0},
};

/* Applies one flag; false on a bad value (already reported). */
static bool apply_flag(int flag, const char *value, train_config *config) {
  nn_train_options *options = &config->options;
  int named = 0;
  switch (flag) {
  case FLAG_TRAIN_X:
    return (config->train_x = value) != NULL;
  case FLAG_TRAIN_Y:
    return (config->train_y = value) != NULL;
  case FLAG_TEST_X:
    return (config->test_x = value) != NULL;
  case FLAG_TEST_Y:
    return (config->test_y = value) != NULL;
  case FLAG_TRAIN:
    return (config->train_csv = value) != NULL;
  case FLAG_TEST:
    return (config->test_csv = value) != NULL;
  case FLAG_TARGET:
    return (config->target = value) != NULL;
  case FLAG_HIDDEN:
    return parse_hidden(value, config);
  case FLAG_ACTIVATION:
    if (!parse_named("--activation", value, parse_activation_name, &named))
      return false;
    config->activation = (nn_activation)named;
    return true;
  case FLAG_OUTPUT:
    return parse_output(value, &config->loss);
  case FLAG_INIT:
    return parse_init(value, config);
  case FLAG_SEED:
    return cli_parse_u64(program, "--seed", value, &options->seed);
  case FLAG_OPTIMIZER:
    if (!parse_named("--optimizer", value, parse_optimizer_name, &named))
      return false;
    options->optimizer.kind = (nn_optimizer)named;
    return true;
  case FLAG_LR:
    return cli_parse_float(program, "--lr", value, 1e-12, 1e6,
                           &options->learning_rate);
  case FLAG_DECAY:
    return cli_parse_float(program, "--decay", value, 0, 1e6,
                           &options->decay_rate);
  case FLAG_BATCH:
    return parse_batch(value, config);
  case FLAG_EPOCHS:
    config->iterations = 0;
    return cli_parse_size(program, "--epochs", value, 1, &options->epochs);
  case FLAG_ITERATIONS:
    return cli_parse_size(program, "--iterations", value, 1,
                          &config->iterations);
  case FLAG_L2:
    return cli_parse_float(program, "--l2", value, 0, 1e6, &options->l2_lambda);
  case FLAG_DROPOUT:
    return cli_parse_float(program, "--dropout", value, 0, 0.99,
                           &config->dropout);
  case FLAG_VAL_SPLIT: {
    float fraction = 0;
    bool ok = cli_parse_float(program, "--val-split", value, 0, 0.9, &fraction);
    options->validation_fraction = fraction;
    return ok;
  }
  case FLAG_EARLY_STOP:
    return cli_parse_size(program, "--early-stop", value, 1,
                          &options->early_stopping_patience);
  case FLAG_DEVICE:
    return cli_parse_device(program, value, &config->device,
                            &config->device_index);
  case FLAG_PRECISION:
    if (nn_precision_from_name(value, &config->precision) == NN_OK)
      return true;
    cli_error(program, "--precision: '%s' is not fp32, tf32 or bf16", value);
    return false;
  case FLAG_FUSION:
    if (nn_fusion_from_name(value, &config->fusion) == NN_OK)
      return true;
    cli_error(program, "--fusion: '%s' is not auto or off", value);
    return false;
  case FLAG_NO_SCALE:
    config->no_scale = true;
    return true;
  case FLAG_DATA:
    return parse_placement(value, &options->data_placement);
  case FLAG_SAVE:
    return (config->save_path = value) != NULL;
  case FLAG_RESUME:
    return (config->resume_path = value) != NULL;
  case FLAG_LOG:
    return (config->log_path = value) != NULL;
  case FLAG_PRINT_EVERY:
    config->print_every_set = true;
    return cli_parse_size(program, "--print-every", value, 1,
                          &config->print_every);
  }
  return false;
}

/* Checks that the data flags form one of the accepted combinations. */
static bool check_data_flags(train_config *config) {
  bool files =
      config->train_x || config->train_y || config->test_x || config->test_y;
  bool csv = config->train_csv || config->test_csv || config->target;
  if (files && csv) {
    cli_error(program, "use either --train-x/--train-y or --train FILE.csv, "
                       "not both");
    return false;
  }
  if (csv && (!config->train_csv || !config->target)) {
    cli_error(program, "--train FILE.csv needs --target COLUMN");
    return false;
  }
  if (files && (!config->train_x || !config->train_y)) {
    cli_error(program, "--train-x and --train-y go together");
    return false;
  }
  if (files && (!config->test_x != !config->test_y)) {
    cli_error(program, "--test-x and --test-y go together");
    return false;
  }
  if (!files && !csv) {
    config->train_x = FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz";
    config->train_y = FASHION_MNIST_DIR "/train-labels-idx1-ubyte.gz";
    config->test_x = FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz";
    config->test_y = FASHION_MNIST_DIR "/t10k-labels-idx1-ubyte.gz";
    if (access(config->train_x, R_OK) != 0) {
      cli_error(program,
                "no data flags and no Fashion-MNIST in " FASHION_MNIST_DIR
                " (install Debian's dataset-fashion-mnist, or pass "
                "--train-x/--train-y)");
      return false;
    }
  }
  return true;
}

/* 0 to go on, or the exit code (help printed or bad flags). */
static int parse_arguments(int argc, char **argv, train_config *config) {
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
    if (!apply_flag(flag, optarg, config))
      return EXIT_USAGE;
  }
  if (optind < argc) {
    cli_error(program, "unexpected argument '%s' (see --help)", argv[optind]);
    return EXIT_USAGE;
  }
  if (config->options.early_stopping_patience > 0 &&
      config->options.validation_fraction == 0.0f) {
    cli_error(program, "--early-stop needs --val-split");
    return EXIT_USAGE;
  }
  if (!config->print_every_set)
    config->print_every = config->options.batch_size == 0 ? 100 : 0;
  return check_data_flags(config) ? 0 : EXIT_USAGE;
}

/* ------------------------------------------------------------------------ */
/* Progress, logging, interruption                                           */
/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t interrupted = 0;

static void on_interrupt(int signal_number) {
  (void)signal_number;
  interrupted = 1;
}

/* The first Ctrl-C asks for a checkpoint at the next batch boundary; a
 * second one kills as usual (SA_RESETHAND). */
static void catch_interrupt(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_interrupt;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
}

typedef struct progress_state {
  const train_config *config;
  nn_model *model;
  const nn_dataset *test;
  FILE *log;
  bool terminal;
  size_t train_examples; /* per epoch, after any validation split */
  size_t batches_per_epoch;
  size_t epochs;
  double started, epoch_started;
  size_t first_iteration; /* of this process (resume starts later) */
  size_t interrupt_at;    /* tests: raise SIGINT after this iteration */
  double last_draw;       /* the bar is redrawn at most 10 times a second */
} progress_state;

static double test_metric(progress_state *state) {
  nn_metrics metrics;
  if (!state->test ||
      nn_model_evaluate(state->model, state->test, &metrics) != NN_OK)
    return NAN;
  return nn_model_loss(state->model) == NN_LOSS_MEAN_SQUARED_ERROR
             ? metrics.mse
             : metrics.accuracy;
}

static void log_row(progress_state *state, const nn_progress *progress,
                    double test) {
  if (!state->log)
    return;
  fprintf(state->log, "%zu,%zu,%.9g", progress->epoch, progress->iteration,
          progress->cost);
  if (progress->epoch_end)
    fprintf(state->log, ",%.9g,%.9g,%.9g", progress->validation_cost,
            progress->validation_metric, test);
  else
    fputs(",,,", state->log);
  fputc('\n', state->log);
  fflush(state->log);
}

/* "3.2s" / "1m05s" */
static void format_duration(double seconds, char *text, size_t size) {
  if (seconds < 60)
    snprintf(text, size, "%.1fs", seconds);
  else
    snprintf(text, size, "%dm%02ds", (int)(seconds / 60),
             (int)fmod(seconds, 60));
}

/* A live bar on a terminal, redrawn in place. */
static void draw_bar(progress_state *state, const nn_progress *progress) {
  double now = cli_now();
  if (now - state->last_draw < 0.1)
    return;
  state->last_draw = now;
  size_t done =
      progress->iteration - progress->epoch * state->batches_per_epoch;
  double fraction = (double)done / (double)state->batches_per_epoch;
  double elapsed = now - state->epoch_started;
  double rate = fraction * (double)state->train_examples / fmax(elapsed, 1e-9);
  size_t remaining_iterations =
      state->epochs * state->batches_per_epoch - progress->iteration;
  double per_iteration = (now - state->started) /
                         (double)(progress->iteration - state->first_iteration);
  char left[32];
  format_duration(per_iteration * (double)remaining_iterations, left,
                  sizeof left);
  char bar[31];
  int filled = (int)(fraction * 30);
  for (int i = 0; i < 30; i++)
    bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
  bar[30] = '\0';
  printf("\repoch %zu/%zu [%s] %3.0f%%  %.0f samples/s  cost %.4f  %s left ",
         progress->epoch + 1, state->epochs, bar, 100 * fraction, rate,
         progress->cost, left);
  fflush(stdout);
}

static void print_epoch(progress_state *state, const nn_progress *progress,
                        double test) {
  double elapsed = cli_now() - state->epoch_started;
  if (state->terminal)
    printf("\r\033[K");
  printf("epoch %zu/%zu  iteration %zu  cost %.6f", progress->epoch + 1,
         state->epochs, progress->iteration, progress->cost);
  const char *metric = nn_model_loss(state->model) == NN_LOSS_MEAN_SQUARED_ERROR
                           ? "mse"
                           : "accuracy";
  if (!isnan(progress->validation_cost))
    printf("  val cost %.6f  val %s %.4f", progress->validation_cost, metric,
           progress->validation_metric);
  if (!isnan(test))
    printf("  test %s %.4f", metric, test);
  printf("  %.0f samples/s\n",
         (double)state->train_examples / fmax(elapsed, 1e-9));
  fflush(stdout);
}

static bool print_due(const progress_state *state, size_t count) {
  size_t every = state->config->print_every;
  return every > 0 && count % every == 0;
}

static int on_progress(const nn_progress *progress, void *user_data) {
  progress_state *state = user_data;
  bool full_batch = state->batches_per_epoch == 1;
  if (progress->epoch_end) {
    bool shown = !full_batch || print_due(state, progress->epoch + 1) ||
                 progress->epoch + 1 == state->epochs;
    double test = shown || state->log ? test_metric(state) : NAN;
    log_row(state, progress, test);
    if (shown)
      print_epoch(state, progress, test);
    state->epoch_started = cli_now();
  } else if (!full_batch) {
    if (print_due(state, progress->iteration)) {
      log_row(state, progress, NAN);
      if (!state->terminal)
        printf("epoch %zu  iteration %zu  cost %.6f\n", progress->epoch + 1,
               progress->iteration, progress->cost);
    }
    if (state->terminal)
      draw_bar(state, progress);
  }
  if (!progress->epoch_end && progress->iteration == state->interrupt_at)
    raise(SIGINT);
  return 0;
}

static size_t greatest_common_divisor(size_t a, size_t b) {
  while (b != 0) {
    size_t rest = a % b;
    a = b;
    b = rest;
  }
  return a;
}

/* How often the library calls back within an epoch. Each such report waits
 * for the GPU, so only as often as something is shown: the --print-every
 * lines and about 50 bar updates an epoch (a multiple of neither misses
 * none of them), every iteration for the interrupt test hook. */
static size_t report_interval(const progress_state *state) {
  if (state->batches_per_epoch == 1)
    return 0; /* full batch: every epoch end is an iteration */
  if (state->interrupt_at > 0)
    return 1;
  size_t every = state->config->print_every;
  if (state->terminal) {
    size_t bar_every = state->batches_per_epoch / 50;
    bar_every = bar_every > 0 ? bar_every : 1;
    every = every > 0 ? greatest_common_divisor(every, bar_every) : bar_every;
  }
  return every;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                   */
/* ------------------------------------------------------------------------ */

/* Where a run's time goes, in seconds, printed last ("phases:") so that a
 * slow start (opening a GPU, decompressing the files) is visible beside
 * the training itself. */
typedef struct phase_times {
  double started; /* cli_now() when main began */
  double context, data, model, training, evaluation, saving;
  bool at_once; /* context and data overlapped (open_new_run) */
} phase_times;

typedef struct run_objects {
  nn_context *ctx;
  nn_context *data_ctx; /* the datasets' (open_new_run), or NULL: ctx's */
  nn_model *model;
  nn_dataset *train, *test;
  nn_train_state resume;
  bool resuming;
  FILE *log;
  phase_times times;
} run_objects;

static void close_run(run_objects *run) {
  if (run->log)
    fclose(run->log);
  nn_dataset_destroy(run->train);
  nn_dataset_destroy(run->test);
  nn_model_destroy(run->model);
  nn_context_destroy(run->data_ctx);
  nn_context_destroy(run->ctx);
}

static nn_status load_data(train_config *config, run_objects *run,
                           nn_load_options options) {
  double started = cli_now();
  bool csv = config->train_csv != NULL;
  nn_context *ctx = run->data_ctx ? run->data_ctx : run->ctx;
  nn_status status =
      cli_load(ctx, csv ? config->train_csv : config->train_x, config->train_y,
               config->target, csv, &options, &run->train);
  if (status != NN_OK)
    return status;
  /* The test labels use the training set's classes. */
  if (options.targets == NN_TARGETS_CLASSES)
    options.class_count = nn_dataset_target_width(run->train);
  if (config->test_csv || config->test_x)
    status =
        cli_load(ctx, csv ? config->test_csv : config->test_x, config->test_y,
                 config->target, csv, &options, &run->test);
  run->times.data = cli_now() - started;
  return status;
}

static nn_status build_model(train_config *config, run_objects *run) {
  size_t count = config->hidden_count + 1;
  nn_layer_spec layers[MAX_HIDDEN_LAYERS + 1];
  for (size_t l = 0; l < config->hidden_count; l++)
    layers[l] =
        (nn_layer_spec){config->hidden[l], config->activation, config->dropout};
  layers[count - 1] =
      (nn_layer_spec){nn_dataset_target_width(run->train),
                      nn_loss_output_activation(config->loss), 0.0f};
  nn_model_spec spec = {nn_dataset_input_width(run->train), count, layers,
                        config->loss};
  nn_status status = nn_model_create(run->ctx, &spec, &run->model);
  if (status != NN_OK)
    return status;
  if (config->init_file)
    return nn_model_load_parameters(run->model, config->init_file);
  return nn_model_init(run->model, config->init, config->options.seed);
}

/* --resume: the model, optimizer state and settings come from the file. */
static nn_status resume_model(train_config *config, run_objects *run) {
  int has_state = 0;
  nn_train_options saved;
  nn_status status = nn_model_load(run->ctx, config->resume_path, &run->model,
                                   &saved, &run->resume, &has_state);
  if (status != NN_OK)
    return status;
  if (!has_state) {
    cli_error(program,
              "%s holds a model but no training state to resume; use "
              "--init %s to start from its weights",
              config->resume_path, config->resume_path);
    return NN_ERROR_INVALID_ARGUMENT;
  }
  config->options = saved;
  run->resuming = true;
  size_t outputs =
      nn_model_layer_units(run->model, nn_model_layer_count(run->model));
  return load_data(config, run,
                   cli_load_options_for(nn_model_loss(run->model), outputs,
                                        !config->no_scale));
}

/* The model's products in --precision and --fusion (also when resuming: a
 * checkpoint holds fp32 weights whatever they were trained in). */
static nn_status set_products(const train_config *config, run_objects *run) {
  nn_status status = nn_model_set_precision(run->model, config->precision);
  if (status == NN_OK)
    status = nn_model_set_fusion(run->model, config->fusion);
  return status;
}

/* --resume: the device, then the checkpoint, then the data it says how to
 * read. */
static int open_to_resume(train_config *config, run_objects *run) {
  int code = cli_open_context(program, config->device, config->device_index,
                              &run->ctx);
  if (code != 0)
    return code;
  run->times.context = cli_now() - run->times.started;
  double started = cli_now();
  nn_status status = resume_model(config, run);
  if (status == NN_OK)
    status = set_products(config, run);
  run->times.model = cli_now() - started - run->times.data;
  return status == NN_OK ? 0 : cli_fail(program, run->ctx, status);
}

/* A new run opens the device on a thread of its own while the main thread
 * decompresses the data files: on a GPU each takes a few tenths of a
 * second (the driver and cuBLAS; zlib). The datasets belong to a CPU
 * context of their own, since a context is used by one thread at a time;
 * a dataset is host memory, and a model of any context trains on it. */
typedef struct device_opening {
  const train_config *config;
  nn_context *ctx;
  int code;
  double finished; /* cli_now() */
} device_opening;

static void *open_device(void *argument) {
  device_opening *opening = argument;
  opening->code =
      cli_open_context(program, opening->config->device,
                       opening->config->device_index, &opening->ctx);
  opening->finished = cli_now();
  return NULL;
}

static nn_status load_new_data(train_config *config, run_objects *run) {
  char message[512];
  nn_status status = nn_context_create(NN_BACKEND_CPU, 0, &run->data_ctx,
                                       message, sizeof message);
  if (status != NN_OK) {
    cli_error(program, "%s: %s", nn_status_str(status), message);
    return status;
  }
  return load_data(config, run,
                   cli_load_options_for(config->loss, 0, !config->no_scale));
}

/* The device's failure is reported first, as if it had come first. */
static int open_new_run(train_config *config, run_objects *run) {
  device_opening opening = {.config = config};
  pthread_t thread;
  bool threaded = pthread_create(&thread, NULL, open_device, &opening) == 0;
  if (!threaded)
    open_device(&opening);
  nn_status loaded = load_new_data(config, run);
  if (threaded)
    pthread_join(thread, NULL);
  run->ctx = opening.ctx;
  run->times.context = opening.finished - run->times.started;
  run->times.at_once = threaded;
  if (opening.code != 0)
    return opening.code;
  if (loaded != NN_OK)
    return run->data_ctx ? cli_fail(program, run->data_ctx, loaded)
                         : cli_exit_code(loaded);
  double started = cli_now();
  nn_status status = build_model(config, run);
  if (status == NN_OK)
    status = set_products(config, run);
  run->times.model = cli_now() - started;
  return status == NN_OK ? 0 : cli_fail(program, run->ctx, status);
}

static bool open_log(const train_config *config, run_objects *run) {
  if (!config->log_path)
    return true;
  run->log = fopen(config->log_path, run->resuming ? "a" : "w");
  if (!run->log) {
    cli_error(program, "--log: cannot open %s", config->log_path);
    return false;
  }
  if (!run->resuming)
    fputs("epoch,iteration,cost,validation_cost,validation_metric,"
          "test_metric\n",
          run->log);
  return true;
}

static void describe(const train_config *config, const run_objects *run) {
  size_t layers = nn_model_layer_count(run->model);
  printf("nntrain: %s, %zu training examples",
         nn_context_backend_name(run->ctx),
         nn_dataset_example_count(run->train));
  if (run->test)
    printf(", %zu test", nn_dataset_example_count(run->test));
  printf("\nmodel: %zu", nn_model_layer_units(run->model, 0));
  for (size_t l = 1; l <= layers; l++)
    printf("-%zu", nn_model_layer_units(run->model, l));
  printf(" (%s hidden, %s), %s, lr %g, batch %zu, %zu epochs, %s\n",
         layers > 1
             ? nn_activation_name(nn_model_layer_activation(run->model, 1))
             : "no",
         nn_loss_name(nn_model_loss(run->model)),
         nn_optimizer_name(config->options.optimizer.kind),
         (double)config->options.learning_rate, config->options.batch_size,
         config->options.epochs, nn_precision_name(config->precision));
  fflush(stdout);
}

static size_t batches_per_epoch(const train_config *config, size_t m) {
  size_t batch = config->options.batch_size;
  return batch == 0 || batch >= m ? 1 : (m + batch - 1) / batch;
}

static void report_metrics(const char *name, run_objects *run,
                           const nn_dataset *data) {
  nn_metrics metrics;
  if (!data || nn_model_evaluate(run->model, data, &metrics) != NN_OK)
    return;
  if (nn_model_loss(run->model) == NN_LOSS_MEAN_SQUARED_ERROR)
    printf("%s: mse %.6f  mae %.6f  cost %.6f\n", name, metrics.mse,
           metrics.mae, metrics.cost);
  else
    printf("%s: accuracy %.4f  cost %.6f\n", name, metrics.accuracy,
           metrics.cost);
}

static int save_interrupted(const train_config *config, run_objects *run,
                            const nn_train_summary *summary) {
  nn_status status = nn_model_save(run->model, config->save_path,
                                   &config->options, &summary->state);
  if (status != NN_OK)
    return cli_fail(program, run->ctx, status);
  printf("\ninterrupted at epoch %zu, iteration %zu: checkpoint saved to "
         "%s\ncontinue with: nntrain --resume %s (and the same data "
         "flags)\n",
         summary->state.epoch + 1, summary->state.iteration, config->save_path,
         config->save_path);
  return 130;
}

static void print_phases(const phase_times *times) {
  printf("phases: context %.2f s%s data %.2f s%s model %.2f s, training "
         "%.2f s, evaluation %.2f s, saving %.2f s; %.2f s since start\n",
         times->context, times->at_once ? " and" : ",", times->data,
         times->at_once ? " at once," : ",", times->model, times->training,
         times->evaluation, times->saving, cli_now() - times->started);
}

static int finish(const train_config *config, run_objects *run,
                  const nn_train_summary *summary, double seconds) {
  printf("\n");
  double started = cli_now();
  report_metrics("train", run, run->train);
  report_metrics("test", run, run->test);
  run->times.evaluation = cli_now() - started;
  size_t iterations = summary->iterations_run - run->resume.iteration;
  double samples =
      (double)iterations * (double)(config->options.batch_size
                                        ? config->options.batch_size
                                        : nn_dataset_example_count(run->train));
  printf("time: %.2f s, %.0f samples/s%s\n", seconds, samples / seconds,
         summary->stopped_early ? " (stopped early)" : "");

  started = cli_now();
  nn_status status = nn_model_save(run->model, config->save_path,
                                   &config->options, &summary->state);
  if (status != NN_OK)
    return cli_fail(program, run->ctx, status);
  printf("model saved to %s\n", config->save_path);
  run->times.training = seconds;
  run->times.saving = cli_now() - started;
  print_phases(&run->times);
  return 0;
}

static int train(train_config *config, run_objects *run) {
  size_t m = nn_dataset_example_count(run->train);
  size_t train_m =
      m - (size_t)llround(config->options.validation_fraction * (double)m);
  progress_state progress = {
      .config = config,
      .model = run->model,
      .test = run->test,
      .log = run->log,
      .terminal = isatty(STDOUT_FILENO),
      .train_examples = train_m,
      .batches_per_epoch = batches_per_epoch(config, train_m),
      .started = cli_now(),
      .first_iteration = run->resume.iteration,
  };
  progress.epoch_started = progress.started;
  /* A test hook: interrupt deterministically, as Ctrl-C would. */
  const char *interrupt_at = getenv("NNTRAIN_TEST_INTERRUPT_AT");
  if (interrupt_at)
    progress.interrupt_at = strtoull(interrupt_at, NULL, 10);
  if (config->iterations > 0 && !run->resuming)
    config->options.epochs =
        (config->iterations + progress.batches_per_epoch - 1) /
        progress.batches_per_epoch;
  progress.epochs = config->options.epochs;
  config->options.callback = on_progress;
  config->options.callback_user_data = &progress;
  config->options.iteration_report_every = report_interval(&progress);
  config->options.stop_request = &interrupted;
  if (config->iterations > 0)
    config->options.max_iterations = config->iterations;
  config->options.resume = run->resuming ? &run->resume : NULL;
  describe(config, run);
  catch_interrupt();
  nn_train_summary summary;
  /* What the library decides on its own while training (CUDA graphs or a
   * fused product given up) lands in the context's notice. */
  char *notice = cli_notice_snapshot(run->ctx);
  nn_status status =
      nn_model_train(run->model, run->train, &config->options, &summary);
  double seconds = cli_now() - progress.started;
  const char *noted = cli_new_notice(run->ctx, notice);
  if (noted)
    cli_error(program, "note: %s", noted);
  config->options.resume = NULL;
  if (status == NN_ERROR_STOPPED && interrupted)
    return save_interrupted(config, run, &summary);
  if (status != NN_OK)
    return cli_fail(program, run->ctx, status);
  return finish(config, run, &summary, seconds);
}

int main(int argc, char **argv) {
  double started = cli_now();
  cli_keep_arguments(argv);
  train_config config;
  default_config(&config);
  int code = parse_arguments(argc, argv, &config);
  if (code != 0)
    return code < 0 ? 0 : code;
  run_objects run = {.times.started = started};
  code = config.resume_path ? open_to_resume(&config, &run)
                            : open_new_run(&config, &run);
  if (code == 0)
    code = open_log(&config, &run) ? train(&config, &run) : EXIT_USAGE;
  close_run(&run);
  return code;
}
