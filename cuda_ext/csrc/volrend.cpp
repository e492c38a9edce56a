// CPU launchers: packed volume rendering forward and backward, one ray per loop iteration.
#include <ATen/Parallel.h>

#include "ops.h"
#include "volrend_core.h"

namespace onefield {

Tensors volrend_forward_cpu(const at::Tensor& sigmas, const at::Tensor& rgbs,
                            const at::Tensor& t_starts, const at::Tensor& t_ends,
                            const at::Tensor& packed_info, double t_thresh) {
  const int64_t n = packed_info.size(0);
  auto weights = at::empty_like(sigmas);  // every sample is written by its ray
  auto color = at::empty({n, 3}, sigmas.options());
  auto depth = at::empty({n}, sigmas.options());
  auto opacity = at::empty({n}, sigmas.options());
  const int64_t* info = packed_info.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "volrend_forward_cpu", [&] {
    const scalar_t* s = sigmas.data_ptr<scalar_t>();
    const scalar_t* c = rgbs.data_ptr<scalar_t>();
    const scalar_t* t0 = t_starts.data_ptr<scalar_t>();
    const scalar_t* t1 = t_ends.data_ptr<scalar_t>();
    scalar_t* w = weights.data_ptr<scalar_t>();
    scalar_t* col = color.data_ptr<scalar_t>();
    scalar_t* dep = depth.data_ptr<scalar_t>();
    scalar_t* op = opacity.data_ptr<scalar_t>();
    at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        volrend_forward_one<scalar_t>(info[2 * r], info[2 * r + 1], s, c, t0, t1, scalar_t(t_thresh),
                                      w, col + 3 * r, dep + r, op + r);
    });
  });
  return {weights, color, depth, opacity};
}

Tensors volrend_backward_cpu(const at::Tensor& g_weights, const at::Tensor& g_color,
                             const at::Tensor& g_depth, const at::Tensor& g_opacity,
                             const at::Tensor& sigmas, const at::Tensor& rgbs,
                             const at::Tensor& t_starts, const at::Tensor& t_ends,
                             const at::Tensor& weights, const at::Tensor& packed_info, double t_thresh) {
  const int64_t n = packed_info.size(0);
  auto g_sigmas = at::empty_like(sigmas);  // every sample is written by its ray
  auto g_rgbs = at::empty_like(rgbs);
  const int64_t* info = packed_info.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "volrend_backward_cpu", [&] {
    const scalar_t* gw = g_weights.data_ptr<scalar_t>();
    const scalar_t* gc = g_color.data_ptr<scalar_t>();
    const scalar_t* gd = g_depth.data_ptr<scalar_t>();
    const scalar_t* go = g_opacity.data_ptr<scalar_t>();
    const scalar_t* s = sigmas.data_ptr<scalar_t>();
    const scalar_t* c = rgbs.data_ptr<scalar_t>();
    const scalar_t* t0 = t_starts.data_ptr<scalar_t>();
    const scalar_t* t1 = t_ends.data_ptr<scalar_t>();
    const scalar_t* w = weights.data_ptr<scalar_t>();
    scalar_t* gs = g_sigmas.data_ptr<scalar_t>();
    scalar_t* gr = g_rgbs.data_ptr<scalar_t>();
    at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        volrend_backward_one<scalar_t>(info[2 * r], info[2 * r + 1], s, c, t0, t1, w, scalar_t(t_thresh),
                                       gw, gc + 3 * r, gd[r], go[r], gs, gr);
    });
  });
  return {g_sigmas, g_rgbs};
}

}  // namespace onefield
