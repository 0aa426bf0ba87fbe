/*
 * feeder.c — mini-batches from host memory to the backend: producer
 * threads and pinned staging slots (streaming), or a resident copy.
 *
 * Streaming timeline for batch b (S staging slots, slot s = b % S; device
 * buffer d = b % DEVICE_BUFFERS):
 *   a producer: takes b (the lowest batch not taken yet) once slot s is
 *             free, i.e. once batch b - S has handed it back; gathers batch
 *             b's columns into it, marks it ready. Several producers fill
 *             b, b + 1, ... at once, each into its own slot.
 *   training: wait until slot s is ready; copy stream waits for the step
 *             that last read buffer d; upload slot s -> buffer d, record
 *             copied[s]; compute stream waits for copied[s]; the step runs;
 *             release() records consumed[d] on the compute stream
 *   training, at batch b + 1: waits (host) for copied[s] — long done by
 *             then — and hands slot s back to the producers
 * The training thread takes the slots in batch order whichever producer
 * filled them, so the batches, and so the results, are the same bit for
 * bit for any number of producers. S = producers + SPARE_SLOTS: one slot
 * per producer being filled, one ready for the next step, one whose upload
 * is in flight.
 * Only the training thread calls the backend, so errors land on the context
 * from one thread; the producers only copy host memory.
 */
#include "feeder.h"

#include "backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEVICE_BUFFERS 2
#define MAX_PRODUCERS 16 /* the most NN_FEEDER_THREADS may ask for */
#define DEFAULT_MAX_PRODUCERS 4
/* Slots beyond one per producer: the one ready for the next step, and the
 * one whose upload is in flight. */
#define SPARE_SLOTS 2
#define MAX_SLOTS (MAX_PRODUCERS + SPARE_SLOTS)
/* Pinned staging is not pageable: more producers are used only while their
 * slots fit in this, and never fewer than one producer (three slots). */
#define STAGING_BUDGET_BYTES (2.0 * 1024 * 1024 * 1024)

typedef enum slot_state {
  SLOT_EMPTY,  /* free for a producer, or being filled by one */
  SLOT_READY,  /* holds a gathered batch */
  SLOT_COPYING /* its upload was issued; free once `copied` completes */
} slot_state;

typedef struct staging_slot {
  float *x, *y; /* pinned host: (n_x × batch_size), (n_y × batch_size) */
  size_t count; /* columns it holds */
  slot_state state;
  nnlib_event copied; /* recorded on the copy stream after its upload */
} staging_slot;

typedef struct device_buffer {
  float *x, *y;         /* backend: (n_x × batch_size), (n_y × batch_size) */
  nnlib_event consumed; /* recorded on the compute stream after its step */
  bool used;            /* consumed has been recorded */
} device_buffer;

struct nnlib_feeder {
  nn_context *ctx;
  nnlib_backend *backend;
  const nn_dataset *data;
  size_t batch_size, batches; /* per epoch */
  bool resident;

  /* Resident: the whole set, and one buffer for gathered batches; with
   * x_bf16, X goes to the model's layer 1 bf16 copy instead. */
  float *all_x, *all_y;
  device_buffer gathered;
  nn_model *model;
  bool x_bf16;

  /* Streaming: slots[0 .. slot_count), producers[0 .. producers_running). */
  staging_slot slots[MAX_SLOTS];
  size_t slot_count;
  device_buffer buffers[DEVICE_BUFFERS];
  pthread_mutex_t lock;
  pthread_cond_t slot_freed;  /* producers wait on it */
  pthread_cond_t slot_filled; /* the training thread waits on it */
  pthread_t producers[MAX_PRODUCERS];
  size_t producer_limit;    /* threads an epoch starts at most */
  size_t producers_running; /* started and not joined yet */
  bool stop;                /* asks the producers to quit */

  /* The epoch in progress. */
  const size_t *order;
  size_t first_batch; /* where the producers started */
  size_t next_batch;  /* the next batch next() hands out */
  /* Under lock, while producers run: */
  size_t next_to_fill;   /* the lowest batch no producer has taken */
  size_t recycled_below; /* every batch before it has handed its slot back */
};

