/*
 * epilogue_check.c — does cuBLASLt's fused backward epilogue compute what
 * dense.c relies on? Checked once per context on a product whose answer
 * is known, before a layer first fuses.
 *
 * dense.c hands the layer above's dA_prev product to DRELU_BGRAD or
 * DGELU_BGRAD with alpha = 1/m and takes from it both the layer's dZ and
 * its db, final. That needs two things cuBLASLt's documentation does not
 * spell out ("apply independently ReLu and Bias gradient to matmul
 * output"): that the bias gradient sums the output after the activation's
 * gradient (the masked or GELU'-scaled values, not the raw product), and
 * after alpha (else db comes out m times too large). Both are what the
 * emulator does. A library that differs must not train a model wrongly, so
 * each (epilogue, precision, hand-over type) is tried first on a 128 × 128
 * pair of products: the forward epilogue on Z = X + b (identity weights;
 * b in the hand-over type, as dense.c passes it), then the backward one
 * with alpha = 1/2 on G (identity weights again). Every value involved is
 * a small integer or half of one, exact in bf16, so what is left to
 * differ is cuBLASLt's GELU arithmetic, far inside the tolerances below. A
 * combination that disagrees (or has no algorithm) is never fused; the
 * context's notice says what differed.
 *
 * The check waits for the device, which a CUDA graph cannot hold: a step
 * about to be captured checks first (nnlib_cuda_prepare_capture, dense.c),
 * and during a capture a combination not yet checked counts as unusable.
 */
#include "cuda_backend.h"

#include "../host/elementwise.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows, columns and inner size of both products. A multiple of 128, as
 * the ReLU mask's leading dimension must be, and of what bf16 tensor
 * cores want. */
#define SIDE 128
#define ELEMENTS ((size_t)SIDE * SIDE)
#define ALPHA 0.5f
/* |got − expected| ≤ TOLERANCE · (1 + |expected|), and for a bias
 * gradient TOLERANCE · (1 + Σ |terms|): bf16 rounds to 2^-9 relative, a
 * GPU's fast tanh to about 2^-11, while either wrong semantics moves a
 * bias gradient by a third of its terms or more. */
#define TOLERANCE 1e-2

/* The test pattern: X with values −1, 1 and 2, b of ±1/2 (so Z = X + b
 * keeps X's sign: a third masked off by ReLU), and the incoming gradient
 * G with values 1 to 4. */
static float probe_input(size_t row, size_t col) {
  return (row + 2 * col) % 3 == 0 ? -1.0f : (float)(1 + (row + col) % 2);
}

static float probe_bias(size_t row) {
  return row % 2 ? 0.5f : -0.5f;
}

static float pre_activation(size_t row, size_t col) {
  return probe_input(row, col) + probe_bias(row);
}

static float probe_gradient(size_t row, size_t col) {
  return (float)(1 + (row + 3 * col) % 4);
}

static float activation(nnlib_fused fused, float z) {
  return fused == NNLIB_FUSED_RELU ? (z > 0.0f ? z : 0.0f) : nnlib_gelu_tanh(z);
}

static float derivative(nnlib_fused fused, float z) {
  return fused == NNLIB_FUSED_RELU ? (z > 0.0f ? 1.0f : 0.0f)
                                   : nnlib_gelu_tanh_derivative(z);
}

static const char *backward_name(nnlib_fused fused) {
  return fused == NNLIB_FUSED_RELU ? "DRELU_BGRAD" : "DGELU_BGRAD";
}

/* ------------------------------------------------------------------------ */
/* The device side                                                           */
/* ------------------------------------------------------------------------ */

/* Device memory of the check, one allocation carved into 256-byte aligned
 * blocks of ELEMENTS floats (bias vectors and the mask fit in one). The
 * operands are float, or bf16 copies of them in the *_in blocks; outputs
 * are of the hand-over type, converted into the *_read blocks to read. */
enum {
  BLOCK_IDENTITY,
  BLOCK_X,
  BLOCK_G,
  BLOCK_IDENTITY_IN,
  BLOCK_X_IN,
  BLOCK_G_IN,
  BLOCK_BIAS_SOURCE,
  BLOCK_A,
  BLOCK_DZ,
  BLOCK_AUX,
  BLOCK_BIAS,
  BLOCK_DB,
  BLOCK_A_READ,
  BLOCK_DZ_READ,
  BLOCK_DB_READ,
  BLOCK_COUNT
};

