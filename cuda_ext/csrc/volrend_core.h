// Per-ray packed volume rendering, forward and backward, with early ray termination.
//   T_i = exp(-sum_{j<i} sigma_j delta_j),   alpha_i = 1 - exp(-sigma_i delta_i),   w_i = T_i alpha_i;
// the optical depth is summed in double and rounded once before the exp (float exps are several
// times cheaper than double ones). A ray stops at its first sample whose T_i < t_thresh; every
// sample of the ray is written (zeros past the stop), so outputs need no zero-fill.
// The backward pass is closed-form (as in Instant-NGP): with g_i = dL/dw_i (direct + through color,
// depth and opacity), dL/dsigma_k = delta_k (T_k (1 - alpha_k) g_k - sum_{i>k} g_i w_i).
#pragma once

#include "hd.h"

namespace onefield {

template <typename T>
OF_HD void volrend_forward_one(int64_t start, int64_t count, const T* sigmas, const T* rgbs,
                               const T* t0, const T* t1, T t_thresh, T* weights, T* color,
                               T* depth, T* opacity) {
  double acc = 0.0;
  T c[3] = {T(0), T(0), T(0)}, dep = T(0), op = T(0);
  int64_t i = start;
  for (; i < start + count; ++i) {
    const T trans = of_exp(T(-acc));
    if (trans < t_thresh) break;
    const T delta = t1[i] - t0[i];
    const T sd = sigmas[i] * delta;
    const T w = trans * (T(1) - of_exp(-sd));
    weights[i] = w;
    for (int a = 0; a < 3; ++a) c[a] += w * rgbs[3 * i + a];
    dep += w * ((t0[i] + t1[i]) * T(0.5));
    op += w;
    acc += double(sd);
  }
  for (; i < start + count; ++i) weights[i] = T(0);
  for (int a = 0; a < 3; ++a) color[a] = c[a];
  *depth = dep;
  *opacity = op;
}

// g_i, the total gradient reaching w_i.
template <typename T>
OF_HD T volrend_grad_w(int64_t i, const T* rgbs, const T* t0, const T* t1, const T* g_weights,
                       const T* g_color, T g_depth, T g_opacity) {
  T g = g_weights[i] + g_opacity + g_depth * ((t0[i] + t1[i]) * T(0.5));
  for (int a = 0; a < 3; ++a) g += g_color[a] * rgbs[3 * i + a];
  return g;
}

// Backward of one ray given the forward's weights. Since T_k (1 - alpha_k) = T_k - w_k, it needs
// one exp per sample (for T_k, recomputed exactly as the forward did, so the stop is the same).
template <typename T>
OF_HD void volrend_backward_one(int64_t start, int64_t count, const T* sigmas, const T* rgbs,
                                const T* t0, const T* t1, const T* weights, T t_thresh,
                                const T* g_weights, const T* g_color, T g_depth, T g_opacity,
                                T* g_sigmas, T* g_rgbs) {
  // sum_i g_i w_i over the ray (samples past the stop have w_i = 0).
  double total = 0.0;
  for (int64_t i = start; i < start + count; ++i)
    total += double(volrend_grad_w(i, rgbs, t0, t1, g_weights, g_color, g_depth, g_opacity) * weights[i]);
  // Gradients, with the suffix sum taken as total minus the running prefix.
  double acc = 0.0, prefix = 0.0;
  int64_t i = start;
  for (; i < start + count; ++i) {
    const T trans = of_exp(T(-acc));
    if (trans < t_thresh) break;
    const T delta = t1[i] - t0[i];
    const T w = weights[i];
    const T g = volrend_grad_w(i, rgbs, t0, t1, g_weights, g_color, g_depth, g_opacity);
    prefix += double(g * w);
    g_sigmas[i] = delta * ((trans - w) * g - T(total - prefix));
    for (int a = 0; a < 3; ++a) g_rgbs[3 * i + a] = w * g_color[a];
    acc += double(sigmas[i] * delta);
  }
  for (; i < start + count; ++i) {
    g_sigmas[i] = T(0);
    for (int a = 0; a < 3; ++a) g_rgbs[3 * i + a] = T(0);
  }
}

}  // namespace onefield
