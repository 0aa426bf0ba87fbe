/*
 * checkpoint_metadata.c — the JSON in a checkpoint's __metadata__: the
 * architecture, the training settings and the resume state, written so
 * that every value reads back bit for bit, and read back with every field
 * checked (missing, wrong type, out of range, unknown name: NN_ERROR_FORMAT
 * naming the file and the field).
 */
#include "checkpoint.h"

#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* JSON numbers are doubles: integers are exact up to 2^53. */
#define JSON_MAX_INTEGER 9007199254740992ull

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */
/* ------------------------------------------------------------------------ */

/* printf's %g follows the locale's decimal point (setlocale may have made
 * it ","); JSON's is always ".". */
static void use_json_decimal_point(char *text) {
  for (; *text; text++)
    if (!strchr("0123456789+-eE", *text))
      *text = '.';
}

/* The shortest of 6..9 digits (else 17, exact for any float) that reads
 * back as this float the way the reader converts: strtod, then float. */
static bool add_float(cJSON *object, const char *key, float value) {
  if (!isfinite(value))
    return cJSON_AddNullToObject(object, key) != NULL;
  char text[40];
  for (int digits = 6; digits <= 10; digits++) {
    snprintf(text, sizeof text, "%.*g", digits == 10 ? 17 : digits,
             (double)value);
    if ((float)strtod(text, NULL) == value)
      break;
  }
  use_json_decimal_point(text);
  return cJSON_AddRawToObject(object, key, text) != NULL;
}

/* The shortest of 15..17 digits that reads back exactly. (cJSON's own
 * printer accepts a 15-digit form that is only approximately equal.) */
static bool add_double(cJSON *object, const char *key, double value) {
  if (!isfinite(value))
    return cJSON_AddNullToObject(object, key) != NULL;
  char text[40];
  for (int digits = 15; digits <= 17; digits++) {
    snprintf(text, sizeof text, "%.*g", digits, value);
    if (strtod(text, NULL) == value)
      break;
  }
  use_json_decimal_point(text);
  return cJSON_AddRawToObject(object, key, text) != NULL;
}

/* A number when exact as a double, else a string of digits. */
static bool add_integer(cJSON *object, const char *key, uint64_t value) {
  char text[24];
  snprintf(text, sizeof text, "%" PRIu64, value);
  if (value <= JSON_MAX_INTEGER)
    return cJSON_AddRawToObject(object, key, text) != NULL;
  return cJSON_AddStringToObject(object, key, text) != NULL;
}

/* The text of object (deleted), or NULL if anything failed. */
static char *print_and_delete(cJSON *object, bool ok) {
  char *text = ok && object ? cJSON_PrintUnformatted(object) : NULL;
  cJSON_Delete(object);
  return text;
}

static bool add_layer(cJSON *layers, const nnlib_layer *layer) {
  cJSON *object = cJSON_CreateObject();
  if (!object || !cJSON_AddItemToArray(layers, object)) {
    cJSON_Delete(object);
    return false;
  }
  return add_integer(object, "units", layer->units) &&
         cJSON_AddStringToObject(object, "activation",
                                 nn_activation_name(layer->activation)) &&
         add_float(object, "dropout", layer->dropout);
}

char *nnlib_architecture_json(const nn_model *model) {
  cJSON *object = cJSON_CreateObject();
  bool ok = object && add_integer(object, "input_width", model->input_width);
  cJSON *layers = ok ? cJSON_AddArrayToObject(object, "layers") : NULL;
  ok = layers != NULL;
  for (size_t l = 0; ok && l < model->layer_count; l++)
    ok = add_layer(layers, &model->layers[l]);
  ok = ok && cJSON_AddStringToObject(object, "loss", nn_loss_name(model->loss));
  return print_and_delete(object, ok);
}

