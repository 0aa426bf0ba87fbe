/*
 * peak.c — the datasheet peak of known GPUs, dense (without 2:4 sparsity),
 * at boost clock, in TFLOP/s. fp32 is the CUDA cores' rate (no tensor
 * cores); tf32 and bf16 are tensor-core rates.
 *
 * Sources: NVIDIA's H100 datasheet (SXM5 and PCIe columns; the datasheet
 * prints the tensor rates with sparsity, halved here), the H200 datasheet
 * (the SXM board has the H100 SXM5's compute), the A100 datasheet (SXM4
 * and PCIe list the same rates). Variants left out on purpose, reported as
 * unknown rather than guessed: H100 NVL and H200 NVL (other clocks and
 * power), GH200.
 */
#include "bench.h"

#include <math.h>
#include <string.h>

const char *const bench_peak_source =
    "NVIDIA datasheets, dense (no sparsity), boost clock";

typedef struct peak_row {
  const char *device;
  double fp32, tf32, bf16;
} peak_row;

static const peak_row h100_sxm = {"H100 SXM5", 67.0, 495.0, 989.0};
static const peak_row h100_pcie = {"H100 PCIe", 51.0, 378.0, 756.0};
static const peak_row h200_sxm = {"H200 SXM", 67.0, 495.0, 989.0};
static const peak_row a100 = {"A100", 19.5, 156.0, 312.0};

/* cudaDeviceProp names: "NVIDIA H100 80GB HBM3" (SXM5), "NVIDIA H100 PCIe",
 * "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA H200 NVL", "NVIDIA GH200 480GB",
 * "NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe". */
static const peak_row *match(const char *name) {
  if (strstr(name, "NVL") || strstr(name, "GH200"))
    return NULL;
  if (strstr(name, "H100"))
    return strstr(name, "PCIe") ? &h100_pcie : &h100_sxm;
  if (strstr(name, "H200"))
    return &h200_sxm;
  if (strstr(name, "A100"))
    return &a100;
  return NULL;
}

bench_peak bench_peak_tflops(const char *device_name, const char *precision) {
  bench_peak peak = {NAN, NULL};
  const peak_row *row = device_name ? match(device_name) : NULL;
  if (!row)
    return peak;
  peak.device = row->device;
  if (strcmp(precision, "fp32") == 0)
    peak.tflops = row->fp32;
  else if (strcmp(precision, "tf32") == 0)
    peak.tflops = row->tf32;
  else if (strcmp(precision, "bf16") == 0)
    peak.tflops = row->bf16;
  return peak;
}
