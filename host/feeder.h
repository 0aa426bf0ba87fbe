/*
 * feeder.h — how mini-batches reach the backend during training.
 *
 * Streaming: the data set stays in host memory. Producer threads gather
 * the epoch's batches, several at once, each into its own pinned staging
 * slot (producers + 2 slots); the training thread takes the slots in batch
 * order, copies each into one of two device input buffers on the copy
 * stream, and the compute stream waits for that copy before the step. A
 * slot is refilled only after its copy completed; a device buffer is
 * overwritten only after the step that read it. The batches, and so the
 * results, do not depend on the number of producers.
 *
 * Producers: NN_FEEDER_THREADS (1 .. 16; anything else is ignored) if set
 * when the feeder is created, else half the online CPUs, 1 to 4; never
 * more than the epoch's batches, and fewer where their slots would take
 * more than 2 GiB of pinned memory (one at least).
 *
 * Resident: X and Y are copied to the backend once; batches are gathered
 * there (or, in order, simply pointed at). For a bf16 model X is gathered
 * (or, in order, converted) straight into layer 1's bf16 A_prev copy, the
 * only form of it the step reads.
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

/* Stops the producers and frees everything. NULL is allowed. */
void nnlib_feeder_destroy(nnlib_feeder *feeder);

bool nnlib_feeder_is_resident(const nnlib_feeder *feeder);

/* Whether next() gathers X straight into layer 1's bf16 A_prev copy
 * (resident data for a bf16 model): the input it hands out is then not
 * written, and the step must say so (nn_model.input_record). */
bool nnlib_feeder_input_in_bf16(const nnlib_feeder *feeder);

/* Starts delivering the epoch's batches first_batch, first_batch + 1, ...
 * in the given column order (NULL: in order; else the data set's
 * example_count columns). order must stay valid and unchanged until
 * the next begin_epoch or destroy (which join the producers), or until
 * every batch of the epoch has been handed out: the producers have read
 * all of it by then. */
nn_status nnlib_feeder_begin_epoch(nnlib_feeder *feeder, const size_t *order,
                                   size_t first_batch);

/* Producer threads started for the epoch in progress (up to the chosen
 * number, no more than its batches left; 0 when resident or before the
 * first epoch), and the staging slots (0 when resident). */
size_t nnlib_feeder_producers(const nnlib_feeder *feeder);
size_t nnlib_feeder_staging_slots(const nnlib_feeder *feeder);

/* The next batch, ordered before whatever the compute stream runs next:
 * *input (n_x × count) and *targets (n_y × count) are backend memory. */
nn_status nnlib_feeder_next(nnlib_feeder *feeder, const float **input,
                            const float **targets, size_t *count);

/* Call after the step that used the last batch has been issued: its device
 * buffer may be overwritten once the compute stream has passed this point. */
nn_status nnlib_feeder_release(nnlib_feeder *feeder);

#endif