typedef struct probe {
  nnlib_fused fused;
  nn_precision precision;
  bool bf16_output;
  float *blocks[BLOCK_COUNT];
} probe;

static nnlib_lt_product forward_product(const probe *p) {
  const bool bf16_in = p->precision == NN_PRECISION_BF16;
  nnlib_lt_product product = {
      .epilogue = p->fused == NNLIB_FUSED_RELU
                      ? CUBLASLT_EPILOGUE_RELU_AUX_BIAS
                      : CUBLASLT_EPILOGUE_GELU_AUX_BIAS,
      .precision = p->precision,
      .bf16_output = p->bf16_output,
      .op_a = CUBLAS_OP_T,
      .op_b = CUBLAS_OP_N,
      .rows = SIDE,
      .cols = SIDE,
      .inner = SIDE,
      .lda = SIDE,
      .ldb = SIDE,
      .ldd = SIDE,
      .a = p->blocks[bf16_in ? BLOCK_IDENTITY_IN : BLOCK_IDENTITY],
      .b = p->blocks[bf16_in ? BLOCK_X_IN : BLOCK_X],
      .d = p->blocks[BLOCK_A],
      .bias = p->blocks[BLOCK_BIAS],
      .aux = p->blocks[BLOCK_AUX],
      .aux_ld = p->fused == NNLIB_FUSED_RELU ? NNLIB_RELU_MASK_LD(SIDE) : SIDE,
      .alpha = 1.0f,
  };
  return product;
}

static nnlib_lt_product backward_product(const probe *p) {
  const bool bf16_in = p->precision == NN_PRECISION_BF16;
  nnlib_lt_product product = forward_product(p);
  product.epilogue = p->fused == NNLIB_FUSED_RELU
                         ? CUBLASLT_EPILOGUE_DRELU_BGRAD
                         : CUBLASLT_EPILOGUE_DGELU_BGRAD;
  product.op_a = CUBLAS_OP_N;
  product.b = p->blocks[bf16_in ? BLOCK_G_IN : BLOCK_G];
  product.d = p->blocks[BLOCK_DZ];
  product.bias = p->blocks[BLOCK_DB];
  product.alpha = ALPHA;
  return product;
}

/* b, in the hand-over type. */
static nn_status upload_bias(nnlib_cuda_backend *cuda, nn_context *ctx,
                             const probe *p, float *host) {
  for (size_t row = 0; row < SIDE; row++)
    host[row] = probe_bias(row);
  const int target = p->bf16_output ? BLOCK_BIAS_SOURCE : BLOCK_BIAS;
  nn_status status =
      nnlib_cuda_upload(&cuda->base, ctx, p->blocks[target], host, SIDE);
  if (status == NN_OK && p->bf16_output)
    status = nnlib_cuda_to_bf16(cuda, ctx, p->blocks[BLOCK_BIAS_SOURCE],
                                p->blocks[BLOCK_BIAS], SIDE);
  return status;
}

/* The identity, X and G, as floats and (bf16 precision) as bf16; then b. */
static nn_status upload_operands(nnlib_cuda_backend *cuda, nn_context *ctx,
                                 const probe *p, float *host) {
  static const int sources[3] = {BLOCK_IDENTITY, BLOCK_X, BLOCK_G};
  nn_status status = NN_OK;
  for (int s = 0; s < 3 && status == NN_OK; s++) {
    for (size_t col = 0; col < SIDE; col++)
      for (size_t row = 0; row < SIDE; row++)
        host[col * SIDE + row] = s == 0   ? (float)(row == col)
                                 : s == 1 ? probe_input(row, col)
                                          : probe_gradient(row, col);
    status = nnlib_cuda_upload(&cuda->base, ctx, p->blocks[sources[s]], host,
                               ELEMENTS);
    if (status == NN_OK && p->precision == NN_PRECISION_BF16)
      status = nnlib_cuda_to_bf16(cuda, ctx, p->blocks[sources[s]],
                                  p->blocks[sources[s] + 3], ELEMENTS);
  }
  return status == NN_OK ? upload_bias(cuda, ctx, p, host) : status;
}