static size_t batch_columns(const nnlib_feeder *feeder, size_t batch) {
  size_t m = feeder->data->example_count, first = batch * feeder->batch_size;
  return m - first < feeder->batch_size ? m - first : feeder->batch_size;
}

/* Column j of the epoch's order. */
static size_t column_at(const nnlib_feeder *feeder, size_t position) {
  return feeder->order ? feeder->order[position] : position;
}

static size_t smaller(size_t a, size_t b) {
  return a < b ? a : b;
}

/* ------------------------------------------------------------------------ */
/* The producer threads                                                      */
/* ------------------------------------------------------------------------ */

static void gather_into(const nnlib_feeder *feeder, size_t batch,
                        staging_slot *slot) {
  const nn_dataset *data = feeder->data;
  const size_t nx = data->input_width, ny = data->target_width;
  const size_t first = batch * feeder->batch_size;
  slot->count = batch_columns(feeder, batch);
  for (size_t j = 0; j < slot->count; j++) {
    size_t column = column_at(feeder, first + j);
    memcpy(slot->x + j * nx, data->x + column * nx, nx * sizeof(float));
    memcpy(slot->y + j * ny, data->y + column * ny, ny * sizeof(float));
  }
}

/* Takes the lowest batch not taken yet once its slot is free: that slot last
 * held batch - slot_count, free once the training thread recycled it (slots
 * before first_batch were drained). Taking only a batch that can be filled
 * at once means no producer holds a batch number while it waits, so the
 * batches are filled in the order the training thread wants them. False
 * when the epoch has no batch left to take or the producers must stop. */
static bool take_batch(nnlib_feeder *feeder, size_t *batch) {
  pthread_mutex_lock(&feeder->lock);
  while (!feeder->stop && feeder->next_to_fill < feeder->batches &&
         feeder->next_to_fill >= feeder->recycled_below + feeder->slot_count)
    pthread_cond_wait(&feeder->slot_freed, &feeder->lock);
  bool taken = !feeder->stop && feeder->next_to_fill < feeder->batches;
  if (taken)
    *batch = feeder->next_to_fill++;
  pthread_mutex_unlock(&feeder->lock);
  return taken;
}

static void *produce(void *argument) {
  nnlib_feeder *feeder = argument;
  size_t batch = 0;
  while (take_batch(feeder, &batch)) {
    staging_slot *slot = &feeder->slots[batch % feeder->slot_count];
    gather_into(feeder, batch, slot);
    pthread_mutex_lock(&feeder->lock);
    slot->state = SLOT_READY;
    pthread_cond_signal(&feeder->slot_filled); /* its only waiter: training */
    pthread_mutex_unlock(&feeder->lock);
  }
  return NULL;
}

static void stop_producers(nnlib_feeder *feeder) {
  if (feeder->producers_running == 0)
    return;
  pthread_mutex_lock(&feeder->lock);
  feeder->stop = true;
  pthread_cond_broadcast(&feeder->slot_freed);
  pthread_mutex_unlock(&feeder->lock);
  for (size_t p = 0; p < feeder->producers_running; p++)
    pthread_join(feeder->producers[p], NULL);
  feeder->producers_running = 0;
  feeder->stop = false;
}

/* Starts up to producer_limit threads, no more than the batches left; with
 * fewer than asked for (the system refused more) the epoch goes on with
 * those, just more slowly. */
static nn_status start_producers(nnlib_feeder *feeder) {
  size_t wanted =
      smaller(feeder->producer_limit, feeder->batches - feeder->first_batch);
  while (feeder->producers_running < wanted &&
         pthread_create(&feeder->producers[feeder->producers_running], NULL,
                        produce, feeder) == 0)
    feeder->producers_running++;
  if (feeder->producers_running == 0)
    return NNLIB_FAIL(feeder->ctx, NN_ERROR_OUT_OF_MEMORY,
                      "cannot start the batch producer thread");
  return NN_OK;
}

/* Waits for every issued copy and every recorded step, so that buffers can
 * be refilled from scratch or freed. The producers must be stopped. */
