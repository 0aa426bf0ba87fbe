/*
 * environment.c — the machine a result was measured on: date, commit, CPU,
 * and for CUDA runs the GPU, its driver, runtime, cuBLAS and clocks.
 */
#include "bench.h"

#include "nnbench_commit.h" /* NNBENCH_COMMIT, generated at build time */

#include <cblas.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The "model name" line of /proc/cpuinfo (x86; other CPUs may lack it). */
static void read_cpu_model(char *model, size_t size) {
  snprintf(model, size, "unknown");
  FILE *file = fopen("/proc/cpuinfo", "r");
  if (!file)
    return;
  char line[512];
  while (fgets(line, sizeof line, file)) {
    char *colon = strchr(line, ':');
    if (strncmp(line, "model name", 10) != 0 || !colon)
      continue;
    colon += 1 + strspn(colon + 1, " \t");
    colon[strcspn(colon, "\n")] = '\0';
    snprintf(model, size, "%s", colon);
    break;
  }
  fclose(file);
}

void bench_describe_host(bench_environment *environment) {
  time_t now = time(NULL);
  struct tm utc;
  gmtime_r(&now, &utc);
  strftime(environment->date_utc, sizeof environment->date_utc,
           "%Y-%m-%dT%H:%M:%SZ", &utc);
  environment->commit = NNBENCH_COMMIT;
  read_cpu_model(environment->cpu_model, sizeof environment->cpu_model);
  environment->cpu_cores = sysconf(_SC_NPROCESSORS_ONLN);
  environment->blas_threads = openblas_get_num_threads();
  snprintf(environment->blas_core, sizeof environment->blas_core, "%s",
           openblas_get_corename());
}

/* "580.65.06" from "NVRM version: NVIDIA UNIX ... Kernel Module  580.65.06
 * ...", or "" where the file is absent (containers may hide it). */
static void read_driver_release(char *release, size_t size) {
  release[0] = '\0';
  FILE *file = fopen("/proc/driver/nvidia/version", "r");
  if (!file)
    return;
  char line[512];
  if (fgets(line, sizeof line, file)) {
    const char *module = strstr(line, "Kernel Module");
    if (module) {
      module += strlen("Kernel Module");
      module += strspn(module, " \t");
      snprintf(release, size, "%.*s", (int)strcspn(module, " \t\n"), module);
    }
  }
  fclose(file);
}

static void read_versions(bench_gpu *gpu) {
  cudaDriverGetVersion(&gpu->driver_cuda_version);
  cudaRuntimeGetVersion(&gpu->runtime_version);
  cublasGetProperty(MAJOR_VERSION, &gpu->cublas_version[0]);
  cublasGetProperty(MINOR_VERSION, &gpu->cublas_version[1]);
  cublasGetProperty(PATCH_LEVEL, &gpu->cublas_version[2]);
  read_driver_release(gpu->driver_release, sizeof gpu->driver_release);
}

/* Peak clocks, in kHz. cudaDeviceProp lost clockRate and memoryClockRate in
 * CUDA 13; the attributes remain. Current clocks need NVML (bench/run-gpu
 * records them with nvidia-smi). */
static void read_clocks(bench_gpu *gpu, int device) {
  cudaDeviceGetAttribute(&gpu->sm_clock_max_khz, cudaDevAttrClockRate, device);
  cudaDeviceGetAttribute(&gpu->memory_clock_max_khz, cudaDevAttrMemoryClockRate,
                         device);
}

bool bench_describe_gpu(int device, bench_environment *environment,
                        bench_device_memory *memory) {
  int count = 0;
  struct cudaDeviceProp properties;
  bench_gpu *gpu = &environment->gpu;
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device >= count ||
      cudaSetDevice(device) != cudaSuccess ||
      cudaGetDeviceProperties(&properties, device) != cudaSuccess ||
      cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  memset(gpu, 0, sizeof *gpu);
  snprintf(gpu->name, sizeof gpu->name, "%s", properties.name);
  gpu->index = device;
  gpu->compute_major = properties.major;
  gpu->compute_minor = properties.minor;
  gpu->multiprocessors = properties.multiProcessorCount;
  gpu->memory_bytes = properties.totalGlobalMem;
  read_versions(gpu);
  read_clocks(gpu, device);
  (void)cudaGetLastError();
  environment->has_gpu = true;
  memory->known = true;
  memory->free_before = free_bytes;
  memory->total = total_bytes;
  return true;
}

bool bench_device_free_memory(size_t *free_bytes, size_t *total_bytes) {
  if (cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess)
    return true;
  (void)cudaGetLastError();
  return false;
}
