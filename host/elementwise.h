/*
 * elementwise.h — the per-element math both backends use: activations, their
 * derivatives and the optimizer updates, written once so that the CPU
 * reference and the CUDA kernels cannot drift apart. Compiled as host C by
 * the CPU backend and as __host__ __device__ by nvcc (which runs with
 * --fmad=false, so the same operations round the same way).
 */
#ifndef NN_ELEMENTWISE_H
#define NN_ELEMENTWISE_H

#include "nn.h"

#include <math.h>

#ifdef __CUDACC__
#define NNLIB_ELEMENTWISE static __host__ __device__ __forceinline__
#else
#define NNLIB_ELEMENTWISE static inline
#endif

/* float nearest 1/√2 and 1/√(2π). */
#define NNLIB_SQRT1_2 0.70710678118654752440f
#define NNLIB_INV_SQRT_2PI 0.3989422804014327f

/* Split by sign so expf never overflows. */
NNLIB_ELEMENTWISE float nnlib_sigmoid(float z) {
  if (z >= 0.0f)
    return 1.0f / (1.0f + expf(-z));
  float e = expf(z);
  return e / (1.0f + e);
}

/* z Φ(z), the exact (erf) GELU. */
NNLIB_ELEMENTWISE float nnlib_gelu(float z) {
  return 0.5f * z * (1.0f + erff(z * NNLIB_SQRT1_2));
}

/* d/dz [z Φ(z)] = Φ(z) + z φ(z). */
NNLIB_ELEMENTWISE float nnlib_gelu_derivative(float z) {
  float cdf = 0.5f * (1.0f + erff(z * NNLIB_SQRT1_2));
  float pdf = expf(-0.5f * z * z) * NNLIB_INV_SQRT_2PI;
  return cdf + z * pdf;
}

/* √(2/π) and the cubic coefficient of GELU's tanh approximation. */
#define NNLIB_SQRT_2_OVER_PI 0.7978845608028654f
#define NNLIB_GELU_TANH_CUBIC 0.044715f

/* ½ z (1 + tanh(u)), u = √(2/π) (z + 0.044715 z³). */
NNLIB_ELEMENTWISE float nnlib_gelu_tanh(float z) {
  float u = NNLIB_SQRT_2_OVER_PI * (z + NNLIB_GELU_TANH_CUBIC * z * z * z);
  return 0.5f * z * (1.0f + tanhf(u));
}

/* ½ (1 + tanh u) + ½ z (1 - tanh² u) √(2/π) (1 + 3 · 0.044715 z²). */
NNLIB_ELEMENTWISE float nnlib_gelu_tanh_derivative(float z) {
  float u = NNLIB_SQRT_2_OVER_PI * (z + NNLIB_GELU_TANH_CUBIC * z * z * z);
  float t = tanhf(u);
  float du =
      NNLIB_SQRT_2_OVER_PI * (1.0f + 3.0f * NNLIB_GELU_TANH_CUBIC * z * z);
  return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * du;
}

/* g(z); softmax is taken per column elsewhere (linear here). */
NNLIB_ELEMENTWISE float nnlib_activate(nn_activation activation, float z) {
  switch (activation) {
  case NN_ACTIVATION_RELU:
    return z > 0.0f ? z : 0.0f;
  case NN_ACTIVATION_LEAKY_RELU:
    return z > 0.0f ? z : NN_LEAKY_RELU_SLOPE * z;
  case NN_ACTIVATION_TANH:
    return tanhf(z);
  case NN_ACTIVATION_SIGMOID:
    return nnlib_sigmoid(z);
  case NN_ACTIVATION_GELU:
    return nnlib_gelu(z);
  case NN_ACTIVATION_GELU_TANH:
    return nnlib_gelu_tanh(z);
  default:
    return z;
  }
}

