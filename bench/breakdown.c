/*
 * breakdown.c — nnbreakdown: where a training step's time goes, layer by
 * layer. Where nnbench times whole steps through the public API, this
 * links the library's internals (libnn.a) and sets the scheduler's timing
 * probe (nnlib_phase_probe): a backend timer event is recorded after each
 * layer's forward, the cost record, each layer's backward and the update,
 * so each interval is what the device spent on that part (CUDA events on
 * the GPU, the host clock on the CPU). Steps run eagerly (a CUDA graph
 * would hide the parts) on synthetic data resident in the model's own
 * buffers; each step is waited for before the next, so on a launch-bound
 * model the intervals include the host's launch time — which is then the
 * thing in the way.
 *
 * usage: nnbreakdown --layers 784,256,256,10 [--batch 256] [--precision
 *        fp32|tf32|bf16] [--fusion auto|off] [--warmup 5] [--steps 20]
 *        [--device auto|cpu|cuda]
 * Exit status: 0 ok, 1 runtime failure, 2 bad usage.
 */
#include "../host/backend.h"
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 64
#define MAX_MARKS                                                              \
  (2 * MAX_LAYERS + 3) /* forward L, cost, backward L+1, update */

static const char *program = "nnbreakdown";

typedef struct config {
  size_t widths[MAX_LAYERS + 1];
  size_t layer_count;
  size_t batch, warmup, steps;
  nn_precision precision;
  nn_fusion fusion;
  nn_backend_kind device;
} config;

/* The probe: one timer event per mark, in order, and what each was. */
typedef struct step_probe {
  nnlib_phase_probe base; /* first: the scheduler holds a probe pointer */
  nnlib_event start, marks[MAX_MARKS];
  nnlib_phase phases[MAX_MARKS];
  size_t layers[MAX_MARKS];
  size_t count;
} step_probe;

static nn_status mark(nnlib_phase_probe *base, nn_model *model,
                      nnlib_phase phase, size_t layer) {
  step_probe *probe = (step_probe *)base;
  if (probe->count >= MAX_MARKS)
    return NNLIB_FAIL(model->ctx, NN_ERROR_STATE, "more than %d marks",
                      MAX_MARKS);
  probe->phases[probe->count] = phase;
  probe->layers[probe->count] = layer;
  nnlib_event event = probe->marks[probe->count++];
  return NNLIB_OPS(model)->compute_record(NNLIB_BACKEND(model), model->ctx,
                                          event);
}

static int usage(FILE *stream, int code) {
  fprintf(stream,
          "usage: nnbreakdown --layers N0,N1,...,NL [--batch N] [--precision "
          "fp32|tf32|bf16]\n"
          "                   [--fusion auto|off] [--warmup N] [--steps N] "
          "[--device auto|cpu|cuda]\n"
          "The median time of each part of a training step (ReLU hidden "
          "layers, softmax\noutput, Adam), from timer events recorded "
          "between the parts.\n");
  return code;
}

static bool parse_count(const char *flag, const char *text, size_t minimum,
                        size_t *out) {
  char *end = NULL;
  unsigned long long value = strtoull(text, &end, 10);
  if (*text < '0' || *text > '9' || *end != '\0' || value < minimum ||
      value > 1u << 30) {
    fprintf(stderr, "%s: %s: '%s' is not a whole number >= %zu\n", program,
            flag, text, minimum);
    return false;
  }
  *out = (size_t)value;
  return true;
}

static bool parse_layers(const char *text, config *out) {
  size_t count = 0;
  for (const char *cursor = text; *cursor; count++) {
    char *end = NULL;
    unsigned long value = strtoul(cursor, &end, 10);
    if (count > MAX_LAYERS || end == cursor || value == 0 || value > 1u << 20 ||
        (*end != ',' && *end != '\0') || *cursor == '-')
      break;
    out->widths[count] = value;
    cursor = *end == ',' ? end + 1 : end;
    if (*end == ',' && *cursor == '\0')
      count = 0; /* a trailing comma */
  }
  out->layer_count = count > 0 ? count - 1 : 0;
  if (out->layer_count >= 1 && out->widths[out->layer_count] >= 2)
    return true;
  fprintf(stderr,
          "%s: --layers: expected widths N0,N1,...,NL (1 to 2^20 each, at "
          "most %d layers, output >= 2), got '%s'\n",
          program, MAX_LAYERS, text);
  return false;
}

