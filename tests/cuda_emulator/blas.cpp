/*
 * blas.cpp — cuBLAS and cuBLASLt for the CUDA emulator, on OpenBLAS.
 *
 * Emulates the part of the two libraries the CUDA backend uses: cuBLAS
 * handles (stream, workspace, math, atomics and pointer modes), cublasSgemm
 * and cublasGemmEx (fp32 or bf16 A and B, fp32 C, fp32 or TF32 compute),
 * and cuBLASLt matmuls D = alpha op(A) op(B) + beta C with the DEFAULT,
 * BIAS, RELU_BIAS, RELU_AUX_BIAS, DRELU_BGRAD, GELU_AUX_BIAS (tanh
 * approximation) and DGELU_BGRAD epilogues (C and D fp32, or bf16 with
 * bf16 A and B; the bias, bias gradient and GELU input of D's type, as
 * cuBLASLt defaults them; bf16 results rounded to nearest even), with the
 * descriptors, preferences and heuristic around them. Products run as
 * stream work (nnemu::enqueue) on values captured at the call, as the real
 * libraries' kernels do; the arithmetic is cblas_sgemm on fp32 copies (bf16
 * converted exactly, TF32 inputs rounded to 10 mantissa bits as tensor
 * cores round them), accumulating in fp32.
 *
 * Stricter than the real libraries:
 * - every matrix, bias vector and bit mask a call reads or writes must lie
 *   inside one cudaMalloc allocation over all the bytes its shape and
 *   leading dimension span, aligned to its element: a call that fails
 *   this returns CUBLAS_STATUS_INVALID_VALUE and says which operand, where
 *   a GPU would read or write out of bounds;
 * - handles and descriptors are tracked: a destroyed or foreign one is
 *   refused rather than read;
 * - only what the backend uses is emulated; any other type, compute type,
 *   epilogue or attribute is refused with a message, never ignored;
 * - an algorithm from the heuristic carries the alignments it was chosen
 *   for (the preference's, and the bias and aux pointers' then), and a
 *   matmul whose pointers are less aligned is refused: a GPU would pick a
 *   kernel that needs them;
 * - ReLU epilogues keep NaN (a GPU's fmax would give 0), so that
 *   uninitialised inputs (the emulator's NaN-filled memory) show up.
 * Each refusal is printed with nnemu::report; nothing here exits.
 */
#include "emulator.hpp"

#include <cblas.h>
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

/* The handle types point to these; the headers only declare them. */
struct cublasContext {
  cudaStream_t stream = nullptr;
  void *workspace = nullptr; /* NULL: the library's own pool */
  size_t workspace_bytes = 0;
  int math = CUBLAS_DEFAULT_MATH; /* cublasMath_t, flags included */
  cublasAtomicsMode_t atomics = CUBLAS_ATOMICS_NOT_ALLOWED;
};

struct cublasLtContext {
  int unused = 0; /* cuBLASLt keeps no state the emulator needs */
};

namespace {

/* ------------------------------------------------------------------------ */
/* Refusals                                                                  */
/* ------------------------------------------------------------------------ */

/* Why a call is refused, or nothing (status SUCCESS). Checks return one so
 * that the caller decides whether to report it: the heuristic stays silent
 * where it merely has no algorithm, as the real one does. */
struct refusal {
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  std::string why;
  explicit operator bool() const {
    return status != CUBLAS_STATUS_SUCCESS;
  }
};

refusal refuse(cublasStatus_t status, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

refusal refuse(cublasStatus_t status, const char *format, ...) {
  char text[1024];
  va_list arguments;
  va_start(arguments, format);
  vsnprintf(text, sizeof text, format, arguments);
  va_end(arguments);
  return refusal{status, text};
}

cublasStatus_t reported(const char *what, const refusal &refused) {
  nnemu::report("%s: %s", what, refused.why.c_str());
  return refused.status;
}

/* ------------------------------------------------------------------------ */
/* Live objects                                                              */
/* ------------------------------------------------------------------------ */

enum class object_kind { cublas, lt, matmul_desc, layout, preference };

/* Every handle and descriptor created and not yet destroyed, so that a
 * stale or foreign pointer is refused instead of read. Host calls only:
 * stream work never looks here. */
std::mutex &objects_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::map<const void *, object_kind> &live_objects() {
  static std::map<const void *, object_kind> objects;
  return objects;
}

void remember(const void *object, object_kind kind) {
  std::lock_guard<std::mutex> lock(objects_mutex());
  live_objects()[object] = kind;
}

bool is_live(const void *object, object_kind kind) {
  std::lock_guard<std::mutex> lock(objects_mutex());
  auto found = live_objects().find(object);
  return found != live_objects().end() && found->second == kind;
}

/* Whether it was live (and is no longer). */
bool forget(const void *object, object_kind kind) {
  std::lock_guard<std::mutex> lock(objects_mutex());
  auto found = live_objects().find(object);
  if (found == live_objects().end() || found->second != kind)
    return false;
  live_objects().erase(found);
  return true;
}

/* ------------------------------------------------------------------------ */
/* Element types and stored matrices                                         */
/* ------------------------------------------------------------------------ */

size_t element_bytes(cudaDataType_t type) {
  switch (type) {
  case CUDA_R_32F:
    return 4;
  case CUDA_R_16BF:
    return 2;
  default:
    return 0;
  }
}

const char *type_name(cudaDataType_t type) {
  switch (type) {
  case CUDA_R_32F:
    return "CUDA_R_32F";
  case CUDA_R_16BF:
    return "CUDA_R_16BF";
  default:
    return "an unsupported type";
  }
}

bool is_operation(int op) {
  return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

/* On real data CUBLAS_OP_C is the transpose. */
CBLAS_TRANSPOSE cblas_operation(int op) {
  return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans;
}

const char *operation_name(int op) {
  return op == CUBLAS_OP_N ? "N" : "T";
}

/* A matrix as it lies in memory: rows × cols column-major, columns ld
 * elements apart. op(A) of a product that is rows × inner is stored
 * rows × inner with op N, inner × rows otherwise. */
struct stored_matrix {
  const char *name;
  const void *pointer;
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};

stored_matrix stored_operand(const char *name, const void *pointer,
                             cudaDataType_t type, int op, uint64_t rows,
                             uint64_t cols, int64_t ld) {
  if (op == CUBLAS_OP_N)
    return stored_matrix{name, pointer, type, rows, cols, ld};
  return stored_matrix{name, pointer, type, cols, rows, ld};
}

/* Bytes from the first element to one past the last: ((cols - 1) ld +
 * rows) elements. The caller has checked ld >= rows and the int ranges,
 * so this cannot overflow. */
uint64_t span_bytes(const stored_matrix &matrix) {
  if (matrix.rows == 0 || matrix.cols == 0)
    return 0;
  return ((matrix.cols - 1) * (uint64_t)matrix.ld + matrix.rows) *
         element_bytes(matrix.type);
}

refusal check_leading_dimension(const stored_matrix &matrix) {
  const uint64_t least = std::max<uint64_t>(matrix.rows, 1);
  if (matrix.ld >= 0 && (uint64_t)matrix.ld >= least)
    return refusal{};
  return refuse(CUBLAS_STATUS_INVALID_VALUE,
                "%s is stored %llu x %llu with leading dimension %lld, "
                "less than max(1, %llu rows)",
                matrix.name, (unsigned long long)matrix.rows,
                (unsigned long long)matrix.cols, (long long)matrix.ld,
                (unsigned long long)matrix.rows);
}

/* [pointer, pointer + bytes) inside one cudaMalloc allocation, the pointer
 * aligned to `alignment`; `shape` says what the range holds. */
refusal check_device_range(const char *name, const char *shape,
                           const void *pointer, uint64_t bytes,
                           size_t alignment) {
  if (!pointer || !nnemu::is_device_range(pointer, (size_t)bytes))
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "%s (%s) at %p: its %llu bytes are not inside one "
                  "cudaMalloc allocation",
                  name, shape, pointer, (unsigned long long)bytes);
  if ((uintptr_t)pointer % alignment != 0)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "%s (%s) at %p is not aligned to its %zu-byte elements", name,
                  shape, pointer, alignment);
  return refusal{};
}

/* A matrix the product reads or writes; one with no elements is not
 * referenced and may be anywhere. */
refusal check_matrix_memory(const stored_matrix &matrix) {
  const uint64_t bytes = span_bytes(matrix);
  if (bytes == 0)
    return refusal{};
  char shape[128];
  snprintf(shape, sizeof shape, "%llu x %llu, ld %lld, %s",
           (unsigned long long)matrix.rows, (unsigned long long)matrix.cols,
           (long long)matrix.ld, type_name(matrix.type));
  return check_device_range(matrix.name, shape, matrix.pointer, bytes,
                            element_bytes(matrix.type));
}

/* The largest power of two up to 256 that divides the address (256 for
 * NULL, which constrains nothing). */
uint32_t alignment_of(const void *pointer) {
  uint32_t alignment = 256;
  while (alignment > 1 && (uintptr_t)pointer % alignment != 0)
    alignment /= 2;
  return alignment;
}

/* ------------------------------------------------------------------------ */
/* Arithmetic                                                                */
/* ------------------------------------------------------------------------ */

/* fp32 → TF32 as tensor cores take it: 10 of the 23 mantissa bits kept,
 * rounded to nearest even on the bits (a carry may raise the exponent, up
 * to infinity); infinities and NaN pass unchanged. */
float round_to_tf32(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u)
    return value;
  const uint32_t dropped = 13, lowest_kept = (bits >> dropped) & 1u;
  bits += ((1u << (dropped - 1)) - 1) + lowest_kept;
  bits &= ~((1u << dropped) - 1);
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

/* An operand for cblas_sgemm: the caller's fp32 matrix itself when it
 * needs no rounding, otherwise a packed fp32 copy (rows × cols, ld =
 * rows) of it converted from bf16 or rounded to TF32. */
struct float_operand {
  const float *original = nullptr;
  std::vector<float> copy;
  int ld = 1;
  const float *data() const {
    return original ? original : copy.data();
  }
};

float element_as_float(const void *pointer, cudaDataType_t type, size_t index) {
  if (type == CUDA_R_16BF)
    return __bfloat162float(static_cast<const __nv_bfloat16 *>(pointer)[index]);
  return static_cast<const float *>(pointer)[index];
}

/* pointer[index] = value in the element type (bf16 rounded to nearest
 * even, as the libraries' epilogues store it). */
void store_element(void *pointer, cudaDataType_t type, size_t index,
                   float value) {
  if (type == CUDA_R_16BF)
    static_cast<__nv_bfloat16 *>(pointer)[index] = __float2bfloat16_rn(value);
  else
    static_cast<float *>(pointer)[index] = value;
}

/* rows × cols stored with leading dimension ld (all validated ints). */
float_operand as_float(const void *pointer, cudaDataType_t type, int rows,
                       int cols, int ld, bool tf32) {
  float_operand operand;
  if (type == CUDA_R_32F && !tf32) {
    operand.original = static_cast<const float *>(pointer);
    operand.ld = ld;
    return operand;
  }
  operand.ld = std::max(rows, 1);
  /* At least one element, so that data() is never NULL for cblas. */
  operand.copy.assign(std::max<size_t>((size_t)rows * cols, 1), 0.0f);
  for (int col = 0; col < cols; col++)
    for (int row = 0; row < rows; row++) {
      float value = element_as_float(pointer, type, (size_t)col * ld + row);
      operand.copy[(size_t)col * rows + row] =
          tf32 ? round_to_tf32(value) : value;
    }
  return operand;
}

/* With beta 0, C is output only: NaN in it (uninitialised memory) must not
 * reach the result, whatever cblas does with 0 · NaN. */
void zero_matrix(float *matrix, int rows, int cols, int ld) {
  for (int col = 0; col < cols; col++)
    std::fill_n(matrix + (size_t)col * ld, rows, 0.0f);
}

/* Stream work for a product: scratch that cannot be had is an execution
 * error (sticky, as on a GPU), not an exception on a stream's thread. */
template <typename Run> nnemu::operation guarded(const char *what, Run run) {
  return [what, run]() {
    try {
      run();
    } catch (const std::bad_alloc &) {
      nnemu::fail_execution(cudaErrorMemoryAllocation,
                            "%s: no host memory for its scratch copies", what);
    }
  };
}

/* ------------------------------------------------------------------------ */
/* cublasSgemm and cublasGemmEx                                              */
/* ------------------------------------------------------------------------ */

/* One product C (rows × cols) = alpha op(A) op(B) + beta C, op(A) rows ×
 * inner, op(B) inner × cols, with its values as at the call. */
struct gemm_problem {
  int op_a, op_b;
  int rows, cols, inner;
  float alpha, beta;
  const void *a;
  int lda;
  const void *b;
  int ldb;
  cudaDataType_t input_type; /* A's and B's */
  bool tf32;                 /* inputs rounded to TF32 */
  float *c;
  int ldc;
};

stored_matrix stored_a(const gemm_problem &p) {
  return stored_operand("A", p.a, p.input_type, p.op_a, (uint64_t)p.rows,
                        (uint64_t)p.inner, p.lda);
}

stored_matrix stored_b(const gemm_problem &p) {
  return stored_operand("B", p.b, p.input_type, p.op_b, (uint64_t)p.inner,
                        (uint64_t)p.cols, p.ldb);
}

stored_matrix stored_c(const gemm_problem &p) {
  return stored_matrix{
      "C", p.c, CUDA_R_32F, (uint64_t)p.rows, (uint64_t)p.cols, p.ldc};
}

refusal check_gemm_arguments(const gemm_problem &p) {
  if (!is_operation(p.op_a) || !is_operation(p.op_b))
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "transa %d / transb %d: not CUBLAS_OP_N, _T or _C", p.op_a,
                  p.op_b);
  if (p.rows < 0 || p.cols < 0 || p.inner < 0)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "negative dimension: m %d, n %d, k %d", p.rows, p.cols,
                  p.inner);
  for (const stored_matrix &matrix : {stored_a(p), stored_b(p), stored_c(p)})
    if (refusal refused = check_leading_dimension(matrix))
      return refused;
  return refusal{};
}

