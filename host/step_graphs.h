/*
 * step_graphs.h — training steps as CUDA graphs: a step's forward, cost
 * record, backward and update captured once per shape and buffers, then
 * replayed as one launch (nn_step_graphs).
 *
 * What changes from step to step stays outside the graph: the optimizer
 * constants are staged into backend memory before the launch
 * (nnlib_stage_update), and the cost record, written to the model's fixed
 * cost scratch inside the graph, is copied to the step log's slot after
 * it. A graph is kept per (input, targets, m) and the arenas it was
 * captured on: the feeder's two streaming buffers and a short last batch
 * make at most four.
 */
#ifndef NN_STEP_GRAPHS_H
#define NN_STEP_GRAPHS_H

#include "internal.h"

typedef struct nnlib_step_graphs nnlib_step_graphs;

/* *out is NULL (steps run eagerly) when graphs do not apply: switched off,
 * a backend without them, or dropout in the model. */
nn_status nnlib_step_graphs_create(nn_model *model, nn_step_graphs setting,
                                   nnlib_step_graphs **out);
void nnlib_step_graphs_destroy(nnlib_step_graphs *graphs);

/* One step after nnlib_stage_update, as nnlib_step_body would run it;
 * *graphed says whether it ran as a graph launch (it runs eagerly when
 * every cache entry is taken by other buffers, and from a failed capture
 * on — the step included — with the reason in nn_context_notice). */
nn_status nnlib_step_graphs_run(nnlib_step_graphs *graphs, const float *input,
                                const float *targets, size_t m, float l2_lambda,
                                double *record, bool *graphed);

#endif /* NN_STEP_GRAPHS_H */
