/*
 * dropout.cu — inverted dropout on A[l]: cuRAND writes uniforms in (0, 1]
 * into the mask buffer (the same Philox stream the CPU's host generator
 * gives for the same seed), then one kernel turns each into 0 or 1/keep and
 * scales A by it.
 */
#include "kernel_common.cuh"

/* mask (count = n·m) holds u ~ U(0, 1] on entry and (u < keep) / keep on
 * exit; A (count) *= mask. keep and kept_scale = 1/keep come from the host,
 * rounded as the CPU rounds them. */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
dropout_kernel(float *mask, float *a, float keep, float kept_scale,
               size_t count) {
  NNLIB_GRID_STRIDE_LOOP(k, count) {
    float scale = mask[k] < keep ? kept_scale : 0.0f;
    mask[k] = scale;
    a[k] *= scale;
  }
}

extern "C" nn_status nnlib_cuda_dropout_forward(nnlib_backend *backend,
                                                nn_context *ctx,
                                                const nnlib_layer *layer,
                                                nnlib_rng rng, size_t m) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const size_t count = layer->units * m;
  const float keep = 1.0f - layer->dropout;
  const float kept_scale = 1.0f / keep;
  nn_status status = nnlib_cuda_random_uniform(
      backend, ctx, rng, layer->dropout_mask, nnlib_dropout_draw_count(count));
  if (status != NN_OK || count == 0)
    return status;
  dropout_kernel<<<nnlib_cuda_blocks(cuda, count), NNLIB_CUDA_THREADS, 0,
                   cuda->compute>>>(layer->dropout_mask, layer->activation_out,
                                    keep, kept_scale, count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, dropout_kernel);
}
