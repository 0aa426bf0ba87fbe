/*
 * cpu_blas.c — whether OpenBLAS runs the kernels this CPU can run.
 *
 * Debian's OpenBLAS picks its kernels at load time from the CPU's model
 * number. A CPU newer than that OpenBLAS (0.3.21 in Debian 12 does not
 * know Emerald Rapids, for one) gets its generic Prescott kernels: SSE3,
 * about a quarter of what AVX-512 kernels do. OPENBLAS_CORETYPE, read when
 * OpenBLAS loads, overrides the choice; a program cannot change it once
 * running, so the CPU backend says so in the context's notice instead
 * (unless OPENBLAS_CORETYPE is set already).
 */
#include "backend.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

/* OpenBLAS's x86-64 cores (openblas_get_corename) with AVX2 + FMA
 * kernels; the last three have AVX-512 ones too. */
static const char *const avx2_cores[] = {"Haswell", "Zen", "SkylakeX",
                                         "Cooperlake", "SapphireRapids"};

static bool has_avx2_kernels(const char *core) {
  for (size_t k = 0; k < sizeof avx2_cores / sizeof avx2_cores[0]; k++)
    if (strcasecmp(core, avx2_cores[k]) == 0)
      return true;
  return false;
}

const char *nnlib_blas_better_core(const char *core, bool avx2_fma,
                                   bool avx512) {
  if (!avx2_fma || has_avx2_kernels(core))
    return NULL;
  return avx512 ? "SkylakeX" : "Haswell";
}

void nnlib_blas_advice(const char *core, bool avx2_fma, bool avx512, char *out,
                       size_t size) {
  out[0] = '\0';
  const char *better = nnlib_blas_better_core(core, avx2_fma, avx512);
  if (!better)
    return;
  snprintf(out, size,
           "OpenBLAS runs its %s kernels on this CPU, which has %s: "
           "OPENBLAS_CORETYPE=%s makes the CPU's matrix products several "
           "times faster",
           core, avx512 ? "AVX-512" : "AVX2", better);
}

/* What this CPU runs. OpenBLAS's SkylakeX kernels use AVX-512 F, BW, DQ and
 * VL (a Xeon Phi has F without the others). __builtin_cpu_supports also
 * checks that the OS saves the vector registers. */
static void detect_vectors(bool *avx2_fma, bool *avx512) {
  *avx2_fma = *avx512 = false;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  *avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  *avx512 =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
}

/* This process's OpenBLAS core and CPU; false when OPENBLAS_CORETYPE is
 * set (the user's choice, whatever OpenBLAS made of it). */
static bool this_process(const char **core, bool *avx2_fma, bool *avx512) {
  if (getenv("OPENBLAS_CORETYPE"))
    return false;
  detect_vectors(avx2_fma, avx512);
  *core = openblas_get_corename();
  return true;
}

const char *nnlib_cpu_blas_better_core(void) {
  const char *core;
  bool avx2_fma, avx512;
  return this_process(&core, &avx2_fma, &avx512)
             ? nnlib_blas_better_core(core, avx2_fma, avx512)
             : NULL;
}

void nnlib_cpu_blas_advice(char *out, size_t size) {
  const char *core;
  bool avx2_fma, avx512;
  out[0] = '\0';
  if (this_process(&core, &avx2_fma, &avx512))
    nnlib_blas_advice(core, avx2_fma, avx512, out, size);
}
