/*
 * checkpoint.c — nn_model_save, nn_model_load, nn_model_load_parameters:
 * nn's tensor names on top of the safetensors reader and writer.
 *
 * Tensors (l = 0..L-1, PyTorch's numbering; the API's layer l+1):
 *   layers.{l}.weight  F32 [n[l+1], n[l]]  row-major W, nn.Linear's layout,
 *                                          which is the arena's: no transpose
 *   layers.{l}.bias    F32 [n[l+1]]
 *   optimizer.first_moment, optimizer.second_moment  F32 [parameter_count]
 *                                          (only with a resume state)
 * Everything is checked before anything is allocated from it: a model is
 * only created once every tensor's shape fits the architecture, so a file
 * cannot make the library allocate more than a few times its own size.
 */
#include "checkpoint.h"
#include "backend.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_MOMENT "optimizer.first_moment"
#define SECOND_MOMENT "optimizer.second_moment"
/* With a state, when the run was stopped with early stopping on. */
#define BEST_PARAMETERS "early_stopping.best_parameters"

/* "layers.18446744073709551615.weight" fits. */
#define NAME_SIZE 48

static void tensor_name(char *name, size_t l, const char *kind) {
  snprintf(name, NAME_SIZE, "layers.%zu.%s", l, kind);
}

/* ------------------------------------------------------------------------ */
/* Saving                                                                    */
/* ------------------------------------------------------------------------ */

/* Host copies of what a save writes. */
typedef struct snapshot {
  float *arena; /* parameters, then (with a state) the two moments */
  char *architecture, *training, *state; /* metadata JSON */
  nnlib_st_entry *entries;
  char (*names)[NAME_SIZE];
  size_t entry_count;
} snapshot;

static void snapshot_free(snapshot *saved) {
  free(saved->arena);
  cJSON_free(saved->architecture);
  cJSON_free(saved->training);
  cJSON_free(saved->state);
  free(saved->entries);
  free(saved->names);
}

static nn_status download_arenas(nn_model *model, snapshot *saved,
                                 bool with_state) {
  const size_t count = model->parameter_count;
  const float *sources[3] = {model->parameters, model->first_moment,
                             model->second_moment};
  size_t arenas = with_state ? 3 : 1, floats;
  if (!nnlib_checked_mul(count, arenas, &floats))
    return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_OUT_OF_MEMORY, "nn_model_save",
                           "%zu parameters overflow", count);
  nn_status status = nnlib_host_alloc(model->ctx, floats, sizeof(float),
                                      (void **)&saved->arena);
  /* A moment the model never needed is zeros (the host arena is
   * zero-filled), as it would be had it been allocated. */
  for (size_t i = 0; status == NN_OK && i < arenas; i++)
    if (sources[i])
      status = NNLIB_OPS(model)->download(NNLIB_BACKEND(model), model->ctx,
                                          saved->arena + i * count, sources[i],
                                          count);
  return status;
}

/* Entries in file order: layers.0.weight, layers.0.bias, ..., then the
 * moments. */
static nn_status build_entries(nn_model *model, snapshot *saved,
                               bool with_state) {
  const bool with_best = with_state && model->resume_best_parameters;
  const size_t count =
      2 * model->layer_count + (with_state ? 2 : 0) + (with_best ? 1 : 0);
  nn_status status = nnlib_host_alloc(model->ctx, count, sizeof *saved->entries,
                                      (void **)&saved->entries);
  if (status == NN_OK)
    status = nnlib_host_alloc(model->ctx, count, sizeof *saved->names,
                              (void **)&saved->names);
  if (status != NN_OK)
    return status;
  nnlib_st_entry *entry = saved->entries;
  for (size_t l = 0; l < model->layer_count; l++) {
    const nnlib_layer *layer = &model->layers[l];
    const float *weights = saved->arena + layer->param_offset;
    tensor_name(saved->names[2 * l], l, "weight");
    tensor_name(saved->names[2 * l + 1], l, "bias");
    *entry++ = (nnlib_st_entry){
        saved->names[2 * l], 2, {layer->units, layer->inputs}, weights};
    *entry++ = (nnlib_st_entry){saved->names[2 * l + 1],
                                1,
                                {layer->units, 0},
                                weights + layer->units * layer->inputs};
  }
  const size_t n = model->parameter_count;
  if (with_state) {
    *entry++ = (nnlib_st_entry){FIRST_MOMENT, 1, {n, 0}, saved->arena + n};
    *entry++ = (nnlib_st_entry){SECOND_MOMENT, 1, {n, 0}, saved->arena + 2 * n};
  }
  if (with_best)
    *entry++ = (nnlib_st_entry){
        BEST_PARAMETERS, 1, {n, 0}, model->resume_best_parameters};
  saved->entry_count = count;
  return NN_OK;
}

