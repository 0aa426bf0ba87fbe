/*
 * rand.cpp — cuRAND's device generators, as the real library's host
 * generators of the same type and seed.
 *
 * cuRAND documents that a host generator gives the same numbers as a device
 * generator of the same type, seed and offset; nn's CPU backend relies on
 * it, and so does this file. A device generator's state moves on when a
 * generate call is made, not when the stream reaches it, so the numbers are
 * made at the call, into host memory, and a stream operation copies them to
 * their device destination in order with the rest of the stream's work.
 *
 * The library's objects are compiled with curandCreateGenerator and the
 * other calls below renamed nnemu_curand... (cmake/cuda_emulator.cmake), so
 * they reach these functions whatever the order libraries load in. Only
 * generators made here are device generators; a call on a host generator
 * (the CPU backend's) goes straight on to the real library.
 */
#include "emulator.hpp"

#include <curand.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace {

std::mutex generators_mutex;
/* Device generators (real host generators underneath), each with its
 * stream. */
std::map<curandGenerator_t, cudaStream_t> device_generators;

bool is_device_generator(curandGenerator_t generator) {
  std::lock_guard<std::mutex> lock(generators_mutex);
  return device_generators.count(generator) != 0;
}

cudaStream_t stream_of(curandGenerator_t generator) {
  std::lock_guard<std::mutex> lock(generators_mutex);
  auto found = device_generators.find(generator);
  return found == device_generators.end() ? nullptr : found->second;
}

/* count floats made by `generate` now, copied to dst (device) on the
 * generator's stream. */
template <class Generate>
curandStatus_t generate_into_device(curandGenerator_t generator, float *dst,
                                    size_t count, Generate generate) {
  if (!nnemu::is_device_range(dst, count * sizeof(float))) {
    nnemu::report("cuRAND: generating %zu floats into %p, which is not "
                  "inside device memory",
                  count, (void *)dst);
    return CURAND_STATUS_LAUNCH_FAILURE;
  }
  auto numbers = std::make_shared<std::vector<float>>(count);
  curandStatus_t status = generate(numbers->data());
  if (status != CURAND_STATUS_SUCCESS)
    return status;
  cudaError_t error = nnemu::enqueue(
      stream_of(generator),
      [dst, numbers] {
        nnemu::note_write(dst, numbers->size() * sizeof(float),
                          "curandGenerate");
        memcpy(dst, numbers->data(), numbers->size() * sizeof(float));
      },
      "curandGenerate");
  return error == cudaSuccess ? CURAND_STATUS_SUCCESS
                              : CURAND_STATUS_LAUNCH_FAILURE;
}

} // namespace

extern "C" {

curandStatus_t nnemu_curandCreateGenerator(curandGenerator_t *generator,
                                           curandRngType_t type) {
  curandStatus_t status = curandCreateGeneratorHost(generator, type);
  if (status == CURAND_STATUS_SUCCESS) {
    std::lock_guard<std::mutex> lock(generators_mutex);
    device_generators[*generator] = nullptr;
  }
  return status;
}

curandStatus_t nnemu_curandDestroyGenerator(curandGenerator_t generator) {
  {
    std::lock_guard<std::mutex> lock(generators_mutex);
    device_generators.erase(generator);
  }
  return curandDestroyGenerator(generator);
}

curandStatus_t nnemu_curandSetStream(curandGenerator_t generator,
                                     cudaStream_t stream) {
  if (!is_device_generator(generator))
    return curandSetStream(generator, stream);
  std::lock_guard<std::mutex> lock(generators_mutex);
  device_generators[generator] = stream;
  return CURAND_STATUS_SUCCESS;
}

curandStatus_t nnemu_curandGenerateUniform(curandGenerator_t generator,
                                           float *output, size_t count) {
  if (!is_device_generator(generator))
    return curandGenerateUniform(generator, output, count);
  return generate_into_device(generator, output, count, [&](float *host) {
    return curandGenerateUniform(generator, host, count);
  });
}

curandStatus_t nnemu_curandGenerateNormal(curandGenerator_t generator,
                                          float *output, size_t count,
                                          float mean, float stddev) {
  if (!is_device_generator(generator))
    return curandGenerateNormal(generator, output, count, mean, stddev);
  return generate_into_device(generator, output, count, [&](float *host) {
    return curandGenerateNormal(generator, host, count, mean, stddev);
  });
}

} /* extern "C" */