static bool parse_flag(int flag, const char *value, config *out) {
  switch (flag) {
  case 'l':
    return parse_layers(value, out);
  case 'b':
    return parse_count("--batch", value, 1, &out->batch);
  case 'w':
    return parse_count("--warmup", value, 0, &out->warmup);
  case 's':
    return parse_count("--steps", value, 1, &out->steps);
  case 'p':
    if (nn_precision_from_name(value, &out->precision) == NN_OK)
      return true;
    fprintf(stderr, "%s: --precision: '%s' is not fp32, tf32 or bf16\n",
            program, value);
    return false;
  case 'f':
    if (nn_fusion_from_name(value, &out->fusion) == NN_OK)
      return true;
    fprintf(stderr, "%s: --fusion: '%s' is not auto or off\n", program, value);
    return false;
  case 'd':
    if (strcmp(value, "auto") == 0 || strcmp(value, "cpu") == 0 ||
        strcmp(value, "cuda") == 0) {
      out->device = value[0] == 'a'   ? NN_BACKEND_AUTO
                    : value[1] == 'p' ? NN_BACKEND_CPU
                                      : NN_BACKEND_CUDA;
      return true;
    }
    fprintf(stderr, "%s: --device: '%s' is not auto, cpu or cuda\n", program,
            value);
    return false;
  default:
    return false;
  }
}

