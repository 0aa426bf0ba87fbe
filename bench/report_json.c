/*
 * report_json.c — the result as a JSON record (fields documented in
 * bench/README.md), written atomically: a temporary file next to the
 * target, fsync, rename. Figures that do not apply are null.
 */
#include "bench.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BENCH_JSON_SCHEMA_VERSION 1

static void add_number(cJSON *object, const char *name, double value) {
  if (isnan(value) || isinf(value))
    cJSON_AddNullToObject(object, name);
  else
    cJSON_AddNumberToObject(object, name, value);
}

static void add_string_or_null(cJSON *object, const char *name,
                               const char *value) {
  if (value)
    cJSON_AddStringToObject(object, name, value);
  else
    cJSON_AddNullToObject(object, name);
}

/* Seconds -> {"median", "min", "max", "mean"} in milliseconds, or null. */
static void add_stats_ms(cJSON *object, const char *name,
                         const bench_stats *stats) {
  if (stats->count == 0) {
    cJSON_AddNullToObject(object, name);
    return;
  }
  cJSON *times = cJSON_AddObjectToObject(object, name);
  add_number(times, "median", 1e3 * stats->median);
  add_number(times, "min", 1e3 * stats->min);
  add_number(times, "max", 1e3 * stats->max);
  add_number(times, "mean", 1e3 * stats->mean);
  add_number(times, "count", (double)stats->count);
}

static void add_model(cJSON *root, const bench_report *report) {
  const bench_model *model = &report->config->model;
  cJSON *object = cJSON_AddObjectToObject(root, "model");
  cJSON *layers = cJSON_AddArrayToObject(object, "layers");
  for (size_t l = 0; l <= model->layer_count; l++)
    cJSON_AddItemToArray(layers, cJSON_CreateNumber((double)model->widths[l]));
  add_string_or_null(object, "preset", report->config->preset);
  cJSON_AddStringToObject(object, "hidden_activation", "relu");
  cJSON_AddStringToObject(object, "output_activation", "softmax");
  cJSON_AddStringToObject(object, "loss", "categorical_cross_entropy");
  add_number(object, "parameters", (double)report->parameter_count);
}

static void add_run(cJSON *root, const bench_report *report) {
  const bench_config *config = report->config;
  cJSON *run = cJSON_AddObjectToObject(root, "run");
  cJSON_AddStringToObject(run, "backend", report->on_cuda ? "cuda" : "cpu");
  cJSON_AddStringToObject(run, "device", report->backend_name);
  add_number(run, "batch_size", (double)config->batch_size);
  cJSON_AddStringToObject(run, "precision", config->precision);
  cJSON_AddStringToObject(
      run, "data", report->measurement->data_resident ? "resident" : "stream");
  cJSON_AddStringToObject(run, "step_graphs",
                          config->step_graphs == NN_STEP_GRAPHS_OFF ? "off"
                                                                    : "auto");
  add_number(run, "steps_graphed", (double)report->measurement->steps_graphed);
  cJSON_AddStringToObject(run, "fusion", nn_fusion_name(config->fusion));
  add_number(run, "fused_layers", (double)report->measurement->fused_layers);
  const char *notice = report->measurement->notice;
  add_string_or_null(run, "notice", notice[0] ? notice : NULL);
  add_number(run, "steps_run", (double)report->measurement->steps_run);
  cJSON_AddStringToObject(run, "optimizer",
                          nn_optimizer_name(config->optimizer));
  add_number(run, "learning_rate", BENCH_LEARNING_RATE);
  add_number(run, "seed", (double)config->seed);
  add_number(run, "warmup_steps", (double)config->warmup_steps);
  add_number(run, "timed_steps", (double)config->timed_steps);
  add_number(run, "examples", (double)report->examples);
  add_number(run, "batches_per_epoch", (double)report->batches_per_epoch);
  add_number(run, "epoch_start_steps_excluded",
             (double)report->epoch_starts.count);
}