static nn_status build_metadata(nn_model *model, snapshot *saved,
                                const nn_train_options *options,
                                const nn_train_state *state) {
  saved->architecture = nnlib_architecture_json(model);
  if (options)
    saved->training = nnlib_training_json(options);
  if (state)
    saved->state = nnlib_state_json(state, model->optimizer_step);
  if (!saved->architecture || (options && !saved->training) ||
      (state && !saved->state))
    return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_OUT_OF_MEMORY, "nn_model_save",
                           "out of memory printing metadata");
  return NN_OK;
}

static nn_status write_snapshot(nn_model *model, const char *path,
                                const snapshot *saved) {
  nnlib_st_pair metadata[5] = {{"format", NNLIB_CHECKPOINT_FORMAT},
                               {"format_version", NNLIB_CHECKPOINT_VERSION},
                               {"architecture", saved->architecture}};
  size_t count = 3;
  if (saved->training)
    metadata[count++] = (nnlib_st_pair){"training", saved->training};
  if (saved->state)
    metadata[count++] = (nnlib_st_pair){"state", saved->state};
  return nnlib_st_write(model->ctx, "nn_model_save", path, metadata, count,
                        saved->entries, saved->entry_count);
}

nn_status nn_model_save(nn_model *model, const char *path,
                        const nn_train_options *options,
                        const nn_train_state *state) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  if (!path)
    return NNLIB_FAIL(model->ctx, NN_ERROR_INVALID_ARGUMENT, "path is NULL");
  if (options && ((int)options->optimizer.kind < 0 ||
                  options->optimizer.kind >= NN_OPTIMIZER_COUNT))
    return NNLIB_FAIL(model->ctx, NN_ERROR_INVALID_ARGUMENT,
                      "unknown optimizer %d", (int)options->optimizer.kind);
  snapshot saved = {0};
  nn_status status = download_arenas(model, &saved, state != NULL);
  if (status == NN_OK)
    status = build_entries(model, &saved, state != NULL);
  if (status == NN_OK)
    status = build_metadata(model, &saved, options, state);
  if (status == NN_OK)
    status = write_snapshot(model, path, &saved);
  snapshot_free(&saved);
  return status;
}

/* ------------------------------------------------------------------------ */
/* Checking tensors against a model's shapes                                 */
/* ------------------------------------------------------------------------ */

/* The shapes to load into: widths[0] = n_x, widths[l] = n[l], l = 1..L. */
typedef struct layer_shapes {
  const size_t *widths;
  size_t layer_count;
  const char *owner; /* "the model" or "the architecture" */
  nn_status missing; /* the status of an absent tensor */
} layer_shapes;

static bool shape_is(const nnlib_st_tensor *tensor, size_t rank,
                     const uint64_t *shape) {
  if (tensor->rank != rank)
    return false;
  for (size_t i = 0; i < rank; i++)
    if (tensor->shape[i] != shape[i])
      return false;
  return true;
}

/* A floating tensor named name of the given shape; what names the model's
 * side in messages ("layer 2", "layer 2 bias"). */