/* 0 to go on, else the exit code. */
static int parse_arguments(int argc, char **argv, config *out) {
  static const struct option options[] = {
      {"layers", required_argument, NULL, 'l'},
      {"batch", required_argument, NULL, 'b'},
      {"precision", required_argument, NULL, 'p'},
      {"fusion", required_argument, NULL, 'f'},
      {"warmup", required_argument, NULL, 'w'},
      {"steps", required_argument, NULL, 's'},
      {"device", required_argument, NULL, 'd'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  memset(out, 0, sizeof *out);
  out->batch = 256;
  out->warmup = 5;
  out->steps = 20;
  opterr = 0;
  int flag;
  while ((flag = getopt_long(argc, argv, "", options, NULL)) != -1) {
    if (flag == 'h')
      return usage(stdout, -1);
    if (flag == '?' || flag == ':') {
      fprintf(stderr, "%s: unknown or incomplete option '%s'\n", program,
              argv[optind - 1]);
      return usage(stderr, EXIT_FAILURE + 1);
    }
    if (!parse_flag(flag, optarg, out))
      return EXIT_FAILURE + 1;
  }
  if (optind < argc || out->layer_count == 0) {
    fprintf(stderr, "%s: %s\n", program,
            optind < argc ? "unexpected argument" : "--layers is required");
    return usage(stderr, EXIT_FAILURE + 1);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                   */
/* ------------------------------------------------------------------------ */

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *values, size_t count) {
  qsort(values, count, sizeof *values, compare_doubles);
  return count % 2 ? values[count / 2]
                   : 0.5 * (values[count / 2 - 1] + values[count / 2]);
}

/* X (n0 × batch) uniform in [0, 1), Y one-hot, into the model's own input
 * and target buffers. */
static nn_status upload_batch(nn_model *model, const config *run) {
  const size_t n0 = run->widths[0], classes = run->widths[run->layer_count];
  float *x = calloc(n0 * run->batch, sizeof *x);
  float *y = calloc(classes * run->batch, sizeof *y);
  nn_status status = x && y ? NN_OK : NN_ERROR_OUT_OF_MEMORY;
  uint64_t state = 88172645463325252ull;
  for (size_t k = 0; x && k < n0 * run->batch; k++) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    x[k] = (float)(state >> 40) / (float)(1u << 24);
  }
  for (size_t j = 0; y && j < run->batch; j++)
    y[j * classes + j % classes] = 1.0f;
  if (status == NN_OK)
    status = nnlib_model_reserve(model, run->batch);
  if (status == NN_OK)
    status = nnlib_model_prepare_optimizer(model, NN_OPTIMIZER_ADAM);
  if (status == NN_OK)
    status = NNLIB_OPS(model)->upload(NNLIB_BACKEND(model), model->ctx,
                                      model->input, x, n0 * run->batch);
  if (status == NN_OK)
    status = NNLIB_OPS(model)->upload(NNLIB_BACKEND(model), model->ctx,
                                      model->targets, y, classes * run->batch);
  free(x);
  free(y);
  return status;
}

static nn_status create_model(nn_context *ctx, const config *run,
                              nn_model **model) {
  nn_layer_spec layers[MAX_LAYERS];
  for (size_t l = 0; l < run->layer_count; l++)
    layers[l] = (nn_layer_spec){run->widths[l + 1], NN_ACTIVATION_RELU, 0.0f};
  layers[run->layer_count - 1].activation = NN_ACTIVATION_SOFTMAX;
  nn_model_spec spec = {run->widths[0], run->layer_count, layers,
                        NN_LOSS_CATEGORICAL_CROSS_ENTROPY};
  nn_status status = nn_model_create(ctx, &spec, model);
  if (status == NN_OK)
    status = nn_model_init(*model, NN_INIT_HE, 1);
  if (status == NN_OK)
    status = nn_model_set_precision(*model, run->precision);
  if (status == NN_OK)
    status = nn_model_set_fusion(*model, run->fusion);
  if (status == NN_OK)
    status = upload_batch(*model, run);
  return status;
}

/* One probed step; times[k] gets the k-th interval in ms. */
static nn_status probed_step(nn_model *model, step_probe *probe, size_t batch,
                             double *times) {
  nn_optimizer_settings adam = {NN_OPTIMIZER_ADAM, 0.9f, 0.999f, 1e-8f};
  nnlib_backend *backend = NNLIB_BACKEND(model);
  probe->count = 0;
  nn_status status =
      backend->ops->compute_record(backend, model->ctx, probe->start);
  if (status == NN_OK)
    status = nnlib_stage_update(model, &adam, 1e-4f);
  if (status == NN_OK)
    status = nnlib_step_body(model, model->input, model->targets, batch, 0.0f,
                             model->cost_scratch);
  nnlib_event previous = probe->start;
  for (size_t k = 0; status == NN_OK && k < probe->count; k++) {
    float ms = 0.0f;
    status = backend->ops->elapsed_ms(backend, model->ctx, previous,
                                      probe->marks[k], &ms);
    times[k] = ms;
    previous = probe->marks[k];
  }
  return status;
}

static const char *phase_name(nnlib_phase phase) {
  static const char *const names[] = {"forward", "cost", "backward", "update"};
  return names[phase];
}

/* Whether layer l's last forward pass fused, and how its products handed
 * over (bf16: A and dZ passed on in bf16, never written in fp32). */
static const char *fused_label(const nn_model *model, size_t l) {
  if (!nn_model_layer_fused(model, l))
    return "no";
  return model->epilogues[l - 1].bf16_output ? "yes, bf16 out" : "yes";
}

static void print_table(const config *run, nn_model *model,
                        const step_probe *probe, double *samples) {
  const size_t steps = run->steps, marks = probe->count;
  double medians[MAX_MARKS], total = 0.0;
  for (size_t k = 0; k < marks; k++) {
    double column[steps];
    for (size_t s = 0; s < steps; s++)
      column[s] = samples[s * marks + k];
    medians[k] = median(column, steps);
    total += medians[k];
  }
  printf("| part | layer | shape (n x n_prev x m) | fused | median ms | share "
         "|\n| --- | --- | --- | --- | --- | --- |\n");
  for (size_t k = 0; k < marks; k++) {
    size_t l = probe->layers[k];
    printf("| %s | ", phase_name(probe->phases[k]));
    if (l >= 1 && l <= run->layer_count)
      printf("%zu | %zu x %zu x %zu | %s", l, run->widths[l],
             run->widths[l - 1], run->batch, fused_label(model, l));
    else
      printf("%s | | ", l > run->layer_count ? "dZ[L] = A - Y" : "");
    printf(" | %.4f | %.1f%% |\n", medians[k], 100.0 * medians[k] / total);
  }
  printf("| step | | | | %.4f | 100%% |\n", total);
}

static int run_breakdown(const config *run, nn_context *ctx) {
  nn_model *model = NULL;
  step_probe probe = {{mark}, NULL, {NULL}, {0}, {0}, 0};
  const nnlib_backend_ops *ops = ctx->backend->ops;
  nn_status status = create_model(ctx, run, &model);
  const size_t marks = 2 * run->layer_count + 3;
  if (status == NN_OK)
    status = ops->timer_create(ctx->backend, ctx, &probe.start);
  for (size_t k = 0; status == NN_OK && k < marks; k++)
    status = ops->timer_create(ctx->backend, ctx, &probe.marks[k]);
  double *samples = calloc(run->steps * marks, sizeof *samples);
  if (!samples && status == NN_OK)
    status = NN_ERROR_OUT_OF_MEMORY;
  if (status == NN_OK)
    model->probe = &probe.base;
  double scratch[MAX_MARKS];
  for (size_t s = 0; status == NN_OK && s < run->warmup + run->steps; s++)
    status = probed_step(model, &probe, run->batch,
                         s < run->warmup ? scratch
                                         : samples + (s - run->warmup) * marks);
  if (status == NN_OK) {
    printf("nnbreakdown: %s, batch %zu, %s, fusion %s, %zu steps after %zu "
           "warmup\n\n",
           nn_context_backend_name(ctx), run->batch,
           nn_precision_name(run->precision), nn_fusion_name(run->fusion),
           run->steps, run->warmup);
    print_table(run, model, &probe, samples);
  } else {
    fprintf(stderr, "%s: %s\n", program, nn_context_last_error(ctx));
  }
  free(samples);
  if (probe.start)
    ops->event_destroy(ctx->backend, probe.start);
  for (size_t k = 0; k < marks; k++)
    if (probe.marks[k])
      ops->event_destroy(ctx->backend, probe.marks[k]);
  nn_model_destroy(model);
  return status == NN_OK ? 0 : 1;
}

int main(int argc, char **argv) {
  cli_keep_arguments(argv);
  config run;
  int code = parse_arguments(argc, argv, &run);
  if (code != 0)
    return code < 0 ? 0 : code;
  nn_context *ctx = NULL;
  code = cli_open_context(program, run.device, 0, &ctx);
  if (code != 0)
    return code;
  code = run_breakdown(&run, ctx);
  nn_context_destroy(ctx);
  return code;
}
