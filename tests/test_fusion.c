/*
 * test_fusion.c — the cuBLASLt epilogues (nn_model_set_fusion) keep the
 * semantics: a model whose hidden ReLU layers run fused gives the outputs
 * and gradients of the plain path (cuBLAS products and nn's kernels) to
 * rounding, in every precision and at awkward batch sizes; the layers that
 * cannot fuse (too narrow, not ReLU, with dropout) really run plain; fused
 * training reruns bit for bit, replays as graphs with the bits of eager
 * steps, and learns as well as plain training. On the CPU the setting is
 * accepted and changes nothing. GPU tests skip without a CUDA device.
 *
 * Tolerances, ||x_fused − x_plain|| / ||x_plain|| over a whole output or
 * gradient: in fp32 and tf32 the products' operands are rounded the same
 * way on both paths, so for the ReLU layers the difference is the order of
 * the sums inside the products and the db reduction (a few fp32 roundoffs,
 * 1e-5), plus with TF32 tensor-core kernels of different blocking (1e-3).
 * The GELU epilogue computes its own tanh, which on a GPU may be a fast one
 * (about 2^-11 relative; cuBLASLt does not say, and the emulator's is
 * exact): with that layer fused, an 11-bit tanh moves Ŷ by 8e-5 (measured
 * with the emulator's tanh so rounded), so fp32 allows 1e-3 then. In bf16 the
 * fused products hand over in bf16 (cuda/dense.c), so they also round what the
 * plain path keeps in fp32: the GELU input the backward product reads and
 * db (2^-9 relative each). Measured on the emulator: 3.1e-3 at most, 4e-4
 * with the GELU layer handing over in fp32; 1e-2 leaves room for the
 * GPU's blocking and still catches a wrong mask or bias (errors of order
 * 1).
 */
#include "backend.h"
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INPUTS 48
#define MAX_EXAMPLES 97
#define OUTPUTS 10
#define LAYERS 7

/* 48 -> 256 relu -> 136 relu -> 64 gelu_tanh -> 24 gelu -> 12 gelu_tanh ->
 * 3 relu -> 10 softmax. Layers 1 and 2 can fuse the ReLU epilogue (no
 * dropout, ≥ 4 units, a layer above, b aligned; 136 is no multiple of 128,
 * so its bit mask has padding rows), layer 3 the GELU one (64 is a multiple
 * of 8, as cuBLASLt's GELU input ld must be). Layer 4's exact GELU has no
 * epilogue, layer 5 is GELU-tanh of 12 units (no multiple of 8), layer 6
 * too narrow for its mask, 7 the output. The widths of the fusable layers
 * and of the layers above them are multiples of 8, which bf16 tensor-core
 * products want of their leading dimensions; all up to layer 6 are
 * multiples of 4, which keeps every b 16-byte aligned. */
static const size_t widths[LAYERS + 1] = {INPUTS, 256, 136, 64,
                                          24,     12,  3,   OUTPUTS};
static const int fusable[LAYERS] = {1, 1, 1, 0, 0, 0, 0};

static nn_model *make_model(nn_context *ctx, float dropout_of_layer_2) {
  nn_layer_spec layers[LAYERS] = {
      {widths[1], NN_ACTIVATION_RELU, 0.0f},
      {widths[2], NN_ACTIVATION_RELU, dropout_of_layer_2},
      {widths[3], NN_ACTIVATION_GELU_TANH, 0.0f},
      {widths[4], NN_ACTIVATION_GELU, 0.0f},
      {widths[5], NN_ACTIVATION_GELU_TANH, 0.0f},
      {widths[6], NN_ACTIVATION_RELU, 0.0f},
      {widths[7], NN_ACTIVATION_SOFTMAX, 0.0f},
  };
  nn_model_spec spec = {INPUTS, LAYERS, layers,
                        NN_LOSS_CATEGORICAL_CROSS_ENTROPY};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 17));
  return model;
}

static void make_batch(float *x, float *y, size_t m) {
  support_rng rng = support_rng_seeded(5);
  for (size_t k = 0; k < INPUTS * m; k++)
    x[k] = (float)support_rng_gaussian(&rng);
  memset(y, 0, OUTPUTS * m * sizeof *y);
  for (size_t j = 0; j < m; j++)
    y[j * OUTPUTS + (j * 7) % OUTPUTS] = 1.0f;
}