char *nnlib_training_json(const nn_train_options *options) {
  const nn_optimizer_settings *optimizer = &options->optimizer;
  cJSON *object = cJSON_CreateObject();
  bool ok =
      object &&
      cJSON_AddStringToObject(object, "optimizer",
                              nn_optimizer_name(optimizer->kind)) &&
      add_float(object, "beta1", optimizer->beta1) &&
      add_float(object, "beta2", optimizer->beta2) &&
      add_float(object, "epsilon", optimizer->epsilon) &&
      add_float(object, "learning_rate", options->learning_rate) &&
      add_float(object, "decay_rate", options->decay_rate) &&
      add_float(object, "l2_lambda", options->l2_lambda) &&
      add_integer(object, "batch_size", options->batch_size) &&
      add_integer(object, "epochs", options->epochs) &&
      add_integer(object, "seed", options->seed) &&
      add_double(object, "validation_fraction", options->validation_fraction) &&
      add_integer(object, "early_stopping_patience",
                  options->early_stopping_patience) &&
      add_integer(object, "iteration_report_every",
                  options->iteration_report_every) &&
      add_integer(object, "max_iterations", options->max_iterations);
  return print_and_delete(object, ok);
}

char *nnlib_state_json(const nn_train_state *state, uint64_t optimizer_step) {
  cJSON *object = cJSON_CreateObject();
  bool ok =
      object && add_integer(object, "epoch", state->epoch) &&
      add_integer(object, "batch", state->batch) &&
      add_integer(object, "iteration", state->iteration) &&
      add_double(object, "epoch_cost_sum", state->epoch_cost_sum) &&
      add_double(object, "best_validation_cost", state->best_validation_cost) &&
      add_integer(object, "best_epoch", state->best_epoch) &&
      add_integer(object, "optimizer_step", optimizer_step);
  return print_and_delete(object, ok);
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */
/* ------------------------------------------------------------------------ */

/* Where a value is read from, for messages: the file and a field such as
 * "architecture" or "architecture layers[2]". */
typedef struct field_reader {
  nnlib_st_file *file;
  const char *where;
} field_reader;

static nn_status member(const field_reader *reader, const cJSON *object,
                        const char *key, const cJSON **out) {
  *out = cJSON_GetObjectItemCaseSensitive(object, key);
  if (*out)
    return NN_OK;
  return NNLIB_ST_FAIL(reader->file, NN_ERROR_FORMAT,
                       "__metadata__ %s has no \"%s\"", reader->where, key);
}

static nn_status bad_value(const field_reader *reader, const char *key,
                           const char *wanted) {
  return NNLIB_ST_FAIL(reader->file, NN_ERROR_FORMAT,
                       "__metadata__ %s: \"%s\" is not %s", reader->where, key,
                       wanted);
}

/* A string of decimal digits that fits in 64 bits. */
static bool parse_digits(const char *text, uint64_t *out) {
  if (!*text || strspn(text, "0123456789") != strlen(text))
    return false;
  errno = 0;
  unsigned long long value = strtoull(text, NULL, 10);
  if (errno == ERANGE || value > UINT64_MAX)
    return false;
  *out = (uint64_t)value;
  return true;
}

/* An integer: a JSON number in 0..2^53, or a string of digits. */
static nn_status read_u64(const field_reader *reader, const cJSON *object,
                          const char *key, uint64_t max, uint64_t *out) {
  const cJSON *item = NULL;
  nn_status status = member(reader, object, key, &item);
  if (status != NN_OK)
    return status;
  double number = cJSON_IsNumber(item) ? item->valuedouble : -1.0;
  bool ok = false;
  if (number >= 0.0 && number <= (double)JSON_MAX_INTEGER &&
      number == floor(number)) {
    *out = (uint64_t)number;
    ok = true;
  } else if (cJSON_IsString(item)) {
    ok = parse_digits(item->valuestring, out);
  }
  return ok && *out <= max ? NN_OK
                           : bad_value(reader, key,
                                       "a non-negative integer "
                                       "in range");
}

static nn_status read_size(const field_reader *reader, const cJSON *object,
                           const char *key, size_t *out) {
  uint64_t value = 0;
  nn_status status = read_u64(reader, object, key, SIZE_MAX, &value);
  if (status == NN_OK)
    *out = (size_t)value;
  return status;
}

/* A number, or null for NaN. */
static nn_status read_double(const field_reader *reader, const cJSON *object,
                             const char *key, double *out) {
  const cJSON *item = NULL;
  nn_status status = member(reader, object, key, &item);
  if (status != NN_OK)
    return status;
  if (cJSON_IsNull(item)) {
    *out = NAN;
    return NN_OK;
  }
  if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
    return bad_value(reader, key, "a finite number or null");
  *out = item->valuedouble;
  return NN_OK;
}

static nn_status read_float(const field_reader *reader, const cJSON *object,
                            const char *key, float *out) {
  double value = 0.0;
  nn_status status = read_double(reader, object, key, &value);
  if (status != NN_OK)
    return status;
  if (isfinite(value) && !isfinite((float)value))
    return bad_value(reader, key, "within float's range");
  *out = (float)value;
  return NN_OK;
}

static nn_status read_string(const field_reader *reader, const cJSON *object,
                             const char *key, const char **out) {
  const cJSON *item = NULL;
  nn_status status = member(reader, object, key, &item);
  if (status == NN_OK && !cJSON_IsString(item))
    status = bad_value(reader, key, "a string");
  if (status == NN_OK)
    *out = item->valuestring;
  return status;
}

/* A name that none of nn's *_from_name parsers knows. */
static nn_status unknown_name(const field_reader *reader, const char *key,
                              const char *name) {
  return NNLIB_ST_FAIL(reader->file, NN_ERROR_FORMAT,
                       "__metadata__ %s: \"%s\" has the unknown value "
                       "\"%.100s\"",
                       reader->where, key, name);
}

/* Parses the metadata value key as a JSON object; *out is NULL (and NN_OK
 * returned) when the key is absent and optional. */
static nn_status parse_object(nnlib_st_file *file, const char *key,
                              bool required, cJSON **out) {
  *out = NULL;
  const char *text = nnlib_st_metadata(file, key);
  if (!text && !required)
    return NN_OK;
  if (!text)
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT, "__metadata__ has no \"%s\"",
                         key);
  *out = cJSON_ParseWithOpts(text, NULL, 1);
  if (cJSON_IsObject(*out))
    return NN_OK;
  cJSON_Delete(*out);
  *out = NULL;
  return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                       "__metadata__ \"%s\" is not a JSON object", key);
}

