/*
 * report_table.c — the result as a two-column markdown table on stdout:
 * readable in a terminal, and pasted as it is into the .md files of
 * bench/results.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>

static const char *placement_name(nn_data_placement placement) {
  return placement == NN_DATA_STREAMING ? "stream" : "resident";
}

static void print_widths(const bench_model *model) {
  for (size_t l = 0; l <= model->layer_count; l++)
    printf(l ? "-%zu" : "%zu", model->widths[l]);
}

static void print_mib(double bytes) {
  printf("%.1f MiB", bytes / (1024.0 * 1024.0));
}

/* A figure, or "n/a" and why not. */
static void print_or_na(const char *format, double value, const char *why) {
  if (isnan(value))
    printf("n/a (%s)", why);
  else
    printf(format, value);
}

static void print_stats_ms(const bench_stats *stats) {
  printf("median %.3f ms, min %.3f ms, max %.3f ms (mean %.3f ms, %zu steps)",
         1e3 * stats->median, 1e3 * stats->min, 1e3 * stats->max,
         1e3 * stats->mean, stats->count);
}

static void print_model_and_run(const bench_report *report) {
  const bench_config *config = report->config;
  printf("| model | ");
  print_widths(&config->model);
  if (config->preset)
    printf(" (preset %s)", config->preset);
  printf(", relu hidden, softmax output, %zu parameters |\n",
         report->parameter_count);
  printf("| run | %s, batch %zu, %s, data %s, %s, lr %g, %zu warmup + %zu "
         "timed steps, seed %llu; %zu of %zu steps as CUDA graph launches; "
         "fusion %s, %zu layers fused |\n",
         report->backend_name, config->batch_size, config->precision,
         report->measurement->data_resident ? "resident" : "stream",
         nn_optimizer_name(config->optimizer), BENCH_LEARNING_RATE,
         config->warmup_steps, config->timed_steps,
         (unsigned long long)config->seed, report->measurement->steps_graphed,
         report->measurement->steps_run, nn_fusion_name(config->fusion),
         report->measurement->fused_layers);
  printf("| data | synthetic, %zu examples = %zu batches per epoch; %zu "
         "epoch-start steps left out of the statistics",
         report->examples, report->batches_per_epoch,
         report->epoch_starts.count);
  if (report->epoch_starts.count)
    printf(" (median %.3f ms)", 1e3 * report->epoch_starts.median);
  printf(" |\n");
  if (report->measurement->notice[0])
    printf("| note | %s |\n", report->measurement->notice);
}

static void print_speed(const bench_report *report,
                        const bench_metrics *metrics) {
  printf("| timer | %s |\n", bench_timer_description(report->on_cuda));
  printf("| step time | ");
  print_stats_ms(&report->steps);
  printf(" |\n| samples/s | %.0f |\n", metrics->samples_per_second);
  printf("| gemm FLOPs per step | %.0f = %.3f GFLOP (forward, dW, dA "
         "products) |\n",
         report->flops_per_step, 1e-9 * report->flops_per_step);
  printf("| achieved | %.3f TFLOP/s |\n| peak (%s) | ",
         metrics->achieved_tflops, report->config->precision);
  print_or_na("%.1f TFLOP/s", report->peak.tflops,
              report->on_cuda ? "device not in the table" : "cpu");
  if (report->peak.device)
    printf(" (%s; %s)", report->peak.device, bench_peak_source);
  printf(" |\n| fraction of peak | ");
  print_or_na("%.3f", metrics->fraction_of_peak, "no peak");
  printf(" |\n");
}

static void print_floor(const bench_report *report,
                        const bench_metrics *metrics) {
  const bench_gemm_floor *floor = &report->floor;
  if (!floor->measured) {
    printf("| gemm floor | n/a |\n");
    return;
  }
  printf("| gemm floor | %.3f ms per step (min %.3f ms), %.3f TFLOP/s; %s, "
         "%s, median of %zu passes |\n",
         1e3 * floor->pass.median, 1e3 * floor->pass.min, metrics->floor_tflops,
         floor->library, floor->timer, floor->passes);
  printf("| step / floor | %.2f |\n", metrics->step_over_floor);
}

