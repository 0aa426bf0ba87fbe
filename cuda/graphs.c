/*
 * graphs.c — a training step captured from the compute stream into a CUDA
 * graph and replayed as one launch (host/step_graphs.c decides when).
 *
 * Capture is thread-local: only this thread's work on the compute stream is
 * recorded, and other threads (the feeder's producer, which touches only
 * pinned host memory and the copy stream) are unaffected. Nothing captured
 * may wait for the device or allocate: the step's kernels, cuBLAS products
 * (its workspace is set, so it allocates nothing) and device-to-device
 * copies are all it holds.
 */
#include "cuda_backend.h"

nn_status nnlib_cuda_graph_capture_begin(nnlib_backend *backend,
                                         nn_context *ctx) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaStreamBeginCapture(cuda->compute,
                                    cudaStreamCaptureModeThreadLocal));
  return status;
}

/* Ends the capture whatever happened during it (a stream left capturing
 * would fail everything after), then instantiates what was recorded. */
nn_status nnlib_cuda_graph_capture_end(nnlib_backend *backend, nn_context *ctx,
                                       bool keep, nnlib_graph *out) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  *out = NULL;
  cudaGraph_t graph = NULL;
  nn_status status =
      NNLIB_CUDA_CHECK(ctx, cudaStreamEndCapture(cuda->compute, &graph));
  cudaGraphExec_t exec = NULL;
  if (status == NN_OK && keep)
    status = NNLIB_CUDA_CHECK(ctx, cudaGraphInstantiate(&exec, graph, 0));
  if (graph)
    cudaGraphDestroy(graph);
  if (status == NN_OK)
    *out = exec;
  return status;
}

nn_status nnlib_cuda_graph_launch(nnlib_backend *backend, nn_context *ctx,
                                  nnlib_graph graph) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaGraphLaunch((cudaGraphExec_t)graph, cuda->compute));
  return status;
}

void nnlib_cuda_graph_destroy(nnlib_backend *backend, nnlib_graph graph) {
  if (!graph)
    return;
  cudaSetDevice(nnlib_cuda(backend)->device);
  cudaGraphExecDestroy((cudaGraphExec_t)graph);
  (void)cudaGetLastError();
}