static nn_status drain(nnlib_feeder *feeder) {
  const nnlib_backend_ops *ops = feeder->backend->ops;
  nn_status status = NN_OK;
  for (size_t s = 0; s < feeder->slot_count; s++) {
    staging_slot *slot = &feeder->slots[s];
    if (slot->state == SLOT_COPYING && status == NN_OK)
      status = ops->event_wait_host(feeder->backend, feeder->ctx, slot->copied);
    slot->state = SLOT_EMPTY;
  }
  for (size_t d = 0; d < DEVICE_BUFFERS; d++)
    if (feeder->buffers[d].used && status == NN_OK)
      status = ops->event_wait_host(feeder->backend, feeder->ctx,
                                    feeder->buffers[d].consumed);
  return status;
}

/* ------------------------------------------------------------------------ */
/* Creation                                                                  */
/* ------------------------------------------------------------------------ */

/* NN_FEEDER_THREADS as a whole number in 1 .. MAX_PRODUCERS, or 0 when it
 * is unset or anything else (then it is ignored). */
static size_t producers_from_environment(void) {
  const char *text = getenv("NN_FEEDER_THREADS");
  if (!text || *text < '0' || *text > '9') /* strtol would skip spaces */
    return 0;
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  bool valid =
      errno == 0 && *end == '\0' && value >= 1 && value <= MAX_PRODUCERS;
  return valid ? (size_t)value : 0;
}

/* NN_FEEDER_THREADS, else half the online CPUs (the training thread and
 * the backend's own threads want the rest), from 1 to DEFAULT_MAX_PRODUCERS:
 * one core gathers a 784 × 256 batch (0.8 MB of scattered columns) in
 * 40-100 µs, longer than a fast GPU's step on it, and four together keep
 * ahead of that without taking a many-core host. */
static size_t producers_wanted(void) {
  size_t from_environment = producers_from_environment();
  if (from_environment)
    return from_environment;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  size_t half = cpus >= 2 ? (size_t)cpus / 2 : 1;
  return smaller(half, DEFAULT_MAX_PRODUCERS);
}

/* Producers per epoch and slots: no more producers than batches, no more
 * slots than batches (an epoch never needs more), and the slots within
 * STAGING_BUDGET_BYTES where more than one producer would exceed it. */
static void choose_producers(nnlib_feeder *feeder) {
  const size_t nx = feeder->data->input_width, ny = feeder->data->target_width;
  const double slot_bytes =
      (double)(nx + ny) * (double)feeder->batch_size * sizeof(float);
  size_t producers = smaller(producers_wanted(), feeder->batches);
  if (producers == 0)
    producers = 1;
  while (producers > 1 &&
         (double)(producers + SPARE_SLOTS) * slot_bytes > STAGING_BUDGET_BYTES)
    producers--;
  feeder->producer_limit = producers;
  feeder->slot_count = smaller(producers + SPARE_SLOTS, feeder->batches);
  if (feeder->slot_count == 0)
    feeder->slot_count = 1;
}

/* X and Y of one batch; with_x false: Y only (X goes elsewhere). */
static nn_status create_device_buffer(nnlib_feeder *feeder,
                                      device_buffer *buffer, bool with_x) {
  const nnlib_backend_ops *ops = feeder->backend->ops;
  const size_t nx = feeder->data->input_width, ny = feeder->data->target_width;
  nn_status status = NN_OK;
  if (with_x)
    status = ops->alloc(feeder->backend, feeder->ctx, nx * feeder->batch_size,
                        &buffer->x);
  if (status == NN_OK)
    status = ops->alloc(feeder->backend, feeder->ctx, ny * feeder->batch_size,
                        &buffer->y);
  if (status == NN_OK)
    status = ops->event_create(feeder->backend, feeder->ctx, &buffer->consumed);
  return status;
}

