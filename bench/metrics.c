/*
 * metrics.c — the figures derived from the measurements, in one place so
 * that the table and the JSON record agree.
 */
#include "bench.h"

#include <math.h>

static double ratio(double numerator, double denominator) {
  return denominator > 0 ? numerator / denominator : NAN;
}

bench_metrics bench_derive(const bench_report *report) {
  const double step = report->steps.median;
  const bench_device_memory *memory = &report->measurement->memory;
  bench_metrics metrics = {
      .samples_per_second = ratio((double)report->config->batch_size, step),
      .achieved_tflops = ratio(report->flops_per_step, step) * 1e-12,
      .fraction_of_peak = NAN,
      .floor_tflops = NAN,
      .step_over_floor = NAN,
      .required_gb_per_s = NAN,
      .copy_gb_per_s = NAN,
      .copy_fraction = NAN,
      .device_used_bytes = NAN,
  };
  if (!isnan(report->peak.tflops))
    metrics.fraction_of_peak =
        ratio(metrics.achieved_tflops, report->peak.tflops);
  if (report->floor.measured) {
    double pass = report->floor.pass.median;
    metrics.floor_tflops = ratio(report->flops_per_step, pass) * 1e-12;
    metrics.step_over_floor = ratio(step, pass);
  }
  if (report->transfer.measured) {
    double bytes = report->transfer.bytes_per_step;
    metrics.required_gb_per_s = ratio(bytes, step) * 1e-9;
    metrics.copy_gb_per_s = ratio(bytes, report->transfer.copy.median) * 1e-9;
    metrics.copy_fraction = ratio(report->transfer.copy.median, step);
  }
  if (memory->known && memory->free_before >= memory->free_after_warmup)
    metrics.device_used_bytes =
        (double)(memory->free_before - memory->free_after_warmup);
  return metrics;
}