static nn_status expect_tensor(nnlib_st_file *file, const layer_shapes *shapes,
                               const char *name, size_t rank,
                               const uint64_t *shape, const char *what) {
  const nnlib_st_tensor *tensor = nnlib_st_find(file, name);
  char wanted[64], found[128];
  nnlib_st_format_shape(wanted, sizeof wanted, shape, rank);
  if (!tensor)
    return NNLIB_ST_FAIL(file, shapes->missing,
                         "has no tensor %s (%s's %s is %s)", name,
                         shapes->owner, what, wanted);
  if (!nnlib_st_is_float(tensor->dtype))
    return NNLIB_ST_FAIL(file, NN_ERROR_UNSUPPORTED,
                         "%s has dtype %s; parameters must be F32, F64, F16 "
                         "or BF16",
                         name, nnlib_st_dtype_name(tensor->dtype));
  if (shape_is(tensor, rank, shape))
    return NN_OK;
  nnlib_st_format_shape(found, sizeof found, tensor->shape, tensor->rank);
  return NNLIB_ST_FAIL(file, NN_ERROR_SHAPE_MISMATCH,
                       "%s has shape %s but %s's %s is %s", name, found,
                       shapes->owner, what, wanted);
}

static nn_status expect_layers(nnlib_st_file *file,
                               const layer_shapes *shapes) {
  nn_status status = NN_OK;
  for (size_t l = 0; status == NN_OK && l < shapes->layer_count; l++) {
    char name[NAME_SIZE], what[64];
    const uint64_t shape[2] = {shapes->widths[l + 1], shapes->widths[l]};
    tensor_name(name, l, "weight");
    snprintf(what, sizeof what, "layer %zu", l + 1);
    status = expect_tensor(file, shapes, name, 2, shape, what);
    tensor_name(name, l, "bias");
    snprintf(what, sizeof what, "layer %zu bias", l + 1);
    if (status == NN_OK)
      status = expect_tensor(file, shapes, name, 1, shape, what);
  }
  return status;
}

/* Whether name is layers.{l}.weight or layers.{l}.bias for l < count. */
static bool is_layer_tensor(const char *name, size_t count) {
  char *end = NULL;
  const char *digits = name + strlen("layers.");
  unsigned long long l = strtoull(digits, &end, 10);
  if (end == digits || l >= count)
    return false;
  char canonical[NAME_SIZE];
  tensor_name(canonical, (size_t)l, "weight");
  if (strcmp(name, canonical) == 0)
    return true;
  tensor_name(canonical, (size_t)l, "bias");
  return strcmp(name, canonical) == 0;
}

/* Tensors under "layers." that the model has no place for (a deeper
 * network, a batch-norm buffer) are refused rather than dropped; tensors
 * with other names are ignored. */
static nn_status reject_stray_layers(nnlib_st_file *file,
                                     const layer_shapes *shapes,
                                     nn_status status_if_stray) {
  for (size_t i = 0; i < nnlib_st_tensor_count(file); i++) {
    const char *name = nnlib_st_tensor_at(file, i)->name;
    if (strncmp(name, "layers.", strlen("layers.")) == 0 &&
        !is_layer_tensor(name, shapes->layer_count))
      return NNLIB_ST_FAIL(file, status_if_stray,
                           "tensor \"%.200s\" is not a weight or bias of "
                           "%s's %zu layer(s)",
                           name, shapes->owner, shapes->layer_count);
  }
  return NN_OK;
}

/* Σ n[l]·n[l-1] + n[l]: no overflow once the tensors have been checked,
 * since each one fits in the file. */
static size_t parameter_count(const layer_shapes *shapes) {
  size_t count = 0;
  for (size_t l = 0; l < shapes->layer_count; l++)
    count += shapes->widths[l + 1] * (shapes->widths[l] + 1);
  return count;
}

/* ------------------------------------------------------------------------ */
/* Reading tensors into host arenas                                          */
/* ------------------------------------------------------------------------ */

/* Reads a checked tensor and rejects NaN/Inf (and negative values when
 * non_negative: a second moment), naming the element. */
static nn_status read_values(nnlib_st_file *file, const char *name, float *out,
                             bool non_negative) {
  const nnlib_st_tensor *tensor = nnlib_st_find(file, name);
  nn_status status = nnlib_st_read_f32(file, tensor, out);
  if (status != NN_OK)
    return status;
  for (size_t i = 0; i < tensor->elements; i++)
    if (!isfinite(out[i]) || (non_negative && out[i] < 0.0f))
      return NNLIB_ST_FAIL(file, NN_ERROR_INVALID_DATA,
                           "%s: element %zu is %g%s", name, i, (double)out[i],
                           non_negative ? " (must be finite and >= 0)" : "");
  return NN_OK;
}

