/*
 * feeder.c — mini-batches from host memory to the backend: a producer
 * thread and pinned staging slots (streaming), or a resident copy.
 *
 * Streaming timeline for batch b (slot s = b % FEEDER_SLOTS, device buffer
 * d = b % DEVICE_BUFFERS):
 *   producer: wait until slot s is empty, gather batch b's columns into it,
 *             mark it ready
 *   training: wait until slot s is ready; copy stream waits for the step
 *             that last read buffer d; upload slot s -> buffer d, record
 *             copied[s]; compute stream waits for copied[s]; the step runs;
 *             release() records consumed[d] on the compute stream
 *   training, at batch b + 1: waits (host) for copied[s] — long done by
 *             then — and hands slot s back to the producer
 * Only the training thread calls the backend, so errors land on the context
 * from one thread; the producer only copies host memory.
 */
#include "feeder.h"

#include "backend.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FEEDER_SLOTS 3
#define DEVICE_BUFFERS 2

typedef enum slot_state {
  SLOT_EMPTY,  /* the producer may fill it */
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

  /* Resident: the whole set, and one buffer for gathered batches. */
  float *all_x, *all_y;
  device_buffer gathered;

  /* Streaming. */
  staging_slot slots[FEEDER_SLOTS];
  device_buffer buffers[DEVICE_BUFFERS];
  pthread_mutex_t lock;
  pthread_cond_t changed;
  pthread_t producer;
  bool producer_running;
  bool stop; /* asks the producer to quit */

  /* The epoch in progress. */
  const size_t *order;
  size_t first_batch; /* where the producer started */
  size_t next_batch;  /* the next batch next() hands out */
};

static size_t batch_columns(const nnlib_feeder *feeder, size_t batch) {
  size_t m = feeder->data->example_count, first = batch * feeder->batch_size;
  return m - first < feeder->batch_size ? m - first : feeder->batch_size;
}

/* Column j of the epoch's order. */
static size_t column_at(const nnlib_feeder *feeder, size_t position) {
  return feeder->order ? feeder->order[position] : position;
}

/* ------------------------------------------------------------------------ */
/* The producer thread                                                       */
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

static void *produce(void *argument) {
  nnlib_feeder *feeder = argument;
  for (size_t batch = feeder->first_batch; batch < feeder->batches; batch++) {
    staging_slot *slot = &feeder->slots[batch % FEEDER_SLOTS];
    pthread_mutex_lock(&feeder->lock);
    while (!feeder->stop && slot->state != SLOT_EMPTY)
      pthread_cond_wait(&feeder->changed, &feeder->lock);
    bool stop = feeder->stop;
    pthread_mutex_unlock(&feeder->lock);
    if (stop)
      break;
    gather_into(feeder, batch, slot);
    pthread_mutex_lock(&feeder->lock);
    slot->state = SLOT_READY;
    pthread_cond_broadcast(&feeder->changed);
    pthread_mutex_unlock(&feeder->lock);
  }
  return NULL;
}

static void stop_producer(nnlib_feeder *feeder) {
  if (!feeder->producer_running)
    return;
  pthread_mutex_lock(&feeder->lock);
  feeder->stop = true;
  pthread_cond_broadcast(&feeder->changed);
  pthread_mutex_unlock(&feeder->lock);
  pthread_join(feeder->producer, NULL);
  feeder->producer_running = false;
  feeder->stop = false;
}

/* Waits for every issued copy and every recorded step, so that buffers can
 * be refilled from scratch or freed. */