/* An output of the hand-over type, as floats into host. */
static nn_status read_output(nnlib_cuda_backend *cuda, nn_context *ctx,
                             const probe *p, int block, int read_block,
                             size_t count, float *host) {
  const float *floats = p->blocks[block];
  nn_status status = NN_OK;
  if (p->bf16_output) {
    status = nnlib_cuda_from_bf16(cuda, ctx, p->blocks[block],
                                  p->blocks[read_block], count);
    floats = p->blocks[read_block];
  }
  if (status == NN_OK)
    status = nnlib_cuda_download(&cuda->base, ctx, host, floats, count);
  return status;
}

/* Runs both products. *ran is false when cuBLASLt has no algorithm for
 * one, or its algorithm refused to run (the context's error then left as
 * it was). */
static nn_status run_products(nnlib_cuda_backend *cuda, nn_context *ctx,
                              const probe *p, bool *ran) {
  *ran = false;
  const nnlib_lt_product products[2] = {forward_product(p),
                                        backward_product(p)};
  nnlib_lt_plan *plans[2] = {NULL, NULL};
  nn_status status = NN_OK;
  for (int k = 0; k < 2 && status == NN_OK; k++)
    status = nnlib_cuda_lt_plan(cuda, ctx, &products[k], &plans[k]);
  if (status != NN_OK || !plans[0] || !plans[1])
    return status;
  char before[sizeof ctx->last_error];
  memcpy(before, ctx->last_error, sizeof before);
  for (int k = 0; k < 2; k++)
    if (nnlib_cuda_lt_run(cuda, ctx, plans[k], &products[k]) != NN_OK) {
      nnlib_cuda_lt_refuse(plans[k]);
      memcpy(ctx->last_error, before, sizeof before);
      return NN_OK;
    }
  *ran = true;
  return NN_OK;
}

/* ------------------------------------------------------------------------ */
/* The answer                                                                */
/* ------------------------------------------------------------------------ */

static bool close_to(double got, double expected, double scale) {
  return fabs(got - expected) <= TOLERANCE * (1.0 + scale);
}

/* The first output element off its expected value, described into why
 * (empty when all agree). host holds A, then dZ, then db (SIDE). */
static void compare(const probe *p, const float *a, const float *dz,
                    const float *db, char *why, size_t why_size) {
  why[0] = '\0';
  for (size_t k = 0; k < ELEMENTS; k++) {
    const size_t row = k % SIDE, col = k / SIDE;
    const float z = pre_activation(row, col);
    const double want_a = activation(p->fused, z);
    const double want_dz =
        ALPHA * probe_gradient(row, col) * derivative(p->fused, z);
    if (!close_to(a[k], want_a, fabs(want_a))) {
      snprintf(why, why_size, "A[%zu, %zu] is %g where %g was expected", row,
               col, a[k], want_a);
      return;
    }
    if (!close_to(dz[k], want_dz, fabs(want_dz))) {
      snprintf(why, why_size, "dZ[%zu, %zu] is %g where %g was expected", row,
               col, dz[k], want_dz);
      return;
    }
  }
  for (size_t row = 0; row < SIDE; row++) {
    double want = 0.0, unscaled = 0.0, raw = 0.0, magnitude = 0.0;
    for (size_t col = 0; col < SIDE; col++) {
      const double g = probe_gradient(row, col);
      const double term =
          ALPHA * g * derivative(p->fused, pre_activation(row, col));
      want += term;
      unscaled += term / ALPHA;
      raw += ALPHA * g;
      magnitude += fabs(term);
    }
    if (close_to(db[row], want, magnitude))
      continue;
    const char *hint = close_to(db[row], unscaled, magnitude)
                           ? " (as if summed before the product's alpha)"
                       : close_to(db[row], raw, magnitude)
                           ? " (as if summed without the activation's "
                             "gradient)"
                           : "";
    snprintf(why, why_size,
             "the bias gradient of row %zu is %g where %g was "
             "expected%s",
             row, db[row], want, hint);
    return;
  }
}

/* The check of one combination, host holding 3 · ELEMENTS + SIDE floats:
 * its verdict, and when the epilogue differs, why says how. */