/* W[l] then b[l] per layer, back to back: the parameter arena's layout. */
static nn_status read_layers(nnlib_st_file *file, const layer_shapes *shapes,
                             float *arena) {
  nn_status status = NN_OK;
  for (size_t l = 0; status == NN_OK && l < shapes->layer_count; l++) {
    char name[NAME_SIZE];
    tensor_name(name, l, "weight");
    status = read_values(file, name, arena, false);
    arena += shapes->widths[l + 1] * shapes->widths[l];
    tensor_name(name, l, "bias");
    if (status == NN_OK)
      status = read_values(file, name, arena, false);
    arena += shapes->widths[l + 1];
  }
  return status;
}

/* Reads every parameter into a host buffer, then sets them at once (which
 * also resets the optimizer state and cached passes). */
static nn_status load_layers(nnlib_st_file *file, const layer_shapes *shapes,
                             nn_model *model) {
  float *arena = NULL;
  nn_status status = nnlib_host_alloc(model->ctx, model->parameter_count,
                                      sizeof *arena, (void **)&arena);
  if (status == NN_OK)
    status = read_layers(file, shapes, arena);
  if (status == NN_OK)
    status = nn_model_set_parameters(model, arena, model->parameter_count);
  free(arena);
  return status;
}

/* Uploads both moments and Adam's step; after the parameters, since
 * setting those resets the optimizer state. Both arenas are made: the file
 * does not say which optimizer the resumed run will use. */
static nn_status restore_optimizer(nnlib_st_file *file, nn_model *model,
                                   uint64_t step) {
  const size_t count = model->parameter_count;
  float *host = NULL;
  nn_status status = nnlib_model_prepare_optimizer(model, NN_OPTIMIZER_ADAM);
  if (status == NN_OK)
    status = nnlib_host_alloc(model->ctx, count, sizeof *host, (void **)&host);
  if (status == NN_OK)
    status = read_values(file, FIRST_MOMENT, host, false);
  if (status == NN_OK)
    status = NNLIB_OPS(model)->upload(NNLIB_BACKEND(model), model->ctx,
                                      model->first_moment, host, count);
  if (status == NN_OK)
    status = read_values(file, SECOND_MOMENT, host, true);
  if (status == NN_OK)
    status = NNLIB_OPS(model)->upload(NNLIB_BACKEND(model), model->ctx,
                                      model->second_moment, host, count);
  if (status == NN_OK)
    model->optimizer_step = step;
  free(host);
  return status;
}

/* The best parameters of a run stopped with early stopping on, if saved. */
static nn_status restore_best_parameters(nnlib_st_file *file, nn_model *model) {
  if (!nnlib_st_find(file, BEST_PARAMETERS))
    return NN_OK;
  float *host = NULL;
  nn_status status = nnlib_host_alloc(model->ctx, model->parameter_count,
                                      sizeof *host, (void **)&host);
  if (status == NN_OK)
    status = read_values(file, BEST_PARAMETERS, host, false);
  if (status != NN_OK) {
    free(host);
    return status;
  }
  free(model->resume_best_parameters);
  model->resume_best_parameters = host;
  return NN_OK;
}

/* ------------------------------------------------------------------------ */
/* nn_model_load                                                             */
/* ------------------------------------------------------------------------ */

/* Everything read from a checkpoint before the model exists. */
typedef struct checkpoint {
  nnlib_architecture architecture;
  size_t *widths; /* n[0..L] */
  layer_shapes shapes;
  bool has_training, has_state;
  nn_train_options training;
  nn_train_state state;
  uint64_t optimizer_step;
} checkpoint;

