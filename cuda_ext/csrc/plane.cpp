// CPU launchers: plane sampling forward (parallel over samples) and backward. The factor gradient
// is parallel over bands of rows: every thread walks all samples but adds only into the rows it
// owns, so there are no atomics and no two threads write one cache line (grid_sample's CPU
// backward, the TensoRF hot spot it replaces, is ~5x slower).
#include <ATen/Parallel.h>

#include <algorithm>

#include "ops.h"
#include "plane_core.h"

namespace onefield {

at::Tensor plane_sample_forward_cpu(const at::Tensor& plane, const at::Tensor& uv, int64_t k) {
  const int64_t n = uv.size(0), h = plane.size(0), w = plane.size(1), c = plane.size(2);
  auto out = at::empty({n, k}, plane.options());
  AT_DISPATCH_FLOATING_TYPES(plane.scalar_type(), "plane_sample_forward_cpu", [&] {
    const scalar_t* p = plane.data_ptr<scalar_t>();
    const scalar_t* coords = uv.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const Corners<scalar_t> cr = plane_corners(coords + 2 * i, int(h), int(w));
        const scalar_t* t0 = p + cr.texel[0] * c;
        const scalar_t* t1 = p + cr.texel[1] * c;
        const scalar_t* t2 = p + cr.texel[2] * c;
        const scalar_t* t3 = p + cr.texel[3] * c;
        scalar_t* oi = o + i * k;
        for (int64_t j = 0; j < k; ++j)
          oi[j] = cr.weight[0] * t0[j] + cr.weight[1] * t1[j] + cr.weight[2] * t2[j] + cr.weight[3] * t3[j];
      }
    });
  });
  return out;
}

at::Tensor plane_sample_backward_cpu(const at::Tensor& g_out, const at::Tensor& uv, int64_t h, int64_t w,
                                     int64_t c) {
  const int64_t n = uv.size(0), k = g_out.size(1);
  auto g_plane = at::zeros({h, w, c}, g_out.options());
  const int64_t band = std::max<int64_t>(1, (h + at::get_num_threads() - 1) / at::get_num_threads());
  AT_DISPATCH_FLOATING_TYPES(g_out.scalar_type(), "plane_sample_backward_cpu", [&] {
    const scalar_t* go = g_out.data_ptr<scalar_t>();
    const scalar_t* coords = uv.data_ptr<scalar_t>();
    scalar_t* gp = g_plane.data_ptr<scalar_t>();
    at::parallel_for(0, h, band, [&](int64_t row_begin, int64_t row_end) {
      for (int64_t i = 0; i < n; ++i) {
        const Corners<scalar_t> cr = plane_corners(coords + 2 * i, int(h), int(w));
        const bool own0 = cr.row[0] >= row_begin && cr.row[0] < row_end;
        const bool own1 = cr.row[1] >= row_begin && cr.row[1] < row_end;
        if (!own0 && !own1) continue;
        const scalar_t* gi = go + i * k;
        // corners 0, 1 lie in row[0] and 2, 3 in row[1]; with H == 1 (a line) 2, 3 repeat 0, 1 at weight 0
        const int corners = cr.row[1] == cr.row[0] ? 2 : 4;
        for (int q = 0; q < corners; ++q) {
          if (!(q < 2 ? own0 : own1)) continue;
          scalar_t* t = gp + cr.texel[q] * c;
          const scalar_t wq = cr.weight[q];
          for (int64_t j = 0; j < k; ++j) t[j] += wq * gi[j];
        }
      }
    });
  });
  return g_plane;
}

}  // namespace onefield