static nn_status create_streaming(nnlib_feeder *feeder) {
  const nnlib_backend_ops *ops = feeder->backend->ops;
  const size_t nx = feeder->data->input_width, ny = feeder->data->target_width;
  nn_status status = NN_OK;
  choose_producers(feeder);
  for (size_t s = 0; status == NN_OK && s < feeder->slot_count; s++) {
    staging_slot *slot = &feeder->slots[s];
    status = ops->host_alloc(feeder->backend, feeder->ctx,
                             nx * feeder->batch_size, &slot->x);
    if (status == NN_OK)
      status = ops->host_alloc(feeder->backend, feeder->ctx,
                               ny * feeder->batch_size, &slot->y);
    if (status == NN_OK)
      status = ops->event_create(feeder->backend, feeder->ctx, &slot->copied);
  }
  for (size_t d = 0; status == NN_OK && d < DEVICE_BUFFERS; d++)
    status = create_device_buffer(feeder, &feeder->buffers[d], true);
  return status;
}

static nn_status create_resident(nnlib_feeder *feeder) {
  const nnlib_backend_ops *ops = feeder->backend->ops;
  const nn_dataset *data = feeder->data;
  const size_t x_count = data->input_width * data->example_count;
  const size_t y_count = data->target_width * data->example_count;
  nn_status status =
      ops->alloc(feeder->backend, feeder->ctx, x_count, &feeder->all_x);
  if (status == NN_OK)
    status = ops->alloc(feeder->backend, feeder->ctx, y_count, &feeder->all_y);
  if (status == NN_OK)
    status = ops->upload(feeder->backend, feeder->ctx, feeder->all_x, data->x,
                         x_count);
  if (status == NN_OK)
    status = ops->upload(feeder->backend, feeder->ctx, feeder->all_y, data->y,
                         y_count);
  if (status == NN_OK)
    status = create_device_buffer(feeder, &feeder->gathered, !feeder->x_bf16);
  return status;
}

/* AUTO: resident when X and Y take at most half of the free device memory;
 * backends that know no limit (the CPU) stream, which copies nothing up
 * front. */
static nn_status choose_resident(nnlib_feeder *feeder,
                                 nn_data_placement placement, bool *resident) {
  *resident = placement == NN_DATA_RESIDENT;
  if (placement != NN_DATA_AUTO)
    return NN_OK;
  size_t free_bytes = 0, total_bytes = 0;
  nn_status status = feeder->backend->ops->memory_info(
      feeder->backend, feeder->ctx, &free_bytes, &total_bytes);
  const nn_dataset *data = feeder->data;
  double bytes = (double)(data->input_width + data->target_width) *
                 (double)data->example_count * sizeof(float);
  *resident =
      status == NN_OK && total_bytes > 0 && bytes <= 0.5 * (double)free_bytes;
  return status;
}

nn_status nnlib_feeder_create(nn_model *model, const nn_dataset *data,
                              size_t batch_size, nn_data_placement placement,
                              nnlib_feeder **out) {
  nnlib_feeder *feeder = NULL;
  nn_status status =
      nnlib_host_alloc(model->ctx, 1, sizeof *feeder, (void **)&feeder);
  if (status != NN_OK)
    return status;
  feeder->ctx = model->ctx;
  feeder->backend = NNLIB_BACKEND(model);
  feeder->model = model;
  feeder->data = data;
  feeder->batch_size = batch_size;
  feeder->batches = (data->example_count + batch_size - 1) / batch_size;
  pthread_mutex_init(&feeder->lock, NULL);
  pthread_cond_init(&feeder->slot_freed, NULL);
  pthread_cond_init(&feeder->slot_filled, NULL);
  status = choose_resident(feeder, placement, &feeder->resident);
  /* A bf16 model reads X only as its bf16 copy: resident batches go there
   * at once, with the rounding its forward pass would apply. */
  feeder->x_bf16 = feeder->resident && model->precision == NN_PRECISION_BF16 &&
                   NNLIB_OPS(model)->to_bf16 != NULL;
  if (status == NN_OK)
    status =
        feeder->resident ? create_resident(feeder) : create_streaming(feeder);
  if (status != NN_OK) {
    nnlib_feeder_destroy(feeder);
    return status;
  }
  *out = feeder;
  return NN_OK;
}