static nn_status check_format(nnlib_st_file *file) {
  const char *format = nnlib_st_metadata(file, "format");
  const char *version = nnlib_st_metadata(file, "format_version");
  if (!format || strcmp(format, NNLIB_CHECKPOINT_FORMAT) != 0)
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "not an nn checkpoint (__metadata__ \"format\" is "
                         "not \"" NNLIB_CHECKPOINT_FORMAT "\"); parameters "
                         "alone load with nn_model_load_parameters");
  if (!version || strcmp(version, NNLIB_CHECKPOINT_VERSION) != 0)
    return NNLIB_ST_FAIL(file, NN_ERROR_UNSUPPORTED,
                         "checkpoint format_version \"%.40s\" is not the "
                         "one this library reads (" NNLIB_CHECKPOINT_VERSION
                         ")",
                         version ? version : "(missing)");
  return NN_OK;
}

static nn_status collect_widths(nnlib_st_file *file, checkpoint *loaded) {
  const nn_model_spec *spec = &loaded->architecture.spec;
  nn_status status =
      nnlib_host_alloc(nnlib_st_context(file), spec->layer_count + 1,
                       sizeof *loaded->widths, (void **)&loaded->widths);
  if (status != NN_OK)
    return status;
  loaded->widths[0] = spec->input_width;
  for (size_t l = 0; l < spec->layer_count; l++)
    loaded->widths[l + 1] = spec->layers[l].units;
  loaded->shapes = (layer_shapes){loaded->widths, spec->layer_count,
                                  "the architecture", NN_ERROR_FORMAT};
  return NN_OK;
}

static nn_status expect_moments(nnlib_st_file *file, checkpoint *loaded) {
  const uint64_t shape[1] = {parameter_count(&loaded->shapes)};
  nn_status status = expect_tensor(file, &loaded->shapes, FIRST_MOMENT, 1,
                                   shape, "parameter count");
  if (status == NN_OK)
    status = expect_tensor(file, &loaded->shapes, SECOND_MOMENT, 1, shape,
                           "parameter count");
  return status;
}

/* Reads and checks all metadata and every tensor's dtype and shape. */
static nn_status read_checkpoint(nnlib_st_file *file, checkpoint *loaded) {
  nn_status status = check_format(file);
  if (status == NN_OK)
    status = nnlib_parse_architecture(file, &loaded->architecture);
  loaded->has_training = nnlib_st_metadata(file, "training") != NULL;
  loaded->has_state = nnlib_st_metadata(file, "state") != NULL;
  if (status == NN_OK && loaded->has_training)
    status = nnlib_parse_training(file, &loaded->training);
  if (status == NN_OK && loaded->has_state)
    status = nnlib_parse_state(file, &loaded->state, &loaded->optimizer_step);
  if (status == NN_OK)
    status = collect_widths(file, loaded);
  if (status == NN_OK)
    status = expect_layers(file, &loaded->shapes);
  if (status == NN_OK)
    status = reject_stray_layers(file, &loaded->shapes, NN_ERROR_FORMAT);
  if (status == NN_OK && loaded->has_state)
    status = expect_moments(file, loaded);
  if (status == NN_OK && loaded->has_state &&
      nnlib_st_find(file, BEST_PARAMETERS)) {
    const uint64_t shape[1] = {parameter_count(&loaded->shapes)};
    status = expect_tensor(file, &loaded->shapes, BEST_PARAMETERS, 1, shape,
                           "parameter count");
  }
  return status;
}

/* nn_model_create validates the spec; a spec it refuses makes the file
 * malformed. */
static nn_status create_model(nnlib_st_file *file, const checkpoint *loaded,
                              nn_model **out) {
  nn_context *ctx = nnlib_st_context(file);
  nn_status status = nn_model_create(ctx, &loaded->architecture.spec, out);
  if (status != NN_ERROR_INVALID_SPEC)
    return status;
  char reason[NNLIB_ERROR_CAPACITY];
  snprintf(reason, sizeof reason, "%s", nn_context_last_error(ctx));
  return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                       "__metadata__ architecture is not a valid model: %s",
                       reason);
}

static nn_status build_model(nnlib_st_file *file, const checkpoint *loaded,
                             bool restore_state, nn_model **out) {
  nn_model *model = NULL;
  nn_status status = create_model(file, loaded, &model);
  if (status == NN_OK)
    status = load_layers(file, &loaded->shapes, model);
  if (status == NN_OK && restore_state)
    status = restore_optimizer(file, model, loaded->optimizer_step);
  if (status == NN_OK && restore_state)
    status = restore_best_parameters(file, model);
  if (status != NN_OK) {
    nn_model_destroy(model);
    return status;
  }
  *out = model;
  return NN_OK;
}

