/*
 * step_graphs.c — capture and replay of training steps (see step_graphs.h).
 */
#include "step_graphs.h"

#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRAPH_CACHE_SIZE 4

/* What a captured graph reads and writes: replaying it is right only while
 * all of these are what they were at capture. */
typedef struct graph_key {
  const float *input, *targets;
  size_t m;
  float l2_lambda;
  uint64_t arena_generation; /* the model's: its arenas as captured */
} graph_key;

typedef struct graph_entry {
  graph_key key;
  nnlib_graph graph; /* NULL: free */
} graph_entry;

struct nnlib_step_graphs {
  nn_model *model;
  graph_entry entries[GRAPH_CACHE_SIZE];
  bool given_up; /* a capture failed: the rest of the run is eager */
};

static bool any_dropout(const nn_model *model) {
  for (size_t l = 0; l < model->layer_count; l++)
    if (model->layers[l].dropout > 0.0f)
      return true;
  return false;
}

nn_status nnlib_step_graphs_create(nn_model *model, nn_step_graphs setting,
                                   nnlib_step_graphs **out) {
  *out = NULL;
  if (setting == NN_STEP_GRAPHS_OFF || !NNLIB_OPS(model)->graph_capture_begin ||
      any_dropout(model))
    return NN_OK;
  nnlib_step_graphs *graphs = NULL;
  nn_status status =
      nnlib_host_alloc(model->ctx, 1, sizeof *graphs, (void **)&graphs);
  if (status == NN_OK) {
    graphs->model = model;
    *out = graphs;
  }
  return status;
}

void nnlib_step_graphs_destroy(nnlib_step_graphs *graphs) {
  if (!graphs)
    return;
  nnlib_backend *backend = NNLIB_BACKEND(graphs->model);
  for (size_t e = 0; e < GRAPH_CACHE_SIZE; e++)
    if (graphs->entries[e].graph)
      backend->ops->graph_destroy(backend, graphs->entries[e].graph);
  free(graphs);
}

static bool same_key(const graph_key *a, const graph_key *b) {
  return a->input == b->input && a->targets == b->targets && a->m == b->m &&
         a->l2_lambda == b->l2_lambda &&
         a->arena_generation == b->arena_generation;
}

/* The entry for key: its own, else a free one, else NULL. Entries whose
 * arenas have been reallocated since their capture (the activation arena
 * regrown, say by a forward pass in the progress callback) are dropped
 * first. */
static graph_entry *find_entry(nnlib_step_graphs *graphs,
                               const graph_key *key) {
  nnlib_backend *backend = NNLIB_BACKEND(graphs->model);
  graph_entry *free_entry = NULL;
  for (size_t e = 0; e < GRAPH_CACHE_SIZE; e++) {
    graph_entry *entry = &graphs->entries[e];
    if (entry->graph && entry->key.arena_generation != key->arena_generation) {
      backend->ops->graph_destroy(backend, entry->graph);
      entry->graph = NULL;
    }
    if (entry->graph && same_key(&entry->key, key))
      return entry;
    if (!entry->graph && !free_entry)
      free_entry = entry;
  }
  return free_entry;
}

/* Records the step body into entry->graph; the capture is ended whatever
 * happens, so the stream is never left capturing. When the body fails, its
 * message (naming the call that failed) is the one kept: ending a capture
 * that the failure invalidated fails too (cudaErrorStreamCaptureInvalidated)
 * and would otherwise overwrite it. */
static nn_status capture(nnlib_step_graphs *graphs, graph_entry *entry,
                         const graph_key *key) {
  nn_model *model = graphs->model;
  nnlib_backend *backend = NNLIB_BACKEND(model);
  nn_context *ctx = model->ctx;
  nn_status status = NN_OK;
  if (backend->ops->prepare_capture)
    status = backend->ops->prepare_capture(backend, ctx, model->layers,
                                           model->layer_count);
  if (status == NN_OK)
    status = backend->ops->graph_capture_begin(backend, ctx);
  if (status != NN_OK)
    return status;
  /* The body marks the bf16 copy of the parameters current when it
   * converts it; captured, the conversion has not run, and a capture that
   * fails never runs it. */
  const bool copy_was_current = model->bf16_parameters_current;
  nn_status body = nnlib_step_body(model, key->input, key->targets, key->m,
                                   key->l2_lambda, model->cost_scratch);
  char body_error[sizeof ctx->last_error];
  if (body != NN_OK)
    memcpy(body_error, ctx->last_error, sizeof body_error);
  status = backend->ops->graph_capture_end(backend, ctx, body == NN_OK,
                                           &entry->graph);
  if (body != NN_OK || status != NN_OK)
    model->bf16_parameters_current = copy_was_current;
  if (body != NN_OK) {
    memcpy(ctx->last_error, body_error, sizeof body_error);
    return body;
  }
  if (status == NN_OK)
    entry->key = *key;
  return status;
}

/* After a failed capture: nothing of the step ran (it was being recorded),
 * so it runs eagerly now, and so does the rest of the run; the context's
 * notice says why. Should the step fail eagerly too, that error is the
 * one returned — it was not the capture's. */
static nn_status give_up(nnlib_step_graphs *graphs, const float *input,
                         const float *targets, size_t m, float l2_lambda,
                         double *record, bool *graphed) {
  nn_context *ctx = graphs->model->ctx;
  graphs->given_up = true;
  *graphed = false;
  /* The notice holds the start of the capture's error (at most 160 of its
   * characters, which name the failing call). */
  nnlib_note(
      ctx,
      "training steps run without CUDA graphs: capturing one failed: %.160s",
      ctx->last_error);
  return nnlib_step_body(graphs->model, input, targets, m, l2_lambda, record);
}

nn_status nnlib_step_graphs_run(nnlib_step_graphs *graphs, const float *input,
                                const float *targets, size_t m, float l2_lambda,
                                double *record, bool *graphed) {
  nn_model *model = graphs->model;
  nnlib_backend *backend = NNLIB_BACKEND(model);
  const graph_key key = {input, targets, m, l2_lambda, model->arena_generation};
  graph_entry *entry = graphs->given_up ? NULL : find_entry(graphs, &key);
  *graphed = entry != NULL;
  if (!entry)
    return nnlib_step_body(model, input, targets, m, l2_lambda, record);
  if (!entry->graph && capture(graphs, entry, &key) != NN_OK)
    return give_up(graphs, input, targets, m, l2_lambda, record, graphed);
  nn_status status =
      backend->ops->graph_launch(backend, model->ctx, entry->graph);
  /* The record, from the graph's fixed scratch to the step's slot. */
  if (status == NN_OK)
    status = backend->ops->copy(
        backend, model->ctx, (float *)(void *)record,
        (const float *)(const void *)model->cost_scratch,
        2 * (l2_lambda > 0.0f ? NNLIB_COST_RECORD_DOUBLES(model) : 1));
  return status;
}