static void destroy_device_buffer(nnlib_feeder *feeder, device_buffer *buffer) {
  const nnlib_backend_ops *ops = feeder->backend->ops;
  ops->release(feeder->backend, buffer->x);
  ops->release(feeder->backend, buffer->y);
  if (buffer->consumed)
    ops->event_destroy(feeder->backend, buffer->consumed);
}

void nnlib_feeder_destroy(nnlib_feeder *feeder) {
  if (!feeder)
    return;
  const nnlib_backend_ops *ops = feeder->backend->ops;
  stop_producers(feeder);
  drain(feeder);
  for (size_t s = 0; s < feeder->slot_count; s++) {
    ops->host_release(feeder->backend, feeder->slots[s].x);
    ops->host_release(feeder->backend, feeder->slots[s].y);
    if (feeder->slots[s].copied)
      ops->event_destroy(feeder->backend, feeder->slots[s].copied);
  }
  for (size_t d = 0; d < DEVICE_BUFFERS; d++)
    destroy_device_buffer(feeder, &feeder->buffers[d]);
  destroy_device_buffer(feeder, &feeder->gathered);
  ops->release(feeder->backend, feeder->all_x);
  ops->release(feeder->backend, feeder->all_y);
  pthread_cond_destroy(&feeder->slot_filled);
  pthread_cond_destroy(&feeder->slot_freed);
  pthread_mutex_destroy(&feeder->lock);
  free(feeder);
}

bool nnlib_feeder_is_resident(const nnlib_feeder *feeder) {
  return feeder->resident;
}

bool nnlib_feeder_input_in_bf16(const nnlib_feeder *feeder) {
  return feeder->x_bf16;
}

/* ------------------------------------------------------------------------ */
/* Epochs and batches                                                        */
/* ------------------------------------------------------------------------ */

nn_status nnlib_feeder_begin_epoch(nnlib_feeder *feeder, const size_t *order,
                                   size_t first_batch) {
  /* The last epoch's producers may still be gathering (after a stop within
   * it) and read order and first_batch: they are joined before either
   * changes. */
  stop_producers(feeder);
  nn_status status = feeder->resident ? NN_OK : drain(feeder);
  feeder->order = order;
  feeder->first_batch = first_batch;
  feeder->next_batch = first_batch;
  /* Resident and shuffled: the whole order goes to the backend once, and
   * each batch is a gather of its positions there. */
  if (feeder->resident && order && status == NN_OK)
    status = feeder->backend->ops->set_gather_order(
        feeder->backend, feeder->ctx, order, feeder->data->example_count);
  if (feeder->resident || status != NN_OK || first_batch >= feeder->batches)
    return status;
  /* No producer runs now, so the lock is not needed yet. */
  feeder->next_to_fill = first_batch;
  feeder->recycled_below = first_batch;
  return start_producers(feeder);
}

size_t nnlib_feeder_producers(const nnlib_feeder *feeder) {
  return feeder->producers_running;
}

size_t nnlib_feeder_staging_slots(const nnlib_feeder *feeder) {
  return feeder->slot_count;
}

/* In order, a batch is its columns of the resident copy (X converted
 * into layer 1's bf16 copy with x_bf16); shuffled, X and Y are gathered
 * (X the same way). The bf16 copy is looked up for each batch: the model
 * may have reallocated it. */
static nn_status next_resident(nnlib_feeder *feeder, size_t batch,
                               const float **input, const float **targets,
                               size_t count) {
  const size_t nx = feeder->data->input_width, ny = feeder->data->target_width;
  const size_t first = batch * feeder->batch_size;
  const nnlib_backend_ops *ops = feeder->backend->ops;
  void *x_bf16 = feeder->x_bf16 ? feeder->model->layers[0].bf16_inputs : NULL;
  if (!feeder->order) {
    *input = feeder->all_x + first * nx;
    *targets = feeder->all_y + first * ny;
    return x_bf16 ? ops->to_bf16(feeder->backend, feeder->ctx, *input, x_bf16,
                                 nx * count)
                  : NN_OK;
  }
  const nnlib_gather_matrix matrices[2] = {
      {x_bf16 ? x_bf16 : feeder->gathered.x, feeder->all_x, nx, x_bf16 != NULL},
      {feeder->gathered.y, feeder->all_y, ny, false}};
  nn_status status =
      ops->gather_columns(feeder->backend, feeder->ctx, matrices, first, count);
  /* With x_bf16 there is no fp32 X of the batch; the resident set stands
   * in for it (the step reads the bf16 copy only). */
  *input = x_bf16 ? feeder->all_x : feeder->gathered.x;
  *targets = feeder->gathered.y;
  return status;
}