/* A and B are read only when inner > 0 (otherwise they have no
 * elements); C is always written. */
refusal check_gemm_memory(const gemm_problem &p) {
  for (const stored_matrix &matrix : {stored_a(p), stored_b(p), stored_c(p)})
    if (refusal refused = check_matrix_memory(matrix))
      return refused;
  return refusal{};
}

void run_gemm(const gemm_problem &p) {
  const stored_matrix a = stored_a(p), b = stored_b(p);
  const float_operand a_float =
      as_float(p.a, p.input_type, (int)a.rows, (int)a.cols, p.lda, p.tf32);
  const float_operand b_float =
      as_float(p.b, p.input_type, (int)b.rows, (int)b.cols, p.ldb, p.tf32);
  if (p.beta == 0.0f)
    zero_matrix(p.c, p.rows, p.cols, p.ldc);
  cblas_sgemm(CblasColMajor, cblas_operation(p.op_a), cblas_operation(p.op_b),
              p.rows, p.cols, p.inner, p.alpha, a_float.data(), a_float.ld,
              b_float.data(), b_float.ld, p.beta, p.c, p.ldc);
}

/* The scalars and operands of one cublasSgemm or cublasGemmEx call. */
struct gemm_arguments {
  int op_a, op_b;
  int m, n, k;
  const float *alpha, *beta; /* host memory */
  const void *a;
  int lda;
  const void *b;
  int ldb;
  float *c;
  int ldc;
};

/* Validates at the call, then queues the product on the handle's stream
 * (nothing to queue when C is empty). */
