/*
 * optimizers.cu — one optimizer step over the whole parameter arena in one
 * launch: gradient descent, momentum, RMSprop and Adam with bias
 * correction. The formulas and their order of operations are
 * cpu_optimizer_step's; with --fmad=false and IEEE sqrtf and division (nvcc's
 * defaults) each element's update rounds exactly as on the CPU.
 */
#include "kernel_common.cuh"

#include <math.h>

/* Over the arena (count floats; parameters, gradients and both moments
 * share its layout), one thread per element, grid-stride:
 *   gd:       θ -= α g
 *   momentum: v = β1 v + (1-β1) g;  θ -= α v
 *   rmsprop:  s = β2 s + (1-β2) g²; θ -= α g / (√s + ε)
 *   adam:     v and s as above;     θ -= α (v / c1) / (√(s / c2) + ε)
 * with c1 = 1 - β1^t and c2 = 1 - β2^t computed once on the host. */
static __global__ void
optimizer_kernel(nnlib_optimizer_step step, float correction1,
                 float correction2, float *parameters, const float *gradients,
                 float *first_moment, float *second_moment, size_t count) {
  const float lr = step.learning_rate, b1 = step.beta1, b2 = step.beta2;
  const float eps = step.epsilon;
  NNLIB_GRID_STRIDE_LOOP(k, count) {
    const float g = gradients[k];
    switch (step.kind) {
    case NN_OPTIMIZER_MOMENTUM:
      first_moment[k] = b1 * first_moment[k] + (1.0f - b1) * g;
      parameters[k] -= lr * first_moment[k];
      break;
    case NN_OPTIMIZER_RMSPROP:
      second_moment[k] = b2 * second_moment[k] + (1.0f - b2) * g * g;
      parameters[k] -= lr * g / (sqrtf(second_moment[k]) + eps);
      break;
    case NN_OPTIMIZER_ADAM: {
      first_moment[k] = b1 * first_moment[k] + (1.0f - b1) * g;
      second_moment[k] = b2 * second_moment[k] + (1.0f - b2) * g * g;
      const float m_hat = first_moment[k] / correction1;
      const float s_hat = second_moment[k] / correction2;
      parameters[k] -= lr * m_hat / (sqrtf(s_hat) + eps);
      break;
    }
    default:
      parameters[k] -= lr * g;
      break;
    }
  }
}

extern "C" nn_status
nnlib_cuda_optimizer_step(nnlib_backend *backend, nn_context *ctx,
                          const nnlib_optimizer_step *step, float *parameters,
                          const float *gradients, float *first_moment,
                          float *second_moment, size_t count) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || count == 0)
    return status;
  /* The host's powf, as the CPU backend's: the same corrections. */
  const float correction1 = 1.0f - powf(step->beta1, (float)step->step);
  const float correction2 = 1.0f - powf(step->beta2, (float)step->step);
  optimizer_kernel<<<nnlib_cuda_blocks(count), NNLIB_CUDA_THREADS, 0,
                     cuda->compute>>>(*step, correction1, correction2,
                                      parameters, gradients, first_moment,
                                      second_moment, count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, optimizer_kernel);
}