/* One forward and backward pass: Ŷ, and dW, db of every layer; which
 * layers fused, and which of those handed over in bf16. */
typedef struct pass_result {
  float yhat[OUTPUTS * MAX_EXAMPLES];
  float *gradients[LAYERS];
  size_t gradient_count[LAYERS];
  int fused[LAYERS];
  int bf16_output[LAYERS];
} pass_result;

static void run_pass(nn_context *ctx, nn_model *model, nn_fusion fusion,
                     size_t m, pass_result *out) {
  static float x[INPUTS * MAX_EXAMPLES], y[OUTPUTS * MAX_EXAMPLES];
  make_batch(x, y, m);
  SUPPORT_OK(ctx, nn_model_set_fusion(model, fusion));
  cr_assert_eq(nn_model_fusion(model), fusion);
  SUPPORT_OK(ctx, nn_model_forward(model, x, m, 1, out->yhat));
  SUPPORT_OK(ctx, nn_model_backward(model, y, m, 0.01f));
  for (size_t l = 1; l <= LAYERS; l++) {
    size_t count = widths[l] * widths[l - 1] + widths[l];
    out->gradients[l - 1] = calloc(count, sizeof(float));
    out->gradient_count[l - 1] = count;
    SUPPORT_OK(ctx, nn_model_get_layer_gradients(
                        model, l, out->gradients[l - 1],
                        out->gradients[l - 1] + count - widths[l]));
    out->fused[l - 1] = nn_model_layer_fused(model, l);
    out->bf16_output[l - 1] = model->epilogues[l - 1].bf16_output;
  }
}

static void free_pass(pass_result *pass) {
  for (size_t l = 0; l < LAYERS; l++)
    free(pass->gradients[l]);
}

static void assert_close_passes(const pass_result *fused,
                                const pass_result *plain, size_t m,
                                double tolerance, const char *what) {
  double d = support_relative_distance(fused->yhat, plain->yhat, OUTPUTS * m);
  cr_assert_leq(d, tolerance, "%s: Ŷ off by %g", what, d);
  double worst = d;
  for (size_t l = 0; l < LAYERS; l++) {
    d = support_relative_distance(fused->gradients[l], plain->gradients[l],
                                  plain->gradient_count[l]);
    cr_assert_leq(d, tolerance, "%s: layer %zu gradients off by %g", what,
                  l + 1, d);
    worst = d > worst ? d : worst;
  }
  cr_log_info("%s: fused against plain, at most %.3g (tolerance %g)", what,
              worst, tolerance);
}

/* ------------------------------------------------------------------------ */
/* The setting, everywhere                                                   */
/* ------------------------------------------------------------------------ */

Test(fusion, names_round_trip) {
  for (int f = 0; f < NN_FUSION_COUNT; f++) {
    nn_fusion back = NN_FUSION_COUNT;
    cr_assert_eq(nn_fusion_from_name(nn_fusion_name((nn_fusion)f), &back),
                 NN_OK);
    cr_assert_eq(back, (nn_fusion)f);
  }
  nn_fusion out;
  cr_assert_eq(nn_fusion_from_name("on", &out), NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_fusion_from_name(NULL, &out), NN_ERROR_INVALID_ARGUMENT);
  cr_assert_str_eq(nn_fusion_name(NN_FUSION_OFF), "off");
  cr_assert_str_eq(nn_fusion_name(NN_FUSION_AUTO), "auto");
}

Test(fusion, bad_settings_are_refused_and_change_nothing) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = make_model(ctx, 0.0f);
  cr_assert_eq(nn_model_fusion(model), NN_FUSION_AUTO, "a new model is AUTO");
  cr_assert_eq(nn_model_set_fusion(model, (nn_fusion)9),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(nn_context_last_error(ctx), "fusion"), "%s",
                     nn_context_last_error(ctx));
  cr_assert_eq(nn_model_fusion(model), NN_FUSION_AUTO);
  cr_assert_eq(nn_model_set_fusion(NULL, NN_FUSION_OFF),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_fusion(NULL), NN_FUSION_AUTO);
  cr_assert_eq(nn_model_layer_fused(NULL, 1), 0);
  cr_assert_eq(nn_model_layer_fused(model, 0), 0);
  cr_assert_eq(nn_model_layer_fused(model, LAYERS + 1), 0);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* The CPU has nothing to fuse: AUTO and OFF give the same bits, and no
 * layer reports a fused pass. */