cublasStatus_t submit_gemm(const char *what, cublasHandle_t handle,
                           const gemm_arguments &call,
                           cudaDataType_t input_type, bool tf32) {
  if (!call.alpha || !call.beta) {
    nnemu::report("%s: alpha %p / beta %p: both must point to host floats",
                  what, static_cast<const void *>(call.alpha),
                  static_cast<const void *>(call.beta));
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  gemm_problem problem;
  problem.op_a = call.op_a;
  problem.op_b = call.op_b;
  problem.rows = call.m;
  problem.cols = call.n;
  problem.inner = call.k;
  problem.alpha = *call.alpha;
  problem.beta = *call.beta;
  problem.a = call.a;
  problem.lda = call.lda;
  problem.b = call.b;
  problem.ldb = call.ldb;
  problem.input_type = input_type;
  problem.tf32 = tf32;
  problem.c = call.c;
  problem.ldc = call.ldc;
  if (refusal refused = check_gemm_arguments(problem))
    return reported(what, refused);
  if (problem.rows == 0 || problem.cols == 0)
    return CUBLAS_STATUS_SUCCESS;
  if (refusal refused = check_gemm_memory(problem))
    return reported(what, refused);
  const cudaError_t queued = nnemu::enqueue(
      handle->stream,
      guarded(what,
              [problem, what]() {
                for (const void *operand :
                     {problem.a, problem.b, (const void *)problem.c})
                  nnemu::note_access(operand, what);
                run_gemm(problem);
              }),
      what);
  if (queued != cudaSuccess) {
    nnemu::report("%s: the stream refused the work (cudaError_t %d)", what,
                  (int)queued);
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  return CUBLAS_STATUS_SUCCESS;
}

/* CUBLAS_TF32_TENSOR_OP_MATH lets single-precision products with plain
 * fp32 compute run on TF32 tensor cores. */
bool math_allows_tf32(const cublasContext *handle) {
  const int mode =
      handle->math & ~CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
  return mode == CUBLAS_TF32_TENSOR_OP_MATH;
}

refusal check_gemm_ex_types(cudaDataType_t a_type, cudaDataType_t b_type,
                            cudaDataType_t c_type,
                            cublasComputeType_t compute) {
  if (a_type != b_type || (a_type != CUDA_R_32F && a_type != CUDA_R_16BF) ||
      c_type != CUDA_R_32F)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "types A %d, B %d, C %d: the emulator has A = B = "
                  "CUDA_R_32F or CUDA_R_16BF with C CUDA_R_32F",
                  (int)a_type, (int)b_type, (int)c_type);
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "compute type %d: the emulator has CUBLAS_COMPUTE_32F and "
                  "CUBLAS_COMPUTE_32F_FAST_TF32",
                  (int)compute);
  if (a_type == CUDA_R_16BF && compute == CUBLAS_COMPUTE_32F_FAST_TF32)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "CUDA_R_16BF inputs take CUBLAS_COMPUTE_32F, not _FAST_TF32");
  return refusal{};
}

bool is_gemm_algorithm(cublasGemmAlgo_t algo) {
  return algo == CUBLAS_GEMM_DEFAULT ||
         (algo >= CUBLAS_GEMM_ALGO0 && algo <= CUBLAS_GEMM_ALGO23) ||
         (algo >= CUBLAS_GEMM_DEFAULT_TENSOR_OP &&
          algo <= CUBLAS_GEMM_ALGO15_TENSOR_OP);
}

/* ------------------------------------------------------------------------ */
/* cuBLASLt descriptors                                                      */
/* ------------------------------------------------------------------------ */

struct matmul_descriptor {
  cublasComputeType_t compute;
  int32_t op_a = CUBLAS_OP_N, op_b = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  void *bias = nullptr; /* bias (read) or bias gradient (written) */
  void *aux = nullptr;  /* ReLU bit mask, or the GELU input */
  int64_t aux_ld = 0;   /* in bits (mask) or floats (GELU input) */
};

struct layout_descriptor {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};

struct preference_descriptor {
  uint64_t max_workspace = 0;
  uint32_t alignment[4] = {256, 256, 256, 256}; /* A, B, C, D; bytes */
};

matmul_descriptor *live_descriptor(cublasLtMatmulDesc_t desc) {
  if (!is_live(desc, object_kind::matmul_desc))
    return nullptr;
  return reinterpret_cast<matmul_descriptor *>(desc);
}

layout_descriptor *live_layout(cublasLtMatrixLayout_t layout) {
  if (!is_live(layout, object_kind::layout))
    return nullptr;
  return reinterpret_cast<layout_descriptor *>(layout);
}

preference_descriptor *live_preference(cublasLtMatmulPreference_t pref) {
  if (!is_live(pref, object_kind::preference))
    return nullptr;
  return reinterpret_cast<preference_descriptor *>(pref);
}

/* An attribute's value from the caller's buffer, whose size must be the
 * attribute's own. */
template <typename T>
cublasStatus_t set_attribute(T &field, const char *what, const char *name,
                             const void *buffer, size_t bytes) {
  if (!buffer || bytes != sizeof(T)) {
    nnemu::report("%s: %s takes %zu bytes, given %zu at %p", what, name,
                  sizeof(T), bytes, buffer);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  std::memcpy(&field, buffer, sizeof(T));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t set_operation(int32_t &field, const char *what, const char *name,
                             const void *buffer, size_t bytes) {
  int32_t op = 0;
  cublasStatus_t status = set_attribute(op, what, name, buffer, bytes);
  if (status == CUBLAS_STATUS_SUCCESS && !is_operation(op)) {
    nnemu::report("%s: %s %d is not CUBLAS_OP_N, _T or _C", what, name, op);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (status == CUBLAS_STATUS_SUCCESS)
    field = op;
  return status;
}

/* ------------------------------------------------------------------------ */
/* cuBLASLt matmuls                                                          */
/* ------------------------------------------------------------------------ */

bool is_emulated_epilogue(uint32_t epilogue) {
  switch (epilogue) {
  case CUBLASLT_EPILOGUE_DEFAULT:
  case CUBLASLT_EPILOGUE_BIAS:
  case CUBLASLT_EPILOGUE_RELU_BIAS:
  case CUBLASLT_EPILOGUE_RELU_AUX_BIAS:
  case CUBLASLT_EPILOGUE_DRELU_BGRAD:
  case CUBLASLT_EPILOGUE_GELU_AUX_BIAS:
  case CUBLASLT_EPILOGUE_DGELU_BGRAD:
    return true;
  default:
    return false;
  }
}

/* All emulated epilogues but DEFAULT use the bias pointer: as the bias
 * (read) or, with DRELU_BGRAD and DGELU_BGRAD, as the bias gradient
 * (written). */
bool uses_bias(uint32_t epilogue) {
  return epilogue != CUBLASLT_EPILOGUE_DEFAULT;
}

bool uses_mask(uint32_t epilogue) {
  return epilogue == CUBLASLT_EPILOGUE_RELU_AUX_BIAS ||
         epilogue == CUBLASLT_EPILOGUE_DRELU_BGRAD;
}

/* The GELU epilogues' aux: the GELU input (T + bias), of D's type,
 * column-major with aux_ld in elements. */
bool uses_gelu_input(uint32_t epilogue) {
  return epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS ||
         epilogue == CUBLASLT_EPILOGUE_DGELU_BGRAD;
}

bool uses_aux(uint32_t epilogue) {
  return uses_mask(epilogue) || uses_gelu_input(epilogue);
}

/* One cublasLtMatmul with everything its stream work needs, by value: the
 * descriptor's attributes as at the call (the caller may change them for
 * the next call; a graph replays the values of its capture). */
struct lt_problem {
  cublasComputeType_t compute;
  int32_t op_a, op_b;
  uint32_t epilogue;
  layout_descriptor a_layout, b_layout, c_layout, d_layout;
  int rows, cols, inner; /* D rows × cols; op(A) rows × inner */
  const void *a, *b, *c;
  void *d;
  float alpha, beta;
  void *bias; /* of D's type */
  uint8_t *aux;
  int64_t aux_ld;
  /* D's type, which C, the bias (or bias gradient) and the GELU input
   * share. */
  cudaDataType_t output_type() const {
    return d_layout.type;
  }
};

stored_matrix layout_matrix(const char *name, const void *pointer,
                            const layout_descriptor &layout) {
  return stored_matrix{name,        pointer,     layout.type,
                       layout.rows, layout.cols, layout.ld};
}

/* cblas takes int dimensions, as cuBLASLt says it usually does too;
 * an empty matrix has no algorithm here. */
refusal check_layout(const char *name, const layout_descriptor &layout) {
  if (layout.rows == 0 || layout.cols == 0 || layout.rows > INT_MAX ||
      layout.cols > INT_MAX || layout.ld > INT_MAX)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "%s is %llu x %llu with ld %lld: the emulator has 1 to "
                  "INT_MAX rows and columns and ld up to INT_MAX",
                  name, (unsigned long long)layout.rows,
                  (unsigned long long)layout.cols, (long long)layout.ld);
  return check_leading_dimension(layout_matrix(name, nullptr, layout));
}

/* NNEMU_LT_NO_BF16_OUTPUT=1: the heuristic has no algorithm for a bf16 D,
 * as a cuBLASLt without one would answer, so that the callers' fallbacks
 * run too. */
bool bf16_output_refused() {
  const char *text = getenv("NNEMU_LT_NO_BF16_OUTPUT");
  return text && *text && strcmp(text, "0") != 0;
}

/* What the real heuristic answers CUBLAS_STATUS_INVALID_VALUE to, though
 * the call is well formed: a product with a dimension of 1 (PyTorch keeps
 * such products off cuBLASLt for this reason, aten/src/ATen/native/cuda/
 * Blas.cpp; nvmath-python refuses K = 1 for DRELU/DGELU), and, with
 * NNEMU_LT_HEURISTIC=invalid-value, every product, so that the callers'
 * handling of such an answer runs at ordinary shapes too. */
bool heuristic_says_invalid(const lt_problem &p) {
  const char *text = getenv("NNEMU_LT_HEURISTIC");
  if (text && strcmp(text, "invalid-value") == 0)
    return true;
  return p.rows == 1 || p.cols == 1 || p.inner == 1;
}

refusal check_lt_types(const lt_problem &p) {
  if (p.compute != CUBLAS_COMPUTE_32F &&
      p.compute != CUBLAS_COMPUTE_32F_FAST_TF32)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "compute type %d: the emulator has CUBLAS_COMPUTE_32F and "
                  "CUBLAS_COMPUTE_32F_FAST_TF32",
                  (int)p.compute);
  const cudaDataType_t input = p.a_layout.type, output = p.d_layout.type;
  const bool bf16_output = input == CUDA_R_16BF && output == CUDA_R_16BF;
  if (input != p.b_layout.type ||
      (input != CUDA_R_32F && input != CUDA_R_16BF) ||
      p.c_layout.type != output || (output != CUDA_R_32F && !bf16_output))
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "types A %d, B %d, C %d, D %d: the emulator has A = B = "
                  "CUDA_R_32F or CUDA_R_16BF with C = D = CUDA_R_32F, and "
                  "A = B = C = D = CUDA_R_16BF",
                  (int)input, (int)p.b_layout.type, (int)p.c_layout.type,
                  (int)p.d_layout.type);
  if (input == CUDA_R_16BF && p.compute == CUBLAS_COMPUTE_32F_FAST_TF32)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "CUDA_R_16BF inputs take CUBLAS_COMPUTE_32F, not _FAST_TF32");
  if (bf16_output && bf16_output_refused())
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "bf16 D refused (NNEMU_LT_NO_BF16_OUTPUT)");
  return refusal{};
}

