/*
 * optimizers.cu — one optimizer step over the whole parameter arena in one
 * launch: gradient descent, momentum, RMSprop and Adam with bias
 * correction. The update is host/elementwise.h's, shared with the CPU
 * backend; with --fmad=false and IEEE sqrtf and division (nvcc's defaults)
 * each element's update rounds exactly as on the CPU.
 */
#include "kernel_common.cuh"

#include <cuda_bf16.h>
#include <math.h>

/* *staged = constants: the step's constants, put in device memory in
 * stream order so that a replayed graph's optimizer_kernel reads each
 * step's own. One thread. */
static __global__ void stage_constants_kernel(nnlib_update_constants constants,
                                              nnlib_update_constants *staged) {
  *staged = constants;
}

/* Over the arena (count floats; parameters, gradients, both moments and
 * the bf16 copy share its layout), one thread per element, grid-stride:
 * the update of host/elementwise.h, the CPU backend's own, with the staged
 * constants; then, in bf16, the new parameter rounded into the copy. A
 * moment the optimizer does not use may be NULL (never allocated), and so
 * is the copy in fp32 and tf32. */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
optimizer_kernel(const nnlib_update_constants *staged, float *parameters,
                 const float *gradients, float *first_moment,
                 float *second_moment, __nv_bfloat16 *bf16_parameters,
                 size_t count) {
  const nnlib_update_constants constants = *staged;
  NNLIB_GRID_STRIDE_LOOP(k, count) {
    nnlib_update_parameter(&constants, gradients[k], &parameters[k],
                           first_moment ? first_moment + k : NULL,
                           second_moment ? second_moment + k : NULL);
    if (bf16_parameters)
      bf16_parameters[k] = __float2bfloat16_rn(parameters[k]);
  }
}

extern "C" nn_status
nnlib_cuda_optimizer_stage(nnlib_backend *backend, nn_context *ctx,
                           const nnlib_optimizer_step *step) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK)
    return status;
  stage_constants_kernel<<<1, 1, 0, cuda->compute>>>(
      nnlib_optimizer_constants(step), cuda->update_constants);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, stage_constants_kernel);
}

extern "C" nn_status
nnlib_cuda_optimizer_apply(nnlib_backend *backend, nn_context *ctx,
                           float *parameters, const float *gradients,
                           float *first_moment, float *second_moment,
                           void *bf16_parameters, size_t count) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || count == 0)
    return status;
  optimizer_kernel<<<nnlib_cuda_blocks(cuda, count), NNLIB_CUDA_THREADS, 0,
                     cuda->compute>>>(cuda->update_constants, parameters,
                                      gradients, first_moment, second_moment,
                                      (__nv_bfloat16 *)bf16_parameters, count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, optimizer_kernel);
}