static void add_speed(cJSON *root, const bench_report *report,
                      const bench_metrics *metrics) {
  cJSON_AddStringToObject(root, "timer",
                          bench_timer_description(report->on_cuda));
  add_stats_ms(root, "step_time_ms", &report->steps);
  add_stats_ms(root, "epoch_start_step_time_ms", &report->epoch_starts);
  add_number(root, "samples_per_second", metrics->samples_per_second);
  add_number(root, "flops_per_step", report->flops_per_step);
  add_number(root, "achieved_tflops", metrics->achieved_tflops);
  add_number(root, "peak_tflops", report->peak.tflops);
  add_string_or_null(root, "peak_device", report->peak.device);
  add_string_or_null(root, "peak_source",
                     report->peak.device ? bench_peak_source : NULL);
  add_number(root, "fraction_of_peak", metrics->fraction_of_peak);
}

static void add_floor(cJSON *root, const bench_report *report,
                      const bench_metrics *metrics) {
  const bench_gemm_floor *floor = &report->floor;
  if (!floor->measured) {
    cJSON_AddNullToObject(root, "gemm_floor");
    return;
  }
  cJSON *object = cJSON_AddObjectToObject(root, "gemm_floor");
  cJSON_AddStringToObject(object, "library", floor->library);
  cJSON_AddStringToObject(object, "timer", floor->timer);
  add_number(object, "gemms_per_step",
             (double)bench_gemms_per_step(&report->config->model));
  add_number(object, "passes", (double)floor->passes);
  add_number(object, "median_ms", 1e3 * floor->pass.median);
  add_number(object, "min_ms", 1e3 * floor->pass.min);
  add_number(object, "max_ms", 1e3 * floor->pass.max);
  add_number(object, "tflops", metrics->floor_tflops);
  add_number(object, "step_over_floor", metrics->step_over_floor);
}

static void add_transfer(cJSON *root, const bench_report *report,
                         const bench_metrics *metrics) {
  if (!report->transfer.measured) {
    cJSON_AddNullToObject(root, "host_to_device");
    return;
  }
  cJSON *object = cJSON_AddObjectToObject(root, "host_to_device");
  add_number(object, "bytes_per_step", report->transfer.bytes_per_step);
  add_number(object, "required_gb_per_s", metrics->required_gb_per_s);
  add_number(object, "pinned_copy_ms", 1e3 * report->transfer.copy.median);
  add_number(object, "pinned_copy_gb_per_s", metrics->copy_gb_per_s);
  add_number(object, "copy_fraction_of_step", metrics->copy_fraction);
}

static void add_memory(cJSON *root, const bench_report *report,
                       const bench_metrics *metrics) {
  const bench_memory_plan *plan = &report->memory;
  const bench_device_memory *device = &report->measurement->memory;
  cJSON *object = cJSON_AddObjectToObject(root, "memory");
  add_number(object, "minimum_bytes", plan->minimum);
  add_number(object, "parameters_bytes", plan->parameters);
  add_number(object, "gradients_bytes", plan->gradients);
  add_number(object, "optimizer_state_bytes", plan->optimizer_state);
  add_number(object, "activations_bytes", plan->activations);
  add_number(object, "library_layout_bytes", plan->library_layout);
  add_number(object, "device_used_bytes", metrics->device_used_bytes);
  add_number(object, "device_total_bytes",
             device->known ? (double)device->total : NAN);
}

