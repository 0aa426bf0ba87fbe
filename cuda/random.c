/*
 * random.c — cuRAND device generators: Philox4x32-10 seeded like the CPU
 * backend's host generator (same seed, offset 0, default ordering), so one
 * seed gives the same dropout uniforms on both, and the same initial weights
 * to ~1e-6 of their scale (the device's Box-Muller takes __sincosf, the
 * host's sinf/cosf: curand_normal.h). Each
 * generator runs on the context's compute stream, in order with the kernels
 * that read what it writes.
 */
#include "cuda_backend.h"

nn_status nnlib_cuda_rng_seed(nnlib_backend *backend, nn_context *ctx,
                              nnlib_rng rng, uint64_t seed) {
  curandGenerator_t generator = (curandGenerator_t)rng;
  nn_status status = nnlib_cuda_use_device(nnlib_cuda(backend), ctx);
  if (status == NN_OK)
    status = NNLIB_CURAND_CHECK(
        ctx, curandSetPseudoRandomGeneratorSeed(generator, seed));
  if (status == NN_OK)
    status = NNLIB_CURAND_CHECK(ctx, curandSetGeneratorOffset(generator, 0));
  return status;
}

nn_status nnlib_cuda_rng_create(nnlib_backend *backend, nn_context *ctx,
                                uint64_t seed, nnlib_rng *out) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  curandGenerator_t generator = NULL;
  *out = NULL;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status == NN_OK)
    status = NNLIB_CURAND_CHECK(
        ctx,
        curandCreateGenerator(&generator, CURAND_RNG_PSEUDO_PHILOX4_32_10));
  if (status != NN_OK)
    return status;
  status = NNLIB_CURAND_CHECK(ctx, curandSetStream(generator, cuda->compute));
  if (status == NN_OK)
    status = nnlib_cuda_rng_seed(backend, ctx, generator, seed);
  if (status != NN_OK) {
    curandDestroyGenerator(generator);
    return status;
  }
  *out = generator;
  return NN_OK;
}

void nnlib_cuda_rng_destroy(nnlib_backend *backend, nnlib_rng rng) {
  if (!rng)
    return;
  cudaSetDevice(nnlib_cuda(backend)->device);
  curandDestroyGenerator((curandGenerator_t)rng);
  (void)cudaGetLastError();
}

/* count uniforms in (0, 1] into dst (device). */
nn_status nnlib_cuda_random_uniform(nnlib_backend *backend, nn_context *ctx,
                                    nnlib_rng rng, float *dst, size_t count) {
  nn_status status = nnlib_cuda_use_device(nnlib_cuda(backend), ctx);
  if (status == NN_OK && count > 0)
    status = NNLIB_CURAND_CHECK(
        ctx, curandGenerateUniform((curandGenerator_t)rng, dst, count));
  return status;
}

/* count (even) N(0, 1) draws into dst (device). */
nn_status nnlib_cuda_random_normal(nnlib_backend *backend, nn_context *ctx,
                                   nnlib_rng rng, float *dst, size_t count) {
  nn_status status = nnlib_cuda_use_device(nnlib_cuda(backend), ctx);
  if (status == NN_OK && count > 0)
    status =
        NNLIB_CURAND_CHECK(ctx, curandGenerateNormal((curandGenerator_t)rng,
                                                     dst, count, 0.0f, 1.0f));
  return status;
}