Test(fusion, cpu_takes_either_setting_and_fuses_nothing) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = make_model(ctx, 0.0f);
  static pass_result automatic, off;
  run_pass(ctx, model, NN_FUSION_AUTO, 33, &automatic);
  run_pass(ctx, model, NN_FUSION_OFF, 33, &off);
  cr_assert_eq(memcmp(automatic.yhat, off.yhat, OUTPUTS * 33 * sizeof(float)),
               0);
  for (size_t l = 0; l < LAYERS; l++) {
    cr_assert_eq(automatic.fused[l], 0, "layer %zu", l + 1);
    cr_assert_eq(memcmp(automatic.gradients[l], off.gradients[l],
                        off.gradient_count[l] * sizeof(float)),
                 0, "layer %zu gradients", l + 1);
  }
  free_pass(&automatic);
  free_pass(&off);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* On the GPU                                                                */
/* ------------------------------------------------------------------------ */

/* Whether cuBLASLt offers bf16 outputs: always on a GPU; the emulator
 * can be told not to (NNEMU_LT_NO_BF16_OUTPUT, for the fp32 fallback). */
static int bf16_outputs_offered(void) {
  const char *refused = getenv("NNEMU_LT_NO_BF16_OUTPUT");
  return !refused || !*refused || strcmp(refused, "0") == 0;
}

/* Fused against plain in each precision, at a batch of 1, an odd batch and
 * the full one. The layers that cannot fuse never do, and at a batch of 1
 * none does (cuBLASLt's heuristic refuses a product with a dimension of 1,
 * and nn does not ask it). With bf16 operands the fusable layers must fuse
 * at the other batches and hand over in bf16 (the epilogues exist for
 * tensor-core bf16 products on every GPU nn is built for); with fp32 and
 * tf32 operands cuBLASLt may offer no fused algorithm, and the test logs
 * which ran; those never hand over in bf16. No batch leaves a note. */