static nn_status drain(nnlib_feeder *feeder) {
  const nnlib_backend_ops *ops = feeder->backend->ops;
  nn_status status = NN_OK;
  for (size_t s = 0; s < FEEDER_SLOTS; s++) {
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

static nn_status create_device_buffer(nnlib_feeder *feeder,
                                      device_buffer *buffer) {
  const nnlib_backend_ops *ops = feeder->backend->ops;
  const size_t nx = feeder->data->input_width, ny = feeder->data->target_width;
  nn_status status = ops->alloc(feeder->backend, feeder->ctx,
                                nx * feeder->batch_size, &buffer->x);
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
  for (size_t s = 0; status == NN_OK && s < FEEDER_SLOTS; s++) {
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
    status = create_device_buffer(feeder, &feeder->buffers[d]);
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
    status = create_device_buffer(feeder, &feeder->gathered);
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
  feeder->data = data;
  feeder->batch_size = batch_size;
  feeder->batches = (data->example_count + batch_size - 1) / batch_size;
  pthread_mutex_init(&feeder->lock, NULL);
  pthread_cond_init(&feeder->changed, NULL);
  status = choose_resident(feeder, placement, &feeder->resident);
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
  stop_producer(feeder);
  drain(feeder);
  for (size_t s = 0; s < FEEDER_SLOTS; s++) {
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
  pthread_cond_destroy(&feeder->changed);
  pthread_mutex_destroy(&feeder->lock);
  free(feeder);
}

bool nnlib_feeder_is_resident(const nnlib_feeder *feeder) {
  return feeder->resident;
}

/* ------------------------------------------------------------------------ */
/* Epochs and batches                                                        */
/* ------------------------------------------------------------------------ */

nn_status nnlib_feeder_begin_epoch(nnlib_feeder *feeder, const size_t *order,
                                   size_t first_batch) {
  feeder->order = order;
  feeder->first_batch = first_batch;
  feeder->next_batch = first_batch;
  if (feeder->resident)
    return NN_OK;
  stop_producer(feeder);
  nn_status status = drain(feeder);
  if (status != NN_OK || first_batch >= feeder->batches)
    return status;
  if (pthread_create(&feeder->producer, NULL, produce, feeder) != 0)
    return NNLIB_FAIL(feeder->ctx, NN_ERROR_OUT_OF_MEMORY,
                      "cannot start the batch producer thread");
  feeder->producer_running = true;
  return NN_OK;
}

static nn_status next_resident(nnlib_feeder *feeder, size_t batch,
                               const float **input, const float **targets,
                               size_t count) {
  const size_t nx = feeder->data->input_width, ny = feeder->data->target_width;
  const size_t first = batch * feeder->batch_size;
  if (!feeder->order) {
    *input = feeder->all_x + first * nx;
    *targets = feeder->all_y + first * ny;
    return NN_OK;
  }
  const nnlib_backend_ops *ops = feeder->backend->ops;
  nn_status status =
      ops->gather_columns(feeder->backend, feeder->ctx, feeder->gathered.x,
                          feeder->all_x, nx, feeder->order + first, count);
  if (status == NN_OK)
    status =
        ops->gather_columns(feeder->backend, feeder->ctx, feeder->gathered.y,
                            feeder->all_y, ny, feeder->order + first, count);
  *input = feeder->gathered.x;
  *targets = feeder->gathered.y;
  return status;
}

/* Hands the previous batch's slot back to the producer once its copy has
 * completed (it was issued a whole step ago). */
static nn_status recycle_previous_slot(nnlib_feeder *feeder, size_t batch) {
  if (batch == feeder->first_batch)
    return NN_OK;
  staging_slot *slot = &feeder->slots[(batch - 1) % FEEDER_SLOTS];
  nn_status status = feeder->backend->ops->event_wait_host(
      feeder->backend, feeder->ctx, slot->copied);
  pthread_mutex_lock(&feeder->lock);
  slot->state = SLOT_EMPTY;
  pthread_cond_broadcast(&feeder->changed);
  pthread_mutex_unlock(&feeder->lock);
  return status;
}

static void wait_until_ready(nnlib_feeder *feeder, staging_slot *slot) {
  pthread_mutex_lock(&feeder->lock);
  while (slot->state != SLOT_READY)
    pthread_cond_wait(&feeder->changed, &feeder->lock);
  pthread_mutex_unlock(&feeder->lock);
}

static nn_status next_streamed(nnlib_feeder *feeder, size_t batch,
                               const float **input, const float **targets) {
  const nnlib_backend_ops *ops = feeder->backend->ops;
  nnlib_backend *backend = feeder->backend;
  const size_t nx = feeder->data->input_width, ny = feeder->data->target_width;
  staging_slot *slot = &feeder->slots[batch % FEEDER_SLOTS];
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
