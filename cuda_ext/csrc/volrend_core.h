// Per-ray packed volume rendering, forward and backward, with early ray termination.
//   T_i = exp(-sum_{j<i} sigma_j delta_j)   (accumulated in double),   alpha_i = 1 - exp(-sigma_i delta_i)
//   w_i = T_i alpha_i, and a ray stops at the first sample whose T_i < t_thresh.
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
  for (int64_t i = start; i < start + count; ++i) {
    const T trans = T(of_exp(-acc));
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

template <typename T>
OF_HD void volrend_backward_one(int64_t start, int64_t count, const T* sigmas, const T* rgbs,
                                const T* t0, const T* t1, T t_thresh, const T* g_weights,
                                const T* g_color, T g_depth, T g_opacity, T* g_sigmas, T* g_rgbs) {
  // Pass 1: how many samples are alive, and sum_i g_i w_i over them.
  double acc = 0.0, total = 0.0;
  int64_t alive = 0;
  for (int64_t i = start; i < start + count; ++i, ++alive) {
    const T trans = T(of_exp(-acc));
    if (trans < t_thresh) break;
    const T sd = sigmas[i] * (t1[i] - t0[i]);
    const T w = trans * (T(1) - of_exp(-sd));
    total += double(volrend_grad_w(i, rgbs, t0, t1, g_weights, g_color, g_depth, g_opacity) * w);
    acc += double(sd);
  }
  // Pass 2: gradients, with the suffix sum taken as total minus the running prefix.
  acc = 0.0;
  double prefix = 0.0;
  for (int64_t i = start; i < start + alive; ++i) {
    const T trans = T(of_exp(-acc));
    const T delta = t1[i] - t0[i];
    const T sd = sigmas[i] * delta;
    const T keep = of_exp(-sd);
    const T w = trans * (T(1) - keep);
    const T g = volrend_grad_w(i, rgbs, t0, t1, g_weights, g_color, g_depth, g_opacity);
    prefix += double(g * w);
    g_sigmas[i] = delta * (trans * keep * g - T(total - prefix));
    for (int a = 0; a < 3; ++a) g_rgbs[3 * i + a] = w * g_color[a];
    acc += double(sd);
  }
}

}  // namespace onefield
