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

void nnlib_blas_advice(const char *core, bool avx2_fma, bool avx512, char *out,
                       size_t size) {
  out[0] = '\0';
  if (!avx2_fma || has_avx2_kernels(core))
    return;
  snprintf(out, size,
           "OpenBLAS runs its %s kernels on this CPU, which has %s: "
           "OPENBLAS_CORETYPE=%s makes the CPU's matrix products several "
           "times faster",
           core, avx512 ? "AVX-512" : "AVX2", avx512 ? "SkylakeX" : "Haswell");
}

void nnlib_cpu_blas_advice(char *out, size_t size) {
  out[0] = '\0';
  if (getenv("OPENBLAS_CORETYPE"))
    return; /* the user's choice, whatever OpenBLAS made of it */
  bool avx2_fma = false, avx512 = false;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  avx512 = __builtin_cpu_supports("avx512f");
#endif
  nnlib_blas_advice(openblas_get_corename(), avx2_fma, avx512, out, size);
}
