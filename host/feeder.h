/*
 * feeder.h — how mini-batches reach the backend during training.
 *
 * Streaming: the data set stays in host memory. A producer thread gathers
 * each batch of the epoch's order into one of FEEDER_SLOTS pinned staging
 * slots; the training thread copies a filled slot into one of two device
 * input buffers on the copy stream, and the compute stream waits for that
 * copy before the step. A slot is refilled only after its copy completed;
 * a device buffer is overwritten only after the step that read it.
 *
 * Resident: X and Y are copied to the backend once; batches are gathered
 * there (or, in order, simply pointed at).
 */
#ifndef NN_FEEDER_H
#define NN_FEEDER_H

#include "internal.h"

typedef struct nnlib_feeder nnlib_feeder;

/* Allocates everything the run needs (staging, device buffers, events, or
 * the resident copy) for batches of up to batch_size columns of data. */
nn_status nnlib_feeder_create(nn_model *model, const nn_dataset *data,
                              size_t batch_size, nn_data_placement placement,
                              nnlib_feeder **out);

/* Stops the producer and frees everything. NULL is allowed. */
void nnlib_feeder_destroy(nnlib_feeder *feeder);

bool nnlib_feeder_is_resident(const nnlib_feeder *feeder);

/* Starts delivering the epoch's batches first_batch, first_batch + 1, ...
 * in the given column order (NULL: in order). order must stay valid until
 * the epoch ends (the next begin_epoch or destroy). */
nn_status nnlib_feeder_begin_epoch(nnlib_feeder *feeder, const size_t *order,
                                   size_t first_batch);

/* The next batch, ordered before whatever the compute stream runs next:
 * *input (n_x × count) and *targets (n_y × count) are backend memory. */
nn_status nnlib_feeder_next(nnlib_feeder *feeder, const float **input,
                            const float **targets, size_t *count);

/* Call after the step that used the last batch has been issued: its device
 * buffer may be overwritten once the compute stream has passed this point. */
nn_status nnlib_feeder_release(nnlib_feeder *feeder);

#endif