Test(fusion, fused_passes_match_the_plain_path) {
  nn_context *ctx = support_gpu_context_or_skip();
  nn_model *model = make_model(ctx, 0.0f);
  const size_t batches[] = {1, 33, MAX_EXAMPLES};
  const double tolerances[NN_PRECISION_COUNT] = {1e-5, 1e-3, 1e-2};
  for (int p = 0; p < NN_PRECISION_COUNT; p++) {
    SUPPORT_OK(ctx, nn_model_set_precision(model, (nn_precision)p));
    for (size_t b = 0; b < 3; b++) {
      static pass_result fused, plain;
      run_pass(ctx, model, NN_FUSION_AUTO, batches[b], &fused);
      run_pass(ctx, model, NN_FUSION_OFF, batches[b], &plain);
      for (size_t l = 0; l < LAYERS; l++) {
        const int bf16 = p == NN_PRECISION_BF16;
        const int may_fuse = fusable[l] && batches[b] > 1;
        if (!may_fuse || bf16)
          cr_assert_eq(fused.fused[l], may_fuse, "%s, m = %zu: layer %zu",
                       nn_precision_name((nn_precision)p), batches[b], l + 1);
        cr_assert_eq(fused.bf16_output[l],
                     bf16 && may_fuse && bf16_outputs_offered(),
                     "%s, m = %zu: layer %zu hands over in bf16",
                     nn_precision_name((nn_precision)p), batches[b], l + 1);
        cr_assert_eq(plain.fused[l], 0);
        cr_assert_eq(plain.bf16_output[l], 0);
      }
      cr_log_info("%s, m = %zu: layers 1, 2 and 3 fused: %d %d %d",
                  nn_precision_name((nn_precision)p), batches[b],
                  fused.fused[0], fused.fused[1], fused.fused[2]);
      char what[64];
      snprintf(what, sizeof what, "%s, m = %zu",
               nn_precision_name((nn_precision)p), batches[b]);
      /* The GELU layer's epilogue tanh: see the top of the file. */
      const double tolerance =
          fused.fused[2] && tolerances[p] < 1e-3 ? 1e-3 : tolerances[p];
      assert_close_passes(&fused, &plain, batches[b], tolerance, what);
      cr_assert_str_eq(nn_context_notice(ctx), "", "%s: a note", what);
      free_pass(&fused);
      free_pass(&plain);
    }
  }
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* A ReLU layer with dropout keeps its Z (the mask needs it): plain. In
 * bf16, where layer 1 is sure to fuse. */
Test(fusion, dropout_layers_stay_plain) {
  nn_context *ctx = support_gpu_context_or_skip();
  nn_model *model = make_model(ctx, 0.3f);
  SUPPORT_OK(ctx, nn_model_set_precision(model, NN_PRECISION_BF16));
  static pass_result pass;
  run_pass(ctx, model, NN_FUSION_AUTO, 33, &pass);
  cr_assert_eq(pass.fused[0], 1);
  cr_assert_eq(pass.fused[1], 0, "layer 2 has dropout");
  free_pass(&pass);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* 3 -> 5 relu -> 8 relu -> 2 softmax: b[1] starts at float 15 of the
 * arena (not 16-byte aligned), so in fp32 and tf32, whose products read b
 * and write db in place, layer 1 stays plain; b[2] is aligned (float 60),
 * but whether cuBLASLt has a fused algorithm for widths this narrow is its
 * own business: logged, not asserted. In bf16 the products read and write
 * bf16 copies in regions of their own, aligned whatever b's offset, so
 * there nothing stays plain for b's sake (logged too). The results match
 * the plain path either way. */
Test(fusion, misaligned_biases_keep_fp32_products_plain) {
  nn_context *ctx = support_gpu_context_or_skip();
  const size_t narrow[] = {3, 5, 8, 2};
  nn_model *model = support_model(ctx, narrow, 3, NN_ACTIVATION_RELU,
                                  NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 2));
  float x[3 * 9], y[2 * 9] = {0}, fused[2 * 9], plain[2 * 9];
  for (size_t k = 0; k < 3 * 9; k++)
    x[k] = (float)k / 13.0f - 1.0f;
  for (size_t j = 0; j < 9; j++)
    y[2 * j + j % 2] = 1.0f;
  const double tolerances[NN_PRECISION_COUNT] = {1e-5, 1e-3, 1e-2};
  for (int p = 0; p < NN_PRECISION_COUNT; p++) {
    const char *name = nn_precision_name((nn_precision)p);
    SUPPORT_OK(ctx, nn_model_set_precision(model, (nn_precision)p));
    SUPPORT_OK(ctx, nn_model_set_fusion(model, NN_FUSION_AUTO));
    SUPPORT_OK(ctx, nn_model_forward(model, x, 9, 1, fused));
    SUPPORT_OK(ctx, nn_model_backward(model, y, 9, 0.0f));
    if (p != NN_PRECISION_BF16)
      cr_assert_eq(nn_model_layer_fused(model, 1), 0, "%s: b[1] is misaligned",
                   name);
    cr_log_info("3-5-8-2 in %s: layers 1 and 2 fused: %d %d", name,
                nn_model_layer_fused(model, 1), nn_model_layer_fused(model, 2));
    SUPPORT_OK(ctx, nn_model_set_fusion(model, NN_FUSION_OFF));
    SUPPORT_OK(ctx, nn_model_forward(model, x, 9, 1, plain));
    double d = support_relative_distance(fused, plain, 2 * 9);
    cr_assert_leq(d, tolerances[p], "%s: Ŷ off by %g", name, d);
  }
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

typedef struct training_run {
  float *parameters;
  size_t count;
  double final_cost;
  double accuracy;
  size_t steps_graphed;
  int first_layer_fused;
} training_run;

/* 16 features, 8 classes: the class is the largest of T x for a fixed
 * random T (8 × 16), so the task is learnable to high accuracy. */
#define TASK_FEATURES 16
#define TASK_CLASSES 8
#define TASK_EXAMPLES 600
static nn_dataset *make_task(nn_context *ctx) {
  static float x[TASK_FEATURES * TASK_EXAMPLES];
  int32_t labels[TASK_EXAMPLES];
  float teacher[TASK_CLASSES * TASK_FEATURES];
  support_rng rng = support_rng_seeded(31);
  for (size_t k = 0; k < TASK_CLASSES * TASK_FEATURES; k++)
    teacher[k] = (float)support_rng_gaussian(&rng);
  for (size_t j = 0; j < TASK_EXAMPLES; j++) {
    float *column = x + j * TASK_FEATURES;
    for (size_t i = 0; i < TASK_FEATURES; i++)
      column[i] = (float)support_rng_gaussian(&rng);
    float best = -INFINITY;
    for (int32_t c = 0; c < TASK_CLASSES; c++) {
      float score = 0.0f;
      for (size_t i = 0; i < TASK_FEATURES; i++)
        score += teacher[c * TASK_FEATURES + i] * column[i];
      if (score > best) {
        best = score;
        labels[j] = c;
      }
    }
  }
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx,
             nn_dataset_create_from_labels(ctx, TASK_FEATURES, TASK_EXAMPLES, x,
                                           labels, TASK_CLASSES, &data));
  return data;
}

/* 16-64-64-8 ReLU/softmax on that task, Adam with L2, batches of 64 and a
 * short last one (600 = 9 · 64 + 24), 60 epochs unless told, products in
 * `precision` (on the GPU
 * bf16, whose tensor-core epilogues exist on every GPU nn is built for). */
static training_run train_task_for(nn_context *ctx, nn_precision precision,
                                   nn_fusion fusion, nn_step_graphs graphs,
                                   size_t epochs) {
  nn_dataset *data = make_task(ctx);
  const size_t shape[] = {TASK_FEATURES, 64, 64, TASK_CLASSES};
  nn_model *model = support_model(ctx, shape, 3, NN_ACTIVATION_RELU,
                                  NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 5));
  SUPPORT_OK(ctx, nn_model_set_fusion(model, fusion));
  SUPPORT_OK(ctx, nn_model_set_precision(model, precision));
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.01f;
  options.l2_lambda = 0.001f;
  options.batch_size = 64;
  options.epochs = epochs;
  options.seed = 3;
  options.step_graphs = graphs;
  nn_train_summary summary;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &summary));
  training_run run = {0};
  run.count = nn_model_parameter_count(model);
  run.parameters = calloc(run.count, sizeof(float));
  SUPPORT_OK(ctx, nn_model_get_parameters(model, run.parameters, run.count));
  run.final_cost = summary.final_cost;
  run.steps_graphed = summary.steps_graphed;
  run.first_layer_fused = nn_model_layer_fused(model, 1);
  nn_metrics metrics;
  SUPPORT_OK(ctx, nn_model_evaluate(model, data, &metrics));
  run.accuracy = metrics.accuracy;
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  return run;
}

