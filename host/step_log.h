/*
 * step_log.h — what each training step leaves behind to be read later: its
 * cost record, in backend memory (written by the step's loss and L2
 * reductions), and, when timing, an event recorded after its update.
 *
 * Why: reading a cost back makes the host wait for the device. Waiting after
 * every step would leave the GPU idle while the host issues the next one,
 * so the scheduler reads the records of many steps at once — when a report
 * is due, the log is full, or the epoch ends.
 */
#ifndef NN_STEP_LOG_H
#define NN_STEP_LOG_H

#include "internal.h"

/* One step, as the scheduler describes it when it commits the step; cost
 * and time_ms are filled in when the log is read. */
typedef struct nnlib_step_entry {
  size_t epoch;
  size_t iteration; /* updates done, this one included */
  size_t examples;  /* m of the batch */
  float learning_rate;
  double cost;   /* J of the batch, before its update */
  float time_ms; /* since the previous step's end; NAN when not timing */
} nnlib_step_entry;

typedef struct nnlib_step_log nnlib_step_log;

/* Room for `capacity` steps (at least 1) of a run with this L2 λ; with
 * timing, capacity + 1 timer events. */
nn_status nnlib_step_log_create(nn_model *model, size_t capacity,
                                float l2_lambda, bool timing,
                                nnlib_step_log **out);
void nnlib_step_log_destroy(nnlib_step_log *log);

/* Marks where the first step's time starts (timing only). */
nn_status nnlib_step_log_start(nnlib_step_log *log);

/* The backend memory the next step writes its cost record to
 * (nnlib_cost_record). */
double *nnlib_step_log_next_record(nnlib_step_log *log);

/* The next step has been issued through its update: keeps its entry and
 * records its timer event. The log must not be full. */
nn_status nnlib_step_log_commit(nnlib_step_log *log,
                                const nnlib_step_entry *entry);

bool nnlib_step_log_full(const nnlib_step_log *log);

/* Waits for the device and reads back every step committed since the last
 * read: *entries (valid until the next commit) holds *count steps in
 * order, with their costs and times. */
nn_status nnlib_step_log_read(nnlib_step_log *log,
                              const nnlib_step_entry **entries, size_t *count);

#endif /* NN_STEP_LOG_H */