static void add_gpu(cJSON *environment, const bench_gpu *gpu) {
  char text[64];
  cJSON *object = cJSON_AddObjectToObject(environment, "gpu");
  cJSON_AddStringToObject(object, "name", gpu->name);
  add_number(object, "index", gpu->index);
  snprintf(text, sizeof text, "%d.%d", gpu->compute_major, gpu->compute_minor);
  cJSON_AddStringToObject(object, "compute_capability", text);
  add_number(object, "multiprocessors", gpu->multiprocessors);
  add_number(object, "memory_bytes", (double)gpu->memory_bytes);
  add_string_or_null(object, "driver_release",
                     gpu->driver_release[0] ? gpu->driver_release : NULL);
  snprintf(text, sizeof text, "%d.%d", gpu->driver_cuda_version / 1000,
           gpu->driver_cuda_version % 1000 / 10);
  cJSON_AddStringToObject(object, "driver_cuda_version", text);
  snprintf(text, sizeof text, "%d.%d", gpu->runtime_version / 1000,
           gpu->runtime_version % 1000 / 10);
  cJSON_AddStringToObject(object, "runtime_version", text);
  snprintf(text, sizeof text, "%d.%d.%d", gpu->cublas_version[0],
           gpu->cublas_version[1], gpu->cublas_version[2]);
  cJSON_AddStringToObject(object, "cublas_version", text);
  add_number(object, "sm_clock_max_mhz", gpu->sm_clock_max_khz / 1000.0);
  add_number(object, "memory_clock_max_mhz",
             gpu->memory_clock_max_khz / 1000.0);
}

static void add_environment(cJSON *root, const bench_environment *machine) {
  cJSON *object = cJSON_AddObjectToObject(root, "environment");
  cJSON_AddStringToObject(object, "cpu_model", machine->cpu_model);
  add_number(object, "cpu_cores", (double)machine->cpu_cores);
  add_number(object, "blas_threads", machine->blas_threads);
  cJSON_AddStringToObject(object, "blas_core", machine->blas_core);
  if (machine->has_gpu)
    add_gpu(object, &machine->gpu);
  else
    cJSON_AddNullToObject(object, "gpu");
}

static cJSON *build_record(const bench_report *report) {
  bench_metrics metrics = bench_derive(report);
  cJSON *root = cJSON_CreateObject();
  if (!root)
    return NULL;
  add_number(root, "schema_version", BENCH_JSON_SCHEMA_VERSION);
  cJSON_AddStringToObject(root, "tool", "nnbench");
  cJSON_AddStringToObject(root, "date", report->environment->date_utc);
  cJSON_AddStringToObject(root, "commit", report->environment->commit);
  add_model(root, report);
  add_run(root, report);
  add_speed(root, report, &metrics);
  add_floor(root, report, &metrics);
  add_transfer(root, report, &metrics);
  add_memory(root, report, &metrics);
  add_environment(root, report->environment);
  return root;
}

/* The mode a new file gets: 0666 less the umask (mkstemp makes 0600). */
static int new_file_mode(void) {
  mode_t mask = umask(0);
  umask(mask);
  return 0666 & ~mask;
}

static bool write_atomically(const char *path, const char *text, char *error,
                             size_t error_size) {
  size_t length = strlen(path) + sizeof ".tmp.XXXXXX";
  char *temporary = malloc(length);
  if (!temporary) {
    snprintf(error, error_size, "--json: out of memory");
    return false;
  }
  snprintf(temporary, length, "%s.tmp.XXXXXX", path);
  int descriptor = mkstemp(temporary);
  FILE *file = descriptor >= 0 ? fdopen(descriptor, "w") : NULL;
  bool ok = file && fchmod(descriptor, (mode_t)new_file_mode()) == 0 &&
            fputs(text, file) >= 0 && fputc('\n', file) != EOF &&
            fflush(file) == 0 && fsync(descriptor) == 0;
  int failure = ok ? 0 : errno;
  if (file && fclose(file) != 0 && ok)
    ok = false, failure = errno;
  if (!file && descriptor >= 0)
    close(descriptor);
  if (ok && rename(temporary, path) != 0)
    ok = false, failure = errno;
  if (!ok) {
    snprintf(error, error_size, "--json: cannot write %s: %s", path,
             strerror(failure));
    if (descriptor >= 0)
      unlink(temporary);
  }
  free(temporary);
  return ok;
}

bool bench_write_json(const bench_report *report, const char *path, char *error,
                      size_t error_size) {
  cJSON *root = build_record(report);
  char *text = root ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!text) {
    snprintf(error, error_size, "--json: out of memory");
    return false;
  }
  bool ok = write_atomically(path, text, error, error_size);
  cJSON_free(text);
  return ok;
}