/* The outputs are written only once everything has succeeded. */
static nn_status load_checkpoint(nnlib_st_file *file, nn_model **out,
                                 nn_train_options *options,
                                 nn_train_state *state, int *has_state) {
  checkpoint loaded = {0};
  nn_status status = read_checkpoint(file, &loaded);
  const bool restore_state = state && loaded.has_state;
  if (status == NN_OK)
    status = build_model(file, &loaded, restore_state, out);
  if (status == NN_OK && options && loaded.has_training)
    *options = loaded.training;
  if (status == NN_OK && restore_state)
    *state = loaded.state;
  if (status == NN_OK && has_state)
    *has_state = loaded.has_state;
  free(loaded.architecture.layers);
  free(loaded.widths);
  return status;
}

nn_status nnlib_model_load_memory(nn_context *ctx, const char *name,
                                  const void *bytes, size_t size,
                                  nn_model **out, nn_train_options *options,
                                  nn_train_state *state, int *has_state) {
  *out = NULL;
  nnlib_st_file *file = NULL;
  nn_status status =
      nnlib_st_open_memory(ctx, "nn_model_load", name, bytes, size, &file);
  if (status == NN_OK)
    status = load_checkpoint(file, out, options, state, has_state);
  nnlib_st_close(file);
  return status;
}

nn_status nn_model_load(nn_context *ctx, const char *path, nn_model **out,
                        nn_train_options *options, nn_train_state *state,
                        int *has_state) {
  if (!ctx)
    return NN_ERROR_INVALID_ARGUMENT;
  if (!out || !path)
    return NNLIB_FAIL(ctx, NN_ERROR_INVALID_ARGUMENT, "%s is NULL",
                      out ? "path" : "out");
  *out = NULL;
  nnlib_st_file *file = NULL;
  nn_status status = nnlib_st_open(ctx, __func__, path, &file);
  if (status == NN_OK)
    status = load_checkpoint(file, out, options, state, has_state);
  nnlib_st_close(file);
  return status;
}

/* ------------------------------------------------------------------------ */
/* nn_model_load_parameters                                                  */
/* ------------------------------------------------------------------------ */

static nn_status load_parameters_from(nnlib_st_file *file, nn_model *model) {
  size_t *widths = NULL;
  nn_status status = nnlib_host_alloc(model->ctx, model->layer_count + 1,
                                      sizeof *widths, (void **)&widths);
  if (status != NN_OK)
    return status;
  widths[0] = model->input_width;
  for (size_t l = 0; l < model->layer_count; l++)
    widths[l + 1] = model->layers[l].units;
  const layer_shapes shapes = {widths, model->layer_count, "the model",
                               NN_ERROR_SHAPE_MISMATCH};
  status = expect_layers(file, &shapes);
  if (status == NN_OK)
    status = reject_stray_layers(file, &shapes, NN_ERROR_SHAPE_MISMATCH);
  if (status == NN_OK)
    status = load_layers(file, &shapes, model);
  free(widths);
  return status;
}

nn_status nnlib_model_load_parameters_memory(nn_model *model, const char *name,
                                             const void *bytes, size_t size) {
  nnlib_st_file *file = NULL;
  nn_status status = nnlib_st_open_memory(
      model->ctx, "nn_model_load_parameters", name, bytes, size, &file);
  if (status == NN_OK)
    status = load_parameters_from(file, model);
  nnlib_st_close(file);
  return status;
}

nn_status nn_model_load_parameters(nn_model *model, const char *path) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  NNLIB_REFUSE_WHILE_TRAINING(model);
  if (!path)
    return NNLIB_FAIL(model->ctx, NN_ERROR_INVALID_ARGUMENT, "path is NULL");
  nnlib_st_file *file = NULL;
  nn_status status = nnlib_st_open(model->ctx, __func__, path, &file);
  if (status == NN_OK)
    status = load_parameters_from(file, model);
  nnlib_st_close(file);
  return status;
}