/* Hands the previous batch's slot back to the producers once its copy has
 * completed (it was issued a whole step ago): every batch before `batch`
 * has now given its slot back. */
static nn_status recycle_previous_slot(nnlib_feeder *feeder, size_t batch) {
  if (batch == feeder->first_batch)
    return NN_OK;
  staging_slot *slot = &feeder->slots[(batch - 1) % feeder->slot_count];
  nn_status status = feeder->backend->ops->event_wait_host(
      feeder->backend, feeder->ctx, slot->copied);
  pthread_mutex_lock(&feeder->lock);
  slot->state = SLOT_EMPTY;
  feeder->recycled_below = batch;
  /* Exactly one more batch can be taken now: one producer is enough. */
  pthread_cond_signal(&feeder->slot_freed);
  pthread_mutex_unlock(&feeder->lock);
  return status;
}

/* Ready can only mean ready with this batch: the next batch for the same
 * slot is not taken before this one is recycled, after this wait. */
static void wait_until_ready(nnlib_feeder *feeder, staging_slot *slot) {
  pthread_mutex_lock(&feeder->lock);
  while (slot->state != SLOT_READY)
    pthread_cond_wait(&feeder->slot_filled, &feeder->lock);
  pthread_mutex_unlock(&feeder->lock);
}

static nn_status next_streamed(nnlib_feeder *feeder, size_t batch,
                               const float **input, const float **targets) {
  const nnlib_backend_ops *ops = feeder->backend->ops;
  nnlib_backend *backend = feeder->backend;
  const size_t nx = feeder->data->input_width, ny = feeder->data->target_width;
  staging_slot *slot = &feeder->slots[batch % feeder->slot_count];
  device_buffer *buffer = &feeder->buffers[batch % DEVICE_BUFFERS];
  nn_status status = recycle_previous_slot(feeder, batch);
  if (status != NN_OK)
    return status;
  wait_until_ready(feeder, slot);
  if (buffer->used)
    status = ops->copy_wait(backend, feeder->ctx, buffer->consumed);
  if (status == NN_OK)
    status = ops->upload_async(backend, feeder->ctx, buffer->x, slot->x,
                               nx * slot->count, slot->copied);
  if (status == NN_OK)
    status = ops->upload_async(backend, feeder->ctx, buffer->y, slot->y,
                               ny * slot->count, slot->copied);
  pthread_mutex_lock(&feeder->lock);
  slot->state = SLOT_COPYING;
  pthread_mutex_unlock(&feeder->lock);
  if (status == NN_OK)
    status = ops->compute_wait(backend, feeder->ctx, slot->copied);
  *input = buffer->x;
  *targets = buffer->y;
  return status;
}

nn_status nnlib_feeder_next(nnlib_feeder *feeder, const float **input,
                            const float **targets, size_t *count) {
  size_t batch = feeder->next_batch;
  if (batch >= feeder->batches)
    return NNLIB_FAIL(feeder->ctx, NN_ERROR_STATE,
                      "batch %zu asked for, the epoch has %zu", batch,
                      feeder->batches);
  *count = batch_columns(feeder, batch);
  nn_status status = feeder->resident
                         ? next_resident(feeder, batch, input, targets, *count)
                         : next_streamed(feeder, batch, input, targets);
  feeder->next_batch++;
  return status;
}

nn_status nnlib_feeder_release(nnlib_feeder *feeder) {
  if (feeder->resident)
    return NN_OK;
  device_buffer *buffer =
      &feeder->buffers[(feeder->next_batch - 1) % DEVICE_BUFFERS];
  buffer->used = true;
  return feeder->backend->ops->compute_record(feeder->backend, feeder->ctx,
                                              buffer->consumed);
}