static nn_status check(nnlib_cuda_backend *cuda, nn_context *ctx,
                       const probe *p, float *host,
                       nnlib_epilogue_check *verdict, char *why,
                       size_t why_size) {
  *verdict = NNLIB_EPILOGUE_UNAVAILABLE;
  nn_status status = upload_operands(cuda, ctx, p, host);
  bool ran = false;
  if (status == NN_OK)
    status = run_products(cuda, ctx, p, &ran);
  if (status != NN_OK || !ran)
    return status;
  float *a = host, *dz = host + ELEMENTS, *db = host + 2 * ELEMENTS;
  status = read_output(cuda, ctx, p, BLOCK_A, BLOCK_A_READ, ELEMENTS, a);
  if (status == NN_OK)
    status = read_output(cuda, ctx, p, BLOCK_DZ, BLOCK_DZ_READ, ELEMENTS, dz);
  if (status == NN_OK)
    status = read_output(cuda, ctx, p, BLOCK_DB, BLOCK_DB_READ, SIDE, db);
  if (status != NN_OK)
    return status;
  compare(p, a, dz, db, why, why_size);
  *verdict = why[0] == '\0' ? NNLIB_EPILOGUE_AGREES : NNLIB_EPILOGUE_DIFFERS;
  return NN_OK;
}

/* ------------------------------------------------------------------------ */
/* Once per context and combination                                          */
/* ------------------------------------------------------------------------ */

/* Device and host memory for a check (the backend's own allocations), or
 * *allocated false: out of memory, the combination is then not used, and
 * the context's error is left as it was. One device allocation carved
 * into the blocks. */
static nn_status allocate(nnlib_cuda_backend *cuda, nn_context *ctx, probe *p,
                          float **host, bool *allocated) {
  *allocated = false;
  char before[sizeof ctx->last_error];
  memcpy(before, ctx->last_error, sizeof before);
  float *device = NULL;
  nn_status status =
      nnlib_cuda_alloc(&cuda->base, ctx, BLOCK_COUNT * ELEMENTS, &device);
  if (status == NN_OK)
    status = nnlib_host_alloc(ctx, 3 * ELEMENTS + SIDE, sizeof(float),
                              (void **)host);
  if (status != NN_OK) {
    nnlib_cuda_release(&cuda->base, device);
    if (status != NN_ERROR_OUT_OF_MEMORY)
      return status;
    memcpy(ctx->last_error, before, sizeof before);
    return NN_OK;
  }
  for (int b = 0; b < BLOCK_COUNT; b++)
    p->blocks[b] = device + (size_t)b * ELEMENTS;
  *allocated = true;
  return NN_OK;
}

nn_status nnlib_cuda_epilogue_usable(nnlib_cuda_backend *cuda, nn_context *ctx,
                                     nnlib_fused fused, nn_precision precision,
                                     bool bf16_output, bool *usable) {
  *usable = false;
  nnlib_epilogue_check *verdict =
      &cuda->epilogue_checks[precision][fused == NNLIB_FUSED_RELU][bf16_output];
  if (*verdict != NNLIB_EPILOGUE_UNCHECKED) {
    *usable = *verdict == NNLIB_EPILOGUE_AGREES;
    return NN_OK;
  }
  enum cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  nn_status status =
      NNLIB_CUDA_CHECK(ctx, cudaStreamIsCapturing(cuda->compute, &capturing));
  if (status != NN_OK || capturing != cudaStreamCaptureStatusNone)
    return status;
  probe p = {fused, precision, bf16_output, {NULL}};
  float *host = NULL;
  bool allocated = false;
  status = allocate(cuda, ctx, &p, &host, &allocated);
  if (status != NN_OK || !allocated) {
    if (status == NN_OK)
      *verdict = NNLIB_EPILOGUE_UNAVAILABLE;
    return status;
  }
  nnlib_epilogue_check found = NNLIB_EPILOGUE_UNCHECKED;
  char why[160];
  status = check(cuda, ctx, &p, host, &found, why, sizeof why);
  nnlib_cuda_release(&cuda->base, p.blocks[0]);
  free(host);
  if (status != NN_OK)
    return status;
  *verdict = found;
  *usable = found == NNLIB_EPILOGUE_AGREES;
  if (found == NNLIB_EPILOGUE_DIFFERS)
    nnlib_note(ctx,
               "cuBLASLt's %s (%s products, %s out) is not used: on a product "
               "with a known answer %s; those %s layers run nn's own kernels",
               backward_name(fused), nn_precision_name(precision),
               bf16_output ? "bf16" : "fp32", why,
               fused == NNLIB_FUSED_RELU ? "ReLU" : "GELU-tanh");
  return NN_OK;
}