/* op(A) (rows × inner) · op(B) (inner × cols) against C and D (rows ×
 * cols); sets the problem's dimensions. */
refusal check_lt_shapes(lt_problem &p) {
  const layout_descriptor &a = p.a_layout, &b = p.b_layout;
  const uint64_t rows = p.op_a == CUBLAS_OP_N ? a.rows : a.cols;
  const uint64_t inner = p.op_a == CUBLAS_OP_N ? a.cols : a.rows;
  const uint64_t b_inner = p.op_b == CUBLAS_OP_N ? b.rows : b.cols;
  const uint64_t cols = p.op_b == CUBLAS_OP_N ? b.cols : b.rows;
  if (inner != b_inner || p.c_layout.rows != rows || p.c_layout.cols != cols ||
      p.d_layout.rows != rows || p.d_layout.cols != cols)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "shapes do not agree: op%s(A) is %llu x %llu, op%s(B) "
                  "%llu x %llu, C %llu x %llu, D %llu x %llu",
                  operation_name(p.op_a), (unsigned long long)rows,
                  (unsigned long long)inner, operation_name(p.op_b),
                  (unsigned long long)b_inner, (unsigned long long)cols,
                  (unsigned long long)p.c_layout.rows,
                  (unsigned long long)p.c_layout.cols,
                  (unsigned long long)p.d_layout.rows,
                  (unsigned long long)p.d_layout.cols);
  p.rows = (int)rows;
  p.cols = (int)cols;
  p.inner = (int)inner;
  return refusal{};
}

/* The bias and the bit mask the epilogue needs. cuBLASLt: the ReLU mask's
 * leading dimension, in bits, "must be divisible by 128 and be no less
 * than the number of rows in the output matrix". */
refusal check_epilogue_inputs(const lt_problem &p) {
  if (uses_bias(p.epilogue) && !p.bias)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "epilogue %u needs CUBLASLT_MATMUL_DESC_BIAS_POINTER",
                  p.epilogue);
  if (!uses_aux(p.epilogue))
    return refusal{};
  if (!p.aux)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "epilogue %u needs CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER",
                  p.epilogue);
  /* cuBLASLt: the GELU input's leading dimension, in elements, "must be
   * divisible by 8 and be no less than the number of rows". */
  if (uses_gelu_input(p.epilogue)) {
    if (p.aux_ld % 8 != 0 || p.aux_ld < p.rows)
      return refuse(CUBLAS_STATUS_INVALID_VALUE,
                    "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD %lld for D of %d "
                    "rows: the GELU input's ld must be a multiple of 8 and "
                    "at least the rows",
                    (long long)p.aux_ld, p.rows);
    return refusal{};
  }
  if (p.aux_ld % 128 != 0 || p.aux_ld < p.rows)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD %lld for D of %d "
                  "rows: the ReLU mask's ld (bits) must be a multiple of "
                  "128 and at least the rows",
                  (long long)p.aux_ld, p.rows);
  return refusal{};
}

/* The problem a descriptor and its layouts describe, without the data:
 * what the heuristic and the matmul both check. */
refusal describe_lt_problem(const matmul_descriptor &desc,
                            const layout_descriptor &a,
                            const layout_descriptor &b,
                            const layout_descriptor &c,
                            const layout_descriptor &d, lt_problem &p) {
  p = lt_problem{};
  p.compute = desc.compute;
  p.op_a = desc.op_a;
  p.op_b = desc.op_b;
  p.epilogue = desc.epilogue;
  p.a_layout = a;
  p.b_layout = b;
  p.c_layout = c;
  p.d_layout = d;
  p.bias = desc.bias;
  p.aux = static_cast<uint8_t *>(desc.aux);
  p.aux_ld = desc.aux_ld;
  if (!is_emulated_epilogue(p.epilogue))
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "epilogue %u: the emulator has DEFAULT, BIAS, RELU_BIAS, "
                  "RELU_AUX_BIAS, DRELU_BGRAD, GELU_AUX_BIAS and DGELU_BGRAD",
                  p.epilogue);
  if (refusal refused = check_lt_types(p))
    return refused;
  const struct {
    const char *name;
    const layout_descriptor &layout;
  } layouts[] = {{"A", a}, {"B", b}, {"C", c}, {"D", d}};
  for (const auto &named : layouts)
    if (refusal refused = check_layout(named.name, named.layout))
      return refused;
  if (refusal refused = check_lt_shapes(p))
    return refused;
  return check_epilogue_inputs(p);
}

/* What an algorithm from the heuristic holds: a mark that it is one, and
 * the alignments (bytes, at most 256) it was chosen for — A, B, C, D from
 * the preference, bias and aux from the descriptor's pointers then. */
constexpr uint64_t algorithm_mark = 0x6e6e656d752d6c74ull; /* "nnemu-lt" */

struct algorithm_alignments {
  uint32_t a, b, c, d, bias, aux;
};

cublasLtMatmulAlgo_t make_algorithm(const algorithm_alignments &aligned) {
  cublasLtMatmulAlgo_t algo;
  std::memset(&algo, 0, sizeof algo);
  algo.data[0] = algorithm_mark;
  algo.data[1] = (uint64_t)aligned.a | (uint64_t)aligned.b << 16 |
                 (uint64_t)aligned.c << 32 | (uint64_t)aligned.d << 48;
  algo.data[2] = (uint64_t)aligned.bias | (uint64_t)aligned.aux << 16;
  return algo;
}

algorithm_alignments alignments_of(const cublasLtMatmulAlgo_t &algo) {
  const auto field = [](uint64_t word, int k) {
    return (uint32_t)(word >> (16 * k) & 0xffff);
  };
  return algorithm_alignments{field(algo.data[1], 0), field(algo.data[1], 1),
                              field(algo.data[1], 2), field(algo.data[1], 3),
                              field(algo.data[2], 0), field(algo.data[2], 1)};
}

/* Whether an algorithm exists for the preference's alignments: each
 * operand's at least its element, the bias's too. */
refusal check_preferred_alignments(const preference_descriptor &pref,
                                   const lt_problem &p) {
  const size_t input = element_bytes(p.a_layout.type);
  const size_t output = element_bytes(p.output_type());
  const size_t needed[4] = {input, input, output, output};
  const char *names[4] = {"A", "B", "C", "D"};
  for (int k = 0; k < 4; k++)
    if (pref.alignment[k] < needed[k])
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                    "no algorithm for %s aligned to %u bytes (its elements "
                    "take %zu)",
                    names[k], pref.alignment[k], needed[k]);
  if (uses_bias(p.epilogue) && alignment_of(p.bias) < output)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "no algorithm for the bias at %p, not aligned to its "
                  "%zu-byte elements",
                  static_cast<const void *>(p.bias), output);
  return refusal{};
}