static void print_transfer(const bench_report *report,
                           const bench_metrics *metrics) {
  printf("| host to device | ");
  if (!report->transfer.measured) {
    printf("n/a (%s) |\n", !report->on_cuda ? "cpu"
                           : report->measurement->data_resident
                               ? "resident data"
                               : "not measured");
    return;
  }
  printf("%.0f bytes per step; needs %.2f GB/s at this step time; a pinned "
         "copy of one batch takes %.3f ms = %.2f GB/s (%.1f%% of the step) "
         "|\n",
         report->transfer.bytes_per_step, metrics->required_gb_per_s,
         1e3 * report->transfer.copy.median, metrics->copy_gb_per_s,
         100 * metrics->copy_fraction);
}

static void print_memory(const bench_report *report,
                         const bench_metrics *metrics) {
  const bench_memory_plan *plan = &report->memory;
  printf("| memory: model minimum | ");
  print_mib(plan->minimum);
  printf(" = parameters ");
  print_mib(plan->parameters);
  printf(" + gradients ");
  print_mib(plan->gradients);
  printf(" + optimizer state ");
  print_mib(plan->optimizer_state);
  printf(" + activations of one batch ");
  print_mib(plan->activations);
  printf(" |\n| memory: library layout | ");
  print_mib(plan->library_layout);
  printf(" |\n| memory: device used | ");
  if (isnan(metrics->device_used_bytes))
    printf("n/a (%s)", report->on_cuda ? "not measured" : "cpu");
  else {
    print_mib(metrics->device_used_bytes);
    printf(" of ");
    print_mib((double)report->measurement->memory.total);
    printf(", %.2f× the minimum", metrics->device_used_bytes / plan->minimum);
  }
  printf(" |\n");
}

static void print_machine(const bench_report *report) {
  const bench_environment *environment = report->environment;
  printf("| cpu | %s, %ld cores, OpenBLAS threads: %d, kernels: %s |\n",
         environment->cpu_model, environment->cpu_cores,
         environment->blas_threads, environment->blas_core);
  if (environment->has_gpu) {
    const bench_gpu *gpu = &environment->gpu;
    printf("| gpu | %s (compute %d.%d, %d SMs, ", gpu->name, gpu->compute_major,
           gpu->compute_minor, gpu->multiprocessors);
    print_mib((double)gpu->memory_bytes);
    printf("), driver %s (CUDA %d.%d), runtime %d.%d, cuBLAS %d.%d.%d, "
           "max clocks SM %d MHz / memory %d MHz |\n",
           gpu->driver_release[0] ? gpu->driver_release : "?",
           gpu->driver_cuda_version / 1000,
           gpu->driver_cuda_version % 1000 / 10, gpu->runtime_version / 1000,
           gpu->runtime_version % 1000 / 10, gpu->cublas_version[0],
           gpu->cublas_version[1], gpu->cublas_version[2],
           gpu->sm_clock_max_khz / 1000, gpu->memory_clock_max_khz / 1000);
  }
  printf("| commit | %s |\n| date | %s |\n", environment->commit,
         environment->date_utc);
}

void bench_print_table(const bench_report *report) {
  bench_metrics metrics = bench_derive(report);
  printf("## nnbench: ");
  print_widths(&report->config->model);
  printf(", batch %zu, %s, %s, data %s, on %s\n\n| metric | value |\n"
         "| --- | --- |\n",
         report->config->batch_size, report->config->precision,
         nn_optimizer_name(report->config->optimizer),
         placement_name(report->config->placement), report->backend_name);
  print_model_and_run(report);
  print_speed(report, &metrics);
  print_floor(report, &metrics);
  print_transfer(report, &metrics);
  print_memory(report, &metrics);
  print_machine(report);
  fflush(stdout);
}