/* ------------------------------------------------------------------------ */
/* Architecture                                                              */
/* ------------------------------------------------------------------------ */

static nn_status parse_layer(nnlib_st_file *file, const cJSON *item, size_t l,
                             nn_layer_spec *layer) {
  char where[64];
  snprintf(where, sizeof where, "architecture layers[%zu]", l);
  field_reader reader = {file, where};
  if (!cJSON_IsObject(item))
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "__metadata__ %s is not an object", where);
  nn_status status = read_size(&reader, item, "units", &layer->units);
  const char *name = NULL;
  if (status == NN_OK)
    status = read_string(&reader, item, "activation", &name);
  if (status == NN_OK &&
      nn_activation_from_name(name, &layer->activation) != NN_OK)
    status = unknown_name(&reader, "activation", name);
  if (status == NN_OK)
    status = read_float(&reader, item, "dropout", &layer->dropout);
  return status;
}

static nn_status parse_layers(nnlib_st_file *file, const cJSON *object,
                              nnlib_architecture *out) {
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(object, "layers");
  if (!cJSON_IsArray(layers))
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "__metadata__ architecture: \"layers\" is not an "
                         "array");
  size_t count = (size_t)cJSON_GetArraySize(layers), l = 0;
  nn_status status =
      nnlib_host_alloc(nnlib_st_context(file), count, sizeof *out->layers,
                       (void **)&out->layers);
  for (const cJSON *item = layers->child; status == NN_OK && item;
       item = item->next, l++)
    status = parse_layer(file, item, l, &out->layers[l]);
  out->spec.layers = out->layers;
  out->spec.layer_count = count;
  return status;
}