algorithm_alignments chosen_alignments(const preference_descriptor &pref,
                                       const lt_problem &p) {
  const auto capped = [](uint32_t bytes) { return std::min(bytes, 256u); };
  return algorithm_alignments{capped(pref.alignment[0]),
                              capped(pref.alignment[1]),
                              capped(pref.alignment[2]),
                              capped(pref.alignment[3]),
                              uses_bias(p.epilogue) ? alignment_of(p.bias) : 1u,
                              uses_aux(p.epilogue) ? alignment_of(p.aux) : 1u};
}

refusal check_algorithm(const cublasLtMatmulAlgo_t *algo, const lt_problem &p) {
  if (!algo || algo->data[0] != algorithm_mark)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "algo at %p does not come from "
                  "cublasLtMatmulAlgoGetHeuristic",
                  static_cast<const void *>(algo));
  const algorithm_alignments promised = alignments_of(*algo);
  const struct {
    const char *name;
    const void *pointer;
    uint32_t promised;
  } operands[] = {
      {"A", p.a, promised.a},          {"B", p.b, promised.b},
      {"C", p.c, promised.c},          {"D", p.d, promised.d},
      {"bias", p.bias, promised.bias}, {"aux", p.aux, promised.aux}};
  for (const auto &operand : operands)
    if (alignment_of(operand.pointer) < operand.promised)
      return refuse(CUBLAS_STATUS_INVALID_VALUE,
                    "%s at %p is %u-byte aligned, but the algorithm was "
                    "chosen for %u-byte alignment",
                    operand.name, operand.pointer,
                    alignment_of(operand.pointer), operand.promised);
  return refusal{};
}

/* The mask: one bit per element of D, bit row + col · aux_ld, LSB first
 * in each byte; aux_ld · cols / 8 bytes. */
uint64_t mask_bytes(const lt_problem &p) {
  return (uint64_t)p.aux_ld * (uint64_t)p.cols / 8;
}

refusal check_lt_memory(const lt_problem &p) {
  const stored_matrix matrices[] = {
      layout_matrix("A", p.a, p.a_layout),
      layout_matrix("B", p.b, p.b_layout),
      layout_matrix("C", p.c, p.c_layout),
      layout_matrix("D", p.d, p.d_layout),
  };
  for (const stored_matrix &matrix : matrices)
    if (refusal refused = check_matrix_memory(matrix))
      return refused;
  if (p.c == p.d && p.c_layout.ld != p.d_layout.ld)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "in place (C = D at %p) with ldc %lld != ldd %lld", p.c,
                  (long long)p.c_layout.ld, (long long)p.d_layout.ld);
  char shape[96];
  const size_t output = element_bytes(p.output_type());
  if (uses_bias(p.epilogue)) {
    snprintf(shape, sizeof shape, "%d of %s, one per row of D", p.rows,
             type_name(p.output_type()));
    if (refusal refused = check_device_range("bias", shape, p.bias,
                                             (uint64_t)p.rows * output, output))
      return refused;
  }
  if (uses_mask(p.epilogue)) {
    snprintf(shape, sizeof shape, "ReLU bit mask, ld %lld bits x %d columns",
             (long long)p.aux_ld, p.cols);
    if (refusal refused =
            check_device_range("aux", shape, p.aux, mask_bytes(p), 1))
      return refused;
  }
  if (uses_gelu_input(p.epilogue)) {
    snprintf(shape, sizeof shape, "GELU input, %d x %d of %s, ld %lld", p.rows,
             p.cols, type_name(p.output_type()), (long long)p.aux_ld);
    const uint64_t bytes =
        ((uint64_t)(p.cols - 1) * (uint64_t)p.aux_ld + (uint64_t)p.rows) *
        output;
    if (refusal refused =
            check_device_range("aux", shape, p.aux, bytes, output))
      return refused;
  }
  return refusal{};
}

refusal check_workspace(const void *workspace, size_t bytes) {
  if (bytes == 0)
    return refusal{};
  char shape[64];
  snprintf(shape, sizeof shape, "%zu bytes", bytes);
  return check_device_range("workspace", shape, workspace, bytes, 1);
}

/* T = alpha op(A) op(B) + beta C, packed rows × cols: what the epilogue
 * works on. A copy, so that D may be C. */
std::vector<float> lt_product(const lt_problem &p) {
  const bool tf32 = p.compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  const layout_descriptor &a = p.a_layout, &b = p.b_layout;
  const float_operand a_float =
      as_float(p.a, a.type, (int)a.rows, (int)a.cols, (int)a.ld, tf32);
  const float_operand b_float =
      as_float(p.b, b.type, (int)b.rows, (int)b.cols, (int)b.ld, tf32);
  std::vector<float> t((size_t)p.rows * p.cols, 0.0f);
  if (p.beta != 0.0f)
    for (int col = 0; col < p.cols; col++)
      for (int row = 0; row < p.rows; row++)
        t[(size_t)col * p.rows + row] = element_as_float(
            p.c, p.c_layout.type, (size_t)col * p.c_layout.ld + row);
  cblas_sgemm(CblasColMajor, cblas_operation(p.op_a), cblas_operation(p.op_b),
              p.rows, p.cols, p.inner, p.alpha, a_float.data(), a_float.ld,
              b_float.data(), b_float.ld, p.beta, t.data(), p.rows);
  return t;
}

/* max(x, 0), except that NaN stays NaN (see the top of the file). */
float relu(float x) {
  return x > 0.0f || std::isnan(x) ? x : 0.0f;
}

/* DEFAULT: D = T; BIAS: D = T + bias[row]; RELU_BIAS: max of that and 0. */
/* Bias element row, and D (row, col) stored, in D's type. */
float bias_at(const lt_problem &p, int row) {
  return element_as_float(p.bias, p.output_type(), (size_t)row);
}

void store_d(const lt_problem &p, int row, int col, float value) {
  store_element(p.d, p.output_type(), (size_t)col * p.d_layout.ld + row, value);
}

/* The bias gradient from sums in double: rounded to float, then to D's
 * type, as a GPU rounds its fp32 sums. */
void store_bias_gradient(const lt_problem &p, const std::vector<double> &sums) {
  for (int row = 0; row < p.rows; row++)
    store_element(p.bias, p.output_type(), (size_t)row,
                  (float)sums[(size_t)row]);
}

void write_biased(const lt_problem &p, const std::vector<float> &t) {
  const bool add_bias = uses_bias(p.epilogue);
  const bool apply_relu = p.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS;
  for (int col = 0; col < p.cols; col++)
    for (int row = 0; row < p.rows; row++) {
      float value = t[(size_t)col * p.rows + row];
      if (add_bias)
        value += bias_at(p, row);
      store_d(p, row, col, apply_relu ? relu(value) : value);
    }
}

/* RELU_AUX_BIAS: D = max(T + bias[row], 0) and the mask bit of each
 * element set where T + bias > 0. Each column's aux_ld / 8 bytes are
 * written whole (bits past the rows are 0). */
void write_relu_and_mask(const lt_problem &p, const std::vector<float> &t) {
  const size_t column_bytes = (size_t)p.aux_ld / 8;
  for (int col = 0; col < p.cols; col++) {
    uint8_t *mask = p.aux + (size_t)col * column_bytes;
    std::fill_n(mask, column_bytes, 0);
    for (int row = 0; row < p.rows; row++) {
      const float value = t[(size_t)col * p.rows + row] + bias_at(p, row);
      if (value > 0.0f)
        mask[row / 8] |= (uint8_t)(1u << (row % 8));
      store_d(p, row, col, relu(value));
    }
  }
}

bool mask_bit(const lt_problem &p, int row, int col) {
  const uint64_t bit = (uint64_t)row + (uint64_t)col * (uint64_t)p.aux_ld;
  return (p.aux[bit / 8] >> (bit % 8)) & 1u;
}

/* What the BGRAD epilogues sum into the bias gradient: D, the output
 * after the activation's gradient and alpha — what nn relies on, and the
 * emulator's default. cuBLASLt's documentation does not say so in as many
 * words, and nn checks it on the device (cuda/epilogue_check.c);
 * NNEMU_LT_BGRAD emulates a library that differs, so that the check's
 * other answer runs too: "before-alpha" sums D / alpha, "unmasked" T (the
 * product before the activation's gradient). */
enum class bias_gradient_of { output, before_alpha, unmasked };

bias_gradient_of bias_gradient_semantics() {
  const char *text = getenv("NNEMU_LT_BGRAD");
  if (text && strcmp(text, "before-alpha") == 0)
    return bias_gradient_of::before_alpha;
  if (text && strcmp(text, "unmasked") == 0)
    return bias_gradient_of::unmasked;
  return bias_gradient_of::output;
}

/* The term of the bias gradient of an element whose output is value and
 * product (after alpha) product. */