/* g'(z), given z and a = g(z). */
NNLIB_ELEMENTWISE float nnlib_activation_derivative(nn_activation activation,
                                                    float z, float a) {
  switch (activation) {
  case NN_ACTIVATION_RELU:
    return z > 0.0f ? 1.0f : 0.0f;
  case NN_ACTIVATION_LEAKY_RELU:
    return z > 0.0f ? 1.0f : NN_LEAKY_RELU_SLOPE;
  case NN_ACTIVATION_TANH:
    return 1.0f - a * a;
  case NN_ACTIVATION_SIGMOID:
    return a * (1.0f - a);
  case NN_ACTIVATION_GELU:
    return nnlib_gelu_derivative(z);
  case NN_ACTIVATION_GELU_TANH:
    return nnlib_gelu_tanh_derivative(z);
  default:
    return 1.0f;
  }
}

/* The optimizer's constants for one step. Adam's bias corrections
 * c1 = 1 - β1^t and c2 = 1 - β2^t are folded, once per step on the host,
 * into its step size α √c2 / c1 and its ε √c2 (see nnlib_adam_update). */
typedef struct nnlib_update_constants {
  nn_optimizer kind;
  float learning_rate, beta1, beta2, epsilon;
  float adam_step, adam_epsilon;
} nnlib_update_constants;

/* One parameter θ with gradient g and moments v (momentum / Adam m) and s,
 * one function an optimizer (the CPU backend loops over each, so that its
 * loop is one optimizer's and vectorizes):
 *   gd:       θ -= α g
 *   momentum: v = β1 v + (1-β1) g;  θ -= α v
 *   rmsprop:  s = β2 s + (1-β2) g²; θ -= α g / (√s + ε)
 *   adam:     v and s as above;     θ -= α (v / c1) / (√(s / c2) + ε),
 *             computed as θ -= (α √c2 / c1) v / (√s + ε √c2): the same in
 *             exact arithmetic (the Adam paper's "more efficient order",
 *             and PyTorch's), with one division an element instead of
 *             three — on the CPU the divisions were most of the update. */
NNLIB_ELEMENTWISE void nnlib_gd_update(const nnlib_update_constants *c, float g,
                                       float *theta) {
  *theta -= c->learning_rate * g;
}

NNLIB_ELEMENTWISE void nnlib_momentum_update(const nnlib_update_constants *c,
                                             float g, float *theta, float *v) {
  *v = c->beta1 * *v + (1.0f - c->beta1) * g;
  *theta -= c->learning_rate * *v;
}

NNLIB_ELEMENTWISE void nnlib_rmsprop_update(const nnlib_update_constants *c,
                                            float g, float *theta, float *s) {
  *s = c->beta2 * *s + (1.0f - c->beta2) * g * g;
  *theta -= c->learning_rate * g / (sqrtf(*s) + c->epsilon);
}

NNLIB_ELEMENTWISE void nnlib_adam_update(const nnlib_update_constants *c,
                                         float g, float *theta, float *v,
                                         float *s) {
  *v = c->beta1 * *v + (1.0f - c->beta1) * g;
  *s = c->beta2 * *s + (1.0f - c->beta2) * g * g;
  *theta -= c->adam_step * *v / (sqrtf(*s) + c->adam_epsilon);
}

/* The update of c->kind (the CUDA kernel's: one kernel for every kind). */
NNLIB_ELEMENTWISE void nnlib_update_parameter(const nnlib_update_constants *c,
                                              float g, float *theta, float *v,
                                              float *s) {
  switch (c->kind) {
  case NN_OPTIMIZER_MOMENTUM:
    nnlib_momentum_update(c, g, theta, v);
    break;
  case NN_OPTIMIZER_RMSPROP:
    nnlib_rmsprop_update(c, g, theta, s);
    break;
  case NN_OPTIMIZER_ADAM:
    nnlib_adam_update(c, g, theta, v, s);
    break;
  default:
    nnlib_gd_update(c, g, theta);
    break;
  }
}

#endif /* NN_ELEMENTWISE_H */
