/*
 * step_log.c — per-step cost records and timer events, read in bulk (see
 * step_log.h).
 *
 * Layout: device_records and host_records hold capacity records of
 * record_doubles each (nnlib_cost_record's record: the loss sum, then
 * Σ W² per layer when λ > 0). Timer events form a ring of capacity + 1:
 * events[previous] is the end of the last step already read (or the start
 * of the run), and pending step i ends at events[(previous + 1 + i) mod
 * (capacity + 1)], so a step's time is always the interval between two
 * events of the ring and no event is recorded again before it has been
 * read.
 */
#include "step_log.h"

#include "backend.h"

#include <math.h>
#include <stdlib.h>

struct nnlib_step_log {
  nn_model *model;
  float l2_lambda;
  size_t capacity;
  size_t record_doubles;
  double *device_records;    /* backend memory */
  double *host_records;      /* host */
  nnlib_step_entry *entries; /* host, capacity */
  size_t pending;            /* committed since the last read */
  nnlib_event *events;       /* capacity + 1 timer events, or NULL */
  size_t previous;           /* index in events, see above */
};

static nnlib_backend *log_backend(const nnlib_step_log *log) {
  return NNLIB_BACKEND(log->model);
}

static nn_status create_events(nnlib_step_log *log) {
  nn_context *ctx = log->model->ctx;
  nnlib_backend *backend = log_backend(log);
  nn_status status = nnlib_host_alloc(
      ctx, log->capacity + 1, sizeof *log->events, (void **)&log->events);
  for (size_t e = 0; status == NN_OK && e <= log->capacity; e++)
    status = backend->ops->timer_create(backend, ctx, &log->events[e]);
  return status;
}

nn_status nnlib_step_log_create(nn_model *model, size_t capacity,
                                float l2_lambda, bool timing,
                                nnlib_step_log **out) {
  *out = NULL;
  nnlib_step_log *log = NULL;
  nn_status status =
      nnlib_host_alloc(model->ctx, 1, sizeof *log, (void **)&log);
  if (status != NN_OK)
    return status;
  log->model = model;
  log->l2_lambda = l2_lambda;
  log->capacity = capacity > 0 ? capacity : 1;
  log->record_doubles = l2_lambda > 0.0f ? NNLIB_COST_RECORD_DOUBLES(model) : 1;
  const size_t doubles = log->capacity * log->record_doubles;
  status = nnlib_backend_alloc_doubles(log_backend(log), model->ctx, doubles,
                                       &log->device_records);
  if (status == NN_OK)
    status = nnlib_host_alloc(model->ctx, doubles, sizeof *log->host_records,
                              (void **)&log->host_records);
  if (status == NN_OK)
    status = nnlib_host_alloc(model->ctx, log->capacity, sizeof *log->entries,
                              (void **)&log->entries);
  if (status == NN_OK && timing)
    status = create_events(log);
  if (status != NN_OK) {
    nnlib_step_log_destroy(log);
    return status;
  }
  *out = log;
  return NN_OK;
}

void nnlib_step_log_destroy(nnlib_step_log *log) {
  if (!log)
    return;
  nnlib_backend *backend = log_backend(log);
  if (log->events)
    for (size_t e = 0; e <= log->capacity; e++)
      backend->ops->event_destroy(backend, log->events[e]);
  free(log->events);
  backend->ops->release(backend, (float *)(void *)log->device_records);
  free(log->host_records);
  free(log->entries);
  free(log);
}

static nn_status record_event(nnlib_step_log *log, size_t index) {
  nnlib_backend *backend = log_backend(log);
  return backend->ops->compute_record(backend, log->model->ctx,
                                      log->events[index]);
}

nn_status nnlib_step_log_start(nnlib_step_log *log) {
  return log->events ? record_event(log, log->previous) : NN_OK;
}

double *nnlib_step_log_next_record(nnlib_step_log *log) {
  return log->device_records + log->pending * log->record_doubles;
}

bool nnlib_step_log_full(const nnlib_step_log *log) {
  return log->pending == log->capacity;
}

/* The ring index of pending step i's end. */
static size_t event_of_step(const nnlib_step_log *log, size_t i) {
  return (log->previous + 1 + i) % (log->capacity + 1);
}

nn_status nnlib_step_log_commit(nnlib_step_log *log,
                                const nnlib_step_entry *entry) {
  nn_status status = NN_OK;
  if (log->events)
    status = record_event(log, event_of_step(log, log->pending));
  if (status == NN_OK)
    log->entries[log->pending++] = *entry;
  return status;
}

/* Pending step i's time: from the end of the step before it. */
static nn_status read_time(nnlib_step_log *log, size_t i, float *ms) {
  nnlib_backend *backend = log_backend(log);
  size_t start = i == 0 ? log->previous : event_of_step(log, i - 1);
  return backend->ops->elapsed_ms(backend, log->model->ctx, log->events[start],
                                  log->events[event_of_step(log, i)], ms);
}

nn_status nnlib_step_log_read(nnlib_step_log *log,
                              const nnlib_step_entry **entries, size_t *count) {
  nnlib_backend *backend = log_backend(log);
  const size_t pending = log->pending;
  *entries = log->entries;
  *count = 0;
  if (pending == 0)
    return NN_OK;
  /* Record i is written by step i's loss reduction, issued on the compute
   * stream like the download, which waits for it. */
  nn_status status = backend->ops->download(
      backend, log->model->ctx, (float *)(void *)log->host_records,
      (const float *)(const void *)log->device_records,
      2 * pending * log->record_doubles);
  for (size_t i = 0; status == NN_OK && i < pending; i++) {
    nnlib_step_entry *entry = &log->entries[i];
    entry->cost = nnlib_cost_of_record(
        log->model, log->host_records + i * log->record_doubles,
        entry->examples, log->l2_lambda);
    entry->time_ms = NAN;
    if (log->events)
      status = read_time(log, i, &entry->time_ms);
  }
  if (status != NN_OK)
    return status;
  if (log->events)
    log->previous = event_of_step(log, pending - 1);
  log->pending = 0;
  *count = pending;
  return NN_OK;
}