static training_run train_task(nn_context *ctx, nn_precision precision,
                               nn_fusion fusion, nn_step_graphs graphs) {
  return train_task_for(ctx, precision, fusion, graphs, 60);
}

static void assert_same_bits(const training_run *a, const training_run *b,
                             const char *what) {
  cr_assert_eq(a->count, b->count);
  cr_assert_eq(memcmp(a->parameters, b->parameters, a->count * sizeof(float)),
               0, "%s: parameters differ", what);
  cr_assert_eq(memcmp(&a->final_cost, &b->final_cost, sizeof a->final_cost), 0,
               "%s: final cost %.17g against %.17g", what, a->final_cost,
               b->final_cost);
}

/* The task and its accuracy threshold, checked where they can be: the CPU
 * (nothing fused or graphed there). */
Test(fusion, the_training_task_learns_on_the_cpu) {
  nn_context *ctx = support_cpu_context();
  training_run run =
      train_task(ctx, NN_PRECISION_FP32, NN_FUSION_AUTO, NN_STEP_GRAPHS_AUTO);
  cr_assert_geq(run.accuracy, 0.9, "accuracy %g", run.accuracy);
  cr_assert_eq(run.first_layer_fused, 0);
  cr_assert_eq(run.steps_graphed, 0);
  free(run.parameters);
  nn_context_destroy(ctx);
}

