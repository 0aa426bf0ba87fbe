/*
 * stats.c — median, min, max and mean of a set of step times.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

static int compare_doubles(const void *left, const void *right) {
  double a = *(const double *)left, b = *(const double *)right;
  return (a > b) - (a < b);
}

bench_stats bench_summarize(const double *seconds, size_t count) {
  bench_stats stats = {0};
  if (count == 0)
    return stats;
  double *sorted = malloc(count * sizeof *sorted);
  if (!sorted)
    return stats;
  memcpy(sorted, seconds, count * sizeof *sorted);
  qsort(sorted, count, sizeof *sorted, compare_doubles);
  double total = 0;
  for (size_t i = 0; i < count; i++)
    total += sorted[i];
  stats.count = count;
  stats.min = sorted[0];
  stats.max = sorted[count - 1];
  stats.mean = total / (double)count;
  /* The middle one, or the mean of the middle two. */
  stats.median = count % 2 ? sorted[count / 2]
                           : 0.5 * (sorted[count / 2 - 1] + sorted[count / 2]);
  free(sorted);
  return stats;
}