double bias_gradient_term(const lt_problem &p, bias_gradient_of semantics,
                          float value, float product) {
  if (semantics == bias_gradient_of::before_alpha && p.alpha != 0.0f)
    return (double)value / p.alpha;
  return semantics == bias_gradient_of::unmasked ? product : value;
}

/* DRELU_BGRAD: D = T where the mask bit is set, else 0; the bias pointer
 * gets bias[row] = Σ over columns of D[row, col], summed in ascending
 * column order in double and rounded to float once, so that it does not
 * depend on threads. */
void write_relu_gradient(const lt_problem &p, const std::vector<float> &t) {
  const bias_gradient_of semantics = bias_gradient_semantics();
  std::vector<double> sums((size_t)p.rows, 0.0);
  for (int col = 0; col < p.cols; col++)
    for (int row = 0; row < p.rows; row++) {
      const float product = t[(size_t)col * p.rows + row];
      const float value = mask_bit(p, row, col) ? product : 0.0f;
      store_d(p, row, col, value);
      sums[(size_t)row] += bias_gradient_term(p, semantics, value, product);
    }
  store_bias_gradient(p, sums);
}

/* GELU's tanh approximation, as cuBLASLt's GELU epilogues compute it,
 * and its derivative: worked in double here, so that the fused path
 * differs from nn's float kernels by rounding, as on a GPU. */
constexpr double sqrt_2_over_pi = 0.79788456080286535588;
constexpr double gelu_cubic = 0.044715;

float gelu_tanh(float x) {
  const double z = x;
  return (
      float)(0.5 * z *
             (1.0 + std::tanh(sqrt_2_over_pi * (z + gelu_cubic * z * z * z))));
}

float gelu_tanh_derivative(float x) {
  const double z = x;
  const double t = std::tanh(sqrt_2_over_pi * (z + gelu_cubic * z * z * z));
  const double du = sqrt_2_over_pi * (1.0 + 3.0 * gelu_cubic * z * z);
  return (float)(0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du);
}

size_t gelu_input_index(const lt_problem &p, int row, int col) {
  return (size_t)col * (size_t)p.aux_ld + (size_t)row;
}

/* GELU_AUX_BIAS: aux = T + bias[row] (the GELU input), D = GELU of it. */
void write_gelu_and_input(const lt_problem &p, const std::vector<float> &t) {
  for (int col = 0; col < p.cols; col++)
    for (int row = 0; row < p.rows; row++) {
      const float value = t[(size_t)col * p.rows + row] + bias_at(p, row);
      store_element(p.aux, p.output_type(), gelu_input_index(p, row, col),
                    value);
      store_d(p, row, col, gelu_tanh(value));
    }
}

/* DGELU_BGRAD: D = T · GELU'(aux), and the bias gradient as DRELU_BGRAD
 * sums it. The GELU input is read as stored (rounded to bf16 when it is
 * bf16). */
void write_gelu_gradient(const lt_problem &p, const std::vector<float> &t) {
  const bias_gradient_of semantics = bias_gradient_semantics();
  std::vector<double> sums((size_t)p.rows, 0.0);
  for (int col = 0; col < p.cols; col++)
    for (int row = 0; row < p.rows; row++) {
      const float input = element_as_float(p.aux, p.output_type(),
                                           gelu_input_index(p, row, col));
      const float product = t[(size_t)col * p.rows + row];
      const float value = product * gelu_tanh_derivative(input);
      store_d(p, row, col, value);
      sums[(size_t)row] += bias_gradient_term(p, semantics, value, product);
    }
  store_bias_gradient(p, sums);
}

void run_lt_matmul(const lt_problem &p) {
  const std::vector<float> t = lt_product(p);
  if (p.epilogue == CUBLASLT_EPILOGUE_RELU_AUX_BIAS)
    write_relu_and_mask(p, t);
  else if (p.epilogue == CUBLASLT_EPILOGUE_DRELU_BGRAD)
    write_relu_gradient(p, t);
  else if (p.epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS)
    write_gelu_and_input(p, t);
  else if (p.epilogue == CUBLASLT_EPILOGUE_DGELU_BGRAD)
    write_gelu_gradient(p, t);
  else
    write_biased(p, t);
}

/* The live descriptor and layouts of a heuristic or matmul call. */
refusal find_lt_objects(cublasLtMatmulDesc_t desc_handle,
                        cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                        cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                        lt_problem &problem) {
  const matmul_descriptor *desc = live_descriptor(desc_handle);
  if (!desc)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "matmul descriptor %p is not one cublasLtMatmulDescCreate "
                  "made (or was destroyed)",
                  static_cast<const void *>(desc_handle));
  const layout_descriptor *layouts[4] = {live_layout(a), live_layout(b),
                                         live_layout(c), live_layout(d)};
  const char *names[4] = {"A", "B", "C", "D"};
  for (int k = 0; k < 4; k++)
    if (!layouts[k])
      return refuse(CUBLAS_STATUS_INVALID_VALUE,
                    "layout of %s is not one cublasLtMatrixLayoutCreate made "
                    "(or was destroyed)",
                    names[k]);
  return describe_lt_problem(*desc, *layouts[0], *layouts[1], *layouts[2],
                             *layouts[3], problem);
}

} // namespace

/* ------------------------------------------------------------------------ */
/* cuBLAS                                                                    */
/* ------------------------------------------------------------------------ */

/* cublas_v2.h renames these to their _v2 symbols; defined by those names. */

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
  if (!handle)
    return CUBLAS_STATUS_INVALID_VALUE;
  cublasContext *created = new (std::nothrow) cublasContext();
  if (!created)
    return CUBLAS_STATUS_ALLOC_FAILED;
  remember(created, object_kind::cublas);
  *handle = created;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  if (!forget(handle, object_kind::cublas)) {
    nnemu::report("cublasDestroy: %p is not a live cuBLAS handle",
                  static_cast<const void *>(handle));
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t refuse_handle(const char *what, cublasHandle_t handle) {
  nnemu::report("%s: %p is not a live cuBLAS handle", what,
                static_cast<const void *>(handle));
  return CUBLAS_STATUS_NOT_INITIALIZED;
}

/* As the real library: setting the stream drops a workspace set before. */
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (!is_live(handle, object_kind::cublas))
    return refuse_handle("cublasSetStream", handle);
  handle->stream = stream;
  handle->workspace = nullptr;
  handle->workspace_bytes = 0;
  return CUBLAS_STATUS_SUCCESS;
}