Test(fusion, fused_training_reruns_bit_for_bit_graphed_or_not_and_learns) {
  nn_context *ctx = support_gpu_context_or_skip();
  training_run eager =
      train_task(ctx, NN_PRECISION_BF16, NN_FUSION_AUTO, NN_STEP_GRAPHS_OFF);
  training_run again =
      train_task(ctx, NN_PRECISION_BF16, NN_FUSION_AUTO, NN_STEP_GRAPHS_OFF);
  training_run graphed =
      train_task(ctx, NN_PRECISION_BF16, NN_FUSION_AUTO, NN_STEP_GRAPHS_AUTO);
  training_run plain =
      train_task(ctx, NN_PRECISION_BF16, NN_FUSION_OFF, NN_STEP_GRAPHS_OFF);
  cr_assert_eq(eager.first_layer_fused, 1);
  cr_assert_eq(graphed.first_layer_fused, 1);
  cr_assert_eq(plain.first_layer_fused, 0);
  cr_assert_gt(graphed.steps_graphed, 0);
  assert_same_bits(&again, &eager, "fused rerun");
  assert_same_bits(&graphed, &eager, "fused, graphs against eager");
  cr_assert_geq(plain.accuracy, 0.85, "plain accuracy %g", plain.accuracy);
  cr_assert_geq(eager.accuracy, plain.accuracy - 0.03,
                "fused accuracy %g, plain %g", eager.accuracy, plain.accuracy);
  free(eager.parameters);
  free(again.parameters);
  free(graphed.parameters);
  free(plain.parameters);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* The epilogues are checked before layers fuse (cuda/epilogue_check.c)      */
/* ------------------------------------------------------------------------ */

/* How the emulator was told to get the bias gradients of the BGRAD
 * epilogues wrong (NNEMU_LT_BGRAD: "before-alpha" or "unmasked"), or NULL
 * (a GPU, or the emulator computing what nn relies on). */
static const char *emulated_wrong_bias_gradient(void) {
  const char *how = getenv("NNEMU_LT_BGRAD");
  return how && *how ? how : NULL;
}

/* On a fresh context the first step of a run is captured into a graph, and
 * a graph cannot hold the check: it runs before the capture, so that the
 * graphed run fuses just as an eager one does (same bits; plain bf16
 * training, which keeps in fp32 what fused layers hand over in bf16,
 * rounds differently). Where cuBLASLt's bias gradient is not what
 * the fused layers need, nothing fuses, graphed or eager: the runs are
 * plain ones bit for bit, and the context's notice names the epilogue and
 * how its bias gradient differed. */
Test(fusion, the_epilogues_are_checked_before_the_first_captured_step) {
  nn_context *ctx = support_gpu_context_or_skip();
  const char *wrong = emulated_wrong_bias_gradient();
  training_run graphed = train_task_for(ctx, NN_PRECISION_BF16, NN_FUSION_AUTO,
                                        NN_STEP_GRAPHS_AUTO, 3);
  char notice[4096];
  snprintf(notice, sizeof notice, "%s", nn_context_notice(ctx));
  training_run eager = train_task_for(ctx, NN_PRECISION_BF16, NN_FUSION_AUTO,
                                      NN_STEP_GRAPHS_OFF, 3);
  training_run plain = train_task_for(ctx, NN_PRECISION_BF16, NN_FUSION_OFF,
                                      NN_STEP_GRAPHS_AUTO, 3);
  cr_assert_gt(graphed.steps_graphed, 0);
  cr_assert_gt(plain.steps_graphed, 0);
  assert_same_bits(&graphed, &eager, "graphed against eager, both AUTO");
  if (!wrong) {
    cr_assert_eq(eager.first_layer_fused, 1);
    cr_assert_null(strstr(notice, "BGRAD"), "notice: %s", notice);
    /* Handing over in bf16 rounds what plain training keeps in fp32; in
     * fp32 the emulator's fused products give the plain bits. */
    if (bf16_outputs_offered())
      cr_assert_neq(memcmp(plain.parameters, eager.parameters,
                           plain.count * sizeof(float)),
                    0,
                    "fused and plain bf16 training round alike: this test "
                    "could not tell them apart");
  } else {
    cr_assert_eq(eager.first_layer_fused, 0);
    assert_same_bits(&graphed, &plain, "checked and refused against plain");
    cr_assert_not_null(strstr(notice, "DRELU_BGRAD"), "notice: %s", notice);
    const char *hint = strcmp(wrong, "before-alpha") == 0
                           ? "before the product's alpha"
                           : "without the activation's gradient";
    cr_assert_not_null(strstr(notice, hint), "notice: %s", notice);
    cr_log_info("notice: %s", notice);
  }
  free(graphed.parameters);
  free(eager.parameters);
  free(plain.parameters);
  nn_context_destroy(ctx);
}

/* In each precision, a pass of the model with fusion AUTO fuses no layer
 * and gives the bits of a pass with fusion OFF: Ŷ and every gradient. */
static void assert_nothing_fuses(nn_context *ctx, nn_model *model) {
  for (int p = 0; p < NN_PRECISION_COUNT; p++) {
    SUPPORT_OK(ctx, nn_model_set_precision(model, (nn_precision)p));
    const char *name = nn_precision_name((nn_precision)p);
    static pass_result tried, plain;
    run_pass(ctx, model, NN_FUSION_AUTO, 33, &tried);
    run_pass(ctx, model, NN_FUSION_OFF, 33, &plain);
    cr_assert_eq(memcmp(tried.yhat, plain.yhat, OUTPUTS * 33 * sizeof(float)),
                 0, "%s: Ŷ", name);
    for (size_t l = 0; l < LAYERS; l++) {
      cr_assert_eq(tried.fused[l], 0, "%s: layer %zu fused", name, l + 1);
      cr_assert_eq(memcmp(tried.gradients[l], plain.gradients[l],
                          plain.gradient_count[l] * sizeof(float)),
                   0, "%s: layer %zu gradients", name, l + 1);
    }
    free_pass(&tried);
    free_pass(&plain);
  }
}

/* The GELU epilogues too: where the emulator gets their bias gradient
 * wrong, a pass of the model with the fusable GELU-tanh layer fuses
 * nothing, in any precision, and gives the plain pass's bits. */
Test(fusion, epilogues_that_differ_fuse_nothing) {
  nn_context *ctx = support_gpu_context_or_skip();
  if (!emulated_wrong_bias_gradient()) {
    cr_log_info("cuBLASLt's bias gradients are as nn needs here: the other "
                "test covers this case");
    nn_context_destroy(ctx);
    return;
  }
  nn_model *model = make_model(ctx, 0.0f);
  assert_nothing_fuses(ctx, model);
  /* Each refused epilogue is noted, in each precision: the notes add up
   * rather than the last replacing the others. */
  const char *notice = nn_context_notice(ctx);
  for (int p = 0; p < NN_PRECISION_COUNT; p++)
    for (int e = 0; e < 2; e++) {
      char expected[64];
      snprintf(expected, sizeof expected, "%s (%s products",
               e ? "DGELU_BGRAD" : "DRELU_BGRAD",
               nn_precision_name((nn_precision)p));
      cr_assert_not_null(strstr(notice, expected), "no \"%s\" in: %s", expected,
                         notice);
    }
  cr_log_info("notice (%zu characters): %s", strlen(notice), notice);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* A heuristic that answers a fused product with an error status other
 * than NOT_SUPPORTED (the real one answers INVALID_VALUE to some shapes)
 * fails nothing: with the emulator told to answer so to every product
 * (NNEMU_LT_HEURISTIC=invalid-value), a pass in each precision fuses
 * nothing, gives the plain pass's bits, and the notice says why. */
Test(fusion, a_heuristic_that_refuses_leaves_the_plain_path) {
  nn_context *ctx = support_gpu_context_or_skip();
  const char *answer = getenv("NNEMU_LT_HEURISTIC");
  if (!answer || strcmp(answer, "invalid-value") != 0) {
    cr_log_info("the heuristic answers as usual here: "
                "test_fusion_heuristic_invalid-value covers this case");
    nn_context_destroy(ctx);
    return;
  }
  nn_model *model = make_model(ctx, 0.0f);
  assert_nothing_fuses(ctx, model);
  const char *notice = nn_context_notice(ctx);
  cr_assert_not_null(strstr(notice, "answered CUBLAS_STATUS_INVALID_VALUE"),
                     "notice: %s", notice);
  cr_assert_not_null(strstr(notice, "RELU_AUX_BIAS"), "notice: %s", notice);
  cr_log_info("notice: %s", notice);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}