nn_status nnlib_parse_architecture(nnlib_st_file *file,
                                   nnlib_architecture *out) {
  memset(out, 0, sizeof *out);
  cJSON *object = NULL;
  field_reader reader = {file, "architecture"};
  nn_status status = parse_object(file, "architecture", true, &object);
  if (status == NN_OK)
    status = read_size(&reader, object, "input_width", &out->spec.input_width);
  if (status == NN_OK)
    status = parse_layers(file, object, out);
  const char *loss = NULL;
  if (status == NN_OK)
    status = read_string(&reader, object, "loss", &loss);
  if (status == NN_OK && nn_loss_from_name(loss, &out->spec.loss) != NN_OK)
    status = unknown_name(&reader, "loss", loss);
  cJSON_Delete(object);
  if (status != NN_OK) {
    free(out->layers);
    memset(out, 0, sizeof *out);
  }
  return status;
}

/* ------------------------------------------------------------------------ */
/* Training settings and state                                               */
/* ------------------------------------------------------------------------ */

static nn_status parse_training_fields(const field_reader *reader,
                                       const cJSON *object,
                                       nn_train_options *out) {
  nn_optimizer_settings *optimizer = &out->optimizer;
  const char *name = NULL;
  nn_status status = read_string(reader, object, "optimizer", &name);
  if (status == NN_OK &&
      nn_optimizer_from_name(name, &optimizer->kind) != NN_OK)
    status = unknown_name(reader, "optimizer", name);
  if (status == NN_OK)
    status = read_float(reader, object, "beta1", &optimizer->beta1);
  if (status == NN_OK)
    status = read_float(reader, object, "beta2", &optimizer->beta2);
  if (status == NN_OK)
    status = read_float(reader, object, "epsilon", &optimizer->epsilon);
  if (status == NN_OK)
    status = read_float(reader, object, "learning_rate", &out->learning_rate);
  if (status == NN_OK)
    status = read_float(reader, object, "decay_rate", &out->decay_rate);
  if (status == NN_OK)
    status = read_float(reader, object, "l2_lambda", &out->l2_lambda);
  if (status == NN_OK)
    status = read_size(reader, object, "batch_size", &out->batch_size);
  if (status == NN_OK)
    status = read_size(reader, object, "epochs", &out->epochs);
  if (status == NN_OK)
    status = read_u64(reader, object, "seed", UINT64_MAX, &out->seed);
  if (status == NN_OK)
    status = read_double(reader, object, "validation_fraction",
                         &out->validation_fraction);
  if (status == NN_OK)
    status = read_size(reader, object, "early_stopping_patience",
                       &out->early_stopping_patience);
  if (status == NN_OK)
    status = read_size(reader, object, "iteration_report_every",
                       &out->iteration_report_every);
  /* Not in checkpoints written before max_iterations existed: no limit. */
  if (status == NN_OK &&
      cJSON_GetObjectItemCaseSensitive(object, "max_iterations"))
    status = read_size(reader, object, "max_iterations", &out->max_iterations);
  return status;
}

nn_status nnlib_parse_training(nnlib_st_file *file, nn_train_options *out) {
  memset(out, 0, sizeof *out); /* callback, user data, resume: NULL */
  cJSON *object = NULL;
  field_reader reader = {file, "training"};
  nn_status status = parse_object(file, "training", true, &object);
  if (status == NN_OK)
    status = parse_training_fields(&reader, object, out);
  cJSON_Delete(object);
  return status;
}

nn_status nnlib_parse_state(nnlib_st_file *file, nn_train_state *out,
                            uint64_t *optimizer_step) {
  memset(out, 0, sizeof *out);
  cJSON *object = NULL;
  field_reader reader = {file, "state"};
  nn_status status = parse_object(file, "state", true, &object);
  if (status == NN_OK)
    status = read_size(&reader, object, "epoch", &out->epoch);
  if (status == NN_OK)
    status = read_size(&reader, object, "batch", &out->batch);
  if (status == NN_OK)
    status = read_size(&reader, object, "iteration", &out->iteration);
  if (status == NN_OK)
    status =
        read_double(&reader, object, "epoch_cost_sum", &out->epoch_cost_sum);
  if (status == NN_OK)
    status = read_double(&reader, object, "best_validation_cost",
                         &out->best_validation_cost);
  if (status == NN_OK)
    status = read_size(&reader, object, "best_epoch", &out->best_epoch);
  if (status == NN_OK)
    status =
        read_u64(&reader, object, "optimizer_step", UINT64_MAX, optimizer_step);
  cJSON_Delete(object);
  return status;
}