/* cuBLAS wants the workspace 256-byte aligned (cudaMalloc's alignment).
 * The emulator's products use scratch of their own, never this. */
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void *workspace,
                                     size_t bytes) {
  const char *what = "cublasSetWorkspace";
  if (!is_live(handle, object_kind::cublas))
    return refuse_handle(what, handle);
  if (workspace || bytes > 0) {
    if (refusal refused = check_workspace(workspace, bytes))
      return reported(what, refused);
    if ((uintptr_t)workspace % 256 != 0)
      return reported(what, refuse(CUBLAS_STATUS_INVALID_VALUE,
                                   "workspace %p is not 256-byte aligned",
                                   workspace));
  }
  handle->workspace = workspace;
  handle->workspace_bytes = bytes;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!is_live(handle, object_kind::cublas))
    return refuse_handle("cublasSetMathMode", handle);
  const int base = mode & ~CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
  if (base != CUBLAS_DEFAULT_MATH && base != CUBLAS_PEDANTIC_MATH &&
      base != CUBLAS_TF32_TENSOR_OP_MATH) {
    nnemu::report("cublasSetMathMode: mode %d: the emulator has "
                  "CUBLAS_DEFAULT_MATH, _PEDANTIC_MATH and "
                  "_TF32_TENSOR_OP_MATH",
                  (int)mode);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

/* The emulator's products are deterministic either way. */
cublasStatus_t cublasSetAtomicsMode(cublasHandle_t handle,
                                    cublasAtomicsMode_t mode) {
  if (!is_live(handle, object_kind::cublas))
    return refuse_handle("cublasSetAtomicsMode", handle);
  if (mode != CUBLAS_ATOMICS_NOT_ALLOWED && mode != CUBLAS_ATOMICS_ALLOWED) {
    nnemu::report("cublasSetAtomicsMode: mode %d is not a cublasAtomicsMode_t",
                  (int)mode);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  handle->atomics = mode;
  return CUBLAS_STATUS_SUCCESS;
}

/* Scalars are read from host memory at the call; device pointer mode
 * (scalars read when the work runs) is not emulated. */
cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle,
                                       cublasPointerMode_t mode) {
  if (!is_live(handle, object_kind::cublas))
    return refuse_handle("cublasSetPointerMode", handle);
  if (mode != CUBLAS_POINTER_MODE_HOST) {
    nnemu::report("cublasSetPointerMode: mode %d: the emulator has "
                  "CUBLAS_POINTER_MODE_HOST only",
                  (int)mode);
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetProperty(libraryPropertyType type, int *value) {
  if (!value)
    return CUBLAS_STATUS_INVALID_VALUE;
  switch (type) {
  case MAJOR_VERSION:
    *value = CUBLAS_VER_MAJOR;
    return CUBLAS_STATUS_SUCCESS;
  case MINOR_VERSION:
    *value = CUBLAS_VER_MINOR;
    return CUBLAS_STATUS_SUCCESS;
  case PATCH_LEVEL:
    *value = CUBLAS_VER_PATCH;
    return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

const char *cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
  case CUBLAS_STATUS_SUCCESS:
    return "CUBLAS_STATUS_SUCCESS";
  case CUBLAS_STATUS_NOT_INITIALIZED:
    return "CUBLAS_STATUS_NOT_INITIALIZED";
  case CUBLAS_STATUS_ALLOC_FAILED:
    return "CUBLAS_STATUS_ALLOC_FAILED";
  case CUBLAS_STATUS_INVALID_VALUE:
    return "CUBLAS_STATUS_INVALID_VALUE";
  case CUBLAS_STATUS_ARCH_MISMATCH:
    return "CUBLAS_STATUS_ARCH_MISMATCH";
  case CUBLAS_STATUS_MAPPING_ERROR:
    return "CUBLAS_STATUS_MAPPING_ERROR";
  case CUBLAS_STATUS_EXECUTION_FAILED:
    return "CUBLAS_STATUS_EXECUTION_FAILED";
  case CUBLAS_STATUS_INTERNAL_ERROR:
    return "CUBLAS_STATUS_INTERNAL_ERROR";
  case CUBLAS_STATUS_NOT_SUPPORTED:
    return "CUBLAS_STATUS_NOT_SUPPORTED";
  case CUBLAS_STATUS_LICENSE_ERROR:
    return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char *cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
  case CUBLAS_STATUS_SUCCESS:
    return "success";
  case CUBLAS_STATUS_NOT_INITIALIZED:
    return "the library was not initialized (no live handle)";
  case CUBLAS_STATUS_ALLOC_FAILED:
    return "resource allocation failed";
  case CUBLAS_STATUS_INVALID_VALUE:
    return "an invalid value was used as an argument";
  case CUBLAS_STATUS_ARCH_MISMATCH:
    return "the device does not support the operation";
  case CUBLAS_STATUS_MAPPING_ERROR:
    return "an access to GPU memory space failed";
  case CUBLAS_STATUS_EXECUTION_FAILED:
    return "the GPU program failed to execute";
  case CUBLAS_STATUS_INTERNAL_ERROR:
    return "an internal operation failed";
  case CUBLAS_STATUS_NOT_SUPPORTED:
    return "the functionality requested is not supported";
  case CUBLAS_STATUS_LICENSE_ERROR:
    return "a license error";
  }
  return "unknown cuBLAS status";
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k,
                              const float *alpha, const float *A, int lda,
                              const float *B, int ldb, const float *beta,
                              float *C, int ldc) {
  const char *what = "cublasSgemm";
  if (!is_live(handle, object_kind::cublas))
    return refuse_handle(what, handle);
  const gemm_arguments call = {transa, transb, m, n,   k, alpha, beta,
                               A,      lda,    B, ldb, C, ldc};
  return submit_gemm(what, handle, call, CUDA_R_32F, math_allows_tf32(handle));
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k,
                            const void *alpha, const void *A,
                            cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta,
                            void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
  const char *what = "cublasGemmEx";
  if (!is_live(handle, object_kind::cublas))
    return refuse_handle(what, handle);
  if (refusal refused = check_gemm_ex_types(Atype, Btype, Ctype, computeType))
    return reported(what, refused);
  if (!is_gemm_algorithm(algo)) {
    nnemu::report("%s: algo %d is not a cublasGemmAlgo_t", what, (int)algo);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  /* Plain fp32 compute on fp32 data may still take TF32 from the math mode;
   * bf16 data is exact in fp32 either way. */
  const bool tf32 =
      Atype == CUDA_R_32F &&
      (computeType == CUBLAS_COMPUTE_32F_FAST_TF32 || math_allows_tf32(handle));
  const gemm_arguments call = {transa,
                               transb,
                               m,
                               n,
                               k,
                               static_cast<const float *>(alpha),
                               static_cast<const float *>(beta),
                               A,
                               lda,
                               B,
                               ldb,
                               static_cast<float *>(C),
                               ldc};
  return submit_gemm(what, handle, call, Atype, tf32);
}

/* ------------------------------------------------------------------------ */
/* cuBLASLt                                                                  */
/* ------------------------------------------------------------------------ */

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
  if (!handle)
    return CUBLAS_STATUS_INVALID_VALUE;
  cublasLtContext *created = new (std::nothrow) cublasLtContext();
  if (!created)
    return CUBLAS_STATUS_ALLOC_FAILED;
  remember(created, object_kind::lt);
  *handle = created;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  if (!forget(handle, object_kind::lt)) {
    nnemu::report("cublasLtDestroy: %p is not a live cuBLASLt handle",
                  static_cast<const void *>(handle));
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

/* Destroying NULL does nothing; anything else not live is a bug. */
template <typename Descriptor>
static cublasStatus_t destroy_descriptor(const char *what, void *object,
                                         object_kind kind) {
  if (!object)
    return CUBLAS_STATUS_SUCCESS;
  if (!forget(object, kind)) {
    nnemu::report("%s: %p is not a live descriptor (destroyed twice?)", what,
                  object);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  delete static_cast<Descriptor *>(object);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *matmulDesc,
                                        cublasComputeType_t computeType,
                                        cudaDataType_t scaleType) {
  const char *what = "cublasLtMatmulDescCreate";
  if (!matmulDesc)
    return CUBLAS_STATUS_INVALID_VALUE;
  if ((computeType != CUBLAS_COMPUTE_32F &&
       computeType != CUBLAS_COMPUTE_32F_FAST_TF32) ||
      scaleType != CUDA_R_32F) {
    nnemu::report("%s: compute type %d, scale type %d: the emulator has "
                  "CUBLAS_COMPUTE_32F or _32F_FAST_TF32 with CUDA_R_32F",
                  what, (int)computeType, (int)scaleType);
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  matmul_descriptor *desc = new (std::nothrow) matmul_descriptor();
  if (!desc)
    return CUBLAS_STATUS_ALLOC_FAILED;
  desc->compute = computeType;
  remember(desc, object_kind::matmul_desc);
  *matmulDesc = reinterpret_cast<cublasLtMatmulDesc_t>(desc);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc) {
  return destroy_descriptor<matmul_descriptor>(
      "cublasLtMatmulDescDestroy", matmulDesc, object_kind::matmul_desc);
}

cublasStatus_t
cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
                               cublasLtMatmulDescAttributes_t attr,
                               const void *buf, size_t sizeInBytes) {
  const char *what = "cublasLtMatmulDescSetAttribute";
  matmul_descriptor *desc = live_descriptor(matmulDesc);
  if (!desc) {
    nnemu::report("%s: %p is not a live matmul descriptor", what,
                  static_cast<const void *>(matmulDesc));
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  switch (attr) {
  case CUBLASLT_MATMUL_DESC_TRANSA:
    return set_operation(desc->op_a, what, "CUBLASLT_MATMUL_DESC_TRANSA", buf,
                         sizeInBytes);
  case CUBLASLT_MATMUL_DESC_TRANSB:
    return set_operation(desc->op_b, what, "CUBLASLT_MATMUL_DESC_TRANSB", buf,
                         sizeInBytes);
  case CUBLASLT_MATMUL_DESC_EPILOGUE:
    return set_attribute(desc->epilogue, what, "CUBLASLT_MATMUL_DESC_EPILOGUE",
                         buf, sizeInBytes);
  case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
    return set_attribute(desc->bias, what, "CUBLASLT_MATMUL_DESC_BIAS_POINTER",
                         buf, sizeInBytes);
  case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER:
    return set_attribute(desc->aux, what,
                         "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER", buf,
                         sizeInBytes);
  case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD:
    return set_attribute(desc->aux_ld, what,
                         "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD", buf,
                         sizeInBytes);
  default:
    nnemu::report("%s: attribute %d is not emulated (the emulator has "
                  "TRANSA, TRANSB, EPILOGUE, BIAS_POINTER, "
                  "EPILOGUE_AUX_POINTER and EPILOGUE_AUX_LD)",
                  what, (int)attr);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
}

/* Any type is taken here; the heuristic and the matmul refuse the ones
 * the emulator has not. */
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *matLayout,
                                          cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  if (!matLayout)
    return CUBLAS_STATUS_INVALID_VALUE;
  layout_descriptor *layout =
      new (std::nothrow) layout_descriptor{type, rows, cols, ld};
  if (!layout)
    return CUBLAS_STATUS_ALLOC_FAILED;
  remember(layout, object_kind::layout);
  *matLayout = reinterpret_cast<cublasLtMatrixLayout_t>(layout);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout) {
  return destroy_descriptor<layout_descriptor>("cublasLtMatrixLayoutDestroy",
                                               matLayout, object_kind::layout);
}

/* What cublasLtMatrixLayoutCreate sets may be set again; column order and
 * a batch of one are taken as the defaults they are; anything else (other
 * orders, batches, planar complex) is refused. */
cublasStatus_t
cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout,
                                 cublasLtMatrixLayoutAttribute_t attr,
                                 const void *buf, size_t sizeInBytes) {
  const char *what = "cublasLtMatrixLayoutSetAttribute";
  layout_descriptor *layout = live_layout(matLayout);
  if (!layout) {
    nnemu::report("%s: %p is not a live matrix layout", what,
                  static_cast<const void *>(matLayout));
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  int32_t value = 0;
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  switch (attr) {
  case CUBLASLT_MATRIX_LAYOUT_TYPE: {
    uint32_t type = 0;
    status = set_attribute(type, what, "CUBLASLT_MATRIX_LAYOUT_TYPE", buf,
                           sizeInBytes);
    if (status == CUBLAS_STATUS_SUCCESS)
      layout->type = (cudaDataType_t)type;
    return status;
  }
  case CUBLASLT_MATRIX_LAYOUT_ROWS:
    return set_attribute(layout->rows, what, "CUBLASLT_MATRIX_LAYOUT_ROWS", buf,
                         sizeInBytes);
  case CUBLASLT_MATRIX_LAYOUT_COLS:
    return set_attribute(layout->cols, what, "CUBLASLT_MATRIX_LAYOUT_COLS", buf,
                         sizeInBytes);
  case CUBLASLT_MATRIX_LAYOUT_LD:
    return set_attribute(layout->ld, what, "CUBLASLT_MATRIX_LAYOUT_LD", buf,
                         sizeInBytes);
  case CUBLASLT_MATRIX_LAYOUT_ORDER:
    status = set_attribute(value, what, "CUBLASLT_MATRIX_LAYOUT_ORDER", buf,
                           sizeInBytes);
    if (status == CUBLAS_STATUS_SUCCESS && value != CUBLASLT_ORDER_COL)
      break;
    return status;
  case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
    status = set_attribute(value, what, "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT",
                           buf, sizeInBytes);
    if (status == CUBLAS_STATUS_SUCCESS && value != 1)
      break;
    return status;
  default:
    break;
  }
  nnemu::report("%s: attribute %d (value %d) is not emulated: the emulator "
                "has column-major single matrices",
                what, (int)attr, (int)value);
  return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t
cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
  if (!pref)
    return CUBLAS_STATUS_INVALID_VALUE;
  preference_descriptor *created = new (std::nothrow) preference_descriptor();
  if (!created)
    return CUBLAS_STATUS_ALLOC_FAILED;
  remember(created, object_kind::preference);
  *pref = reinterpret_cast<cublasLtMatmulPreference_t>(created);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  return destroy_descriptor<preference_descriptor>(
      "cublasLtMatmulPreferenceDestroy", pref, object_kind::preference);
}

cublasStatus_t
cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                     cublasLtMatmulPreferenceAttributes_t attr,
                                     const void *buf, size_t sizeInBytes) {
  const char *what = "cublasLtMatmulPreferenceSetAttribute";
  preference_descriptor *preference = live_preference(pref);
  if (!preference) {
    nnemu::report("%s: %p is not a live preference", what,
                  static_cast<const void *>(pref));
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  switch (attr) {
  case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
    return set_attribute(preference->max_workspace, what,
                         "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES", buf,
                         sizeInBytes);
  case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    return set_attribute(preference->alignment[0], what,
                         "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES", buf,
                         sizeInBytes);
  case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    return set_attribute(preference->alignment[1], what,
                         "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES", buf,
                         sizeInBytes);
  case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    return set_attribute(preference->alignment[2], what,
                         "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES", buf,
                         sizeInBytes);
  case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
    return set_attribute(preference->alignment[3], what,
                         "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES", buf,
                         sizeInBytes);
  default:
    nnemu::report("%s: attribute %d is not emulated (the emulator has "
                  "MAX_WORKSPACE_BYTES and MIN_ALIGNMENT_{A,B,C,D}_BYTES)",
                  what, (int)attr);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
}

/* One algorithm when the emulator can run the problem (workspace 0, so any
 * workspace limit does); CUBLAS_STATUS_NOT_SUPPORTED with none when it
 * cannot, silently, as the caller then takes another path. Errors in the
 * problem itself are reported. */
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,
    cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
    cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
    cublasLtMatmulPreference_t preference, int requestedAlgoCount,
    cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
    int *returnAlgoCount) {
  const char *what = "cublasLtMatmulAlgoGetHeuristic";
  if (!is_live(lightHandle, object_kind::lt)) {
    nnemu::report("%s: %p is not a live cuBLASLt handle", what,
                  static_cast<const void *>(lightHandle));
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  const preference_descriptor *pref = live_preference(preference);
  if (!pref || requestedAlgoCount < 1 || !heuristicResultsArray ||
      !returnAlgoCount) {
    nnemu::report("%s: preference %p, %d results asked into %p, count at %p",
                  what, static_cast<const void *>(preference),
                  requestedAlgoCount,
                  static_cast<const void *>(heuristicResultsArray),
                  static_cast<const void *>(returnAlgoCount));
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  *returnAlgoCount = 0;
  lt_problem problem;
  refusal refused =
      find_lt_objects(operationDesc, Adesc, Bdesc, Cdesc, Ddesc, problem);
  if (!refused)
    refused = check_preferred_alignments(*pref, problem);
  if (refused)
    return refused.status == CUBLAS_STATUS_NOT_SUPPORTED
               ? refused.status
               : reported(what, refused);
  if (heuristic_says_invalid(problem))
    return CUBLAS_STATUS_INVALID_VALUE;
  cublasLtMatmulHeuristicResult_t &result = heuristicResultsArray[0];
  std::memset(&result, 0, sizeof result);
  result.algo = make_algorithm(chosen_alignments(*pref, problem));
  result.workspaceSize = 0;
  result.state = CUBLAS_STATUS_SUCCESS;
  result.wavesCount = 1.0f;
  *returnAlgoCount = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc,
               const void *alpha, const void *A, cublasLtMatrixLayout_t Adesc,
               const void *B, cublasLtMatrixLayout_t Bdesc, const void *beta,
               const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
               cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo,
               void *workspace, size_t workspaceSizeInBytes,
               cudaStream_t stream) {
  const char *what = "cublasLtMatmul";
  if (!is_live(lightHandle, object_kind::lt)) {
    nnemu::report("%s: %p is not a live cuBLASLt handle", what,
                  static_cast<const void *>(lightHandle));
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  if (!alpha || !beta) {
    nnemu::report("%s: alpha %p / beta %p: both must point to host floats",
                  what, alpha, beta);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  lt_problem problem;
  if (refusal refused =
          find_lt_objects(computeDesc, Adesc, Bdesc, Cdesc, Ddesc, problem))
    return reported(what, refused);
  problem.a = A;
  problem.b = B;
  problem.c = C;
  problem.d = D;
  problem.alpha = *static_cast<const float *>(alpha);
  problem.beta = *static_cast<const float *>(beta);
  refusal refused = check_algorithm(algo, problem);
  if (!refused)
    refused = check_lt_memory(problem);
  if (!refused)
    refused = check_workspace(workspace, workspaceSizeInBytes);
  if (refused)
    return reported(what, refused);
  const cudaError_t queued = nnemu::enqueue(
      stream,
      guarded(what,
              [problem, what]() {
                for (const void *operand :
                     {problem.a, problem.b, problem.c, (const void *)problem.d,
                      (const void *)problem.bias, (const void *)problem.aux})
                  nnemu::note_access(operand, what);
                run_lt_matmul(problem);
              }),
      what);
  if (queued != cudaSuccess) {
    nnemu::report("%s: the stream refused the work (cudaError_t %d)", what,
                  (int)queued);
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  return CUBLAS_STATUS_SUCCESS;
}
