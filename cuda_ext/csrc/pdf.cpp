// CPU launchers: proposal-sampler ops on the dense layout, one ray per loop iteration.
#include <ATen/Parallel.h>

#include "ops.h"
#include "pdf_core.h"

namespace onefield {

at::Tensor pdf_resample_cpu(const at::Tensor& edges, const at::Tensor& weights, const at::Tensor& u,
                            double padding) {
  const int64_t n = u.size(0), k = weights.size(1), m = u.size(1);
  auto out = at::empty_like(u);  // every sample is written by its ray
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "pdf_resample_cpu", [&] {
    const scalar_t* e = edges.data_ptr<scalar_t>();
    const scalar_t* w = weights.data_ptr<scalar_t>();
    const scalar_t* uu = u.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        pdf_resample_one<scalar_t>(e + r * (k + 1), w + r * k, k, uu + r * m, m, scalar_t(padding), o + r * m);
    });
  });
  return out;
}

at::Tensor interval_weights_forward_cpu(const at::Tensor& t_query, const at::Tensor& t_src,
                                        const at::Tensor& w_src) {
  const int64_t n = t_query.size(0), q = t_query.size(1) - 1, s = w_src.size(1);
  auto out = at::empty({n, q}, w_src.options());
  AT_DISPATCH_FLOATING_TYPES(w_src.scalar_type(), "interval_weights_forward_cpu", [&] {
    const scalar_t* tq = t_query.data_ptr<scalar_t>();
    const scalar_t* ts = t_src.data_ptr<scalar_t>();
    const scalar_t* w = w_src.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        interval_weights_forward_one<scalar_t>(tq + r * (q + 1), q, ts + r * (s + 1), w + r * s, s, o + r * q);
    });
  });
  return out;
}

at::Tensor interval_weights_backward_cpu(const at::Tensor& g_out, const at::Tensor& t_query,
                                         const at::Tensor& t_src) {
  const int64_t n = t_query.size(0), q = t_query.size(1) - 1, s = t_src.size(1) - 1;
  auto g_w = at::empty({n, s}, g_out.options());  // zeroed row by row in the kernel
  AT_DISPATCH_FLOATING_TYPES(g_out.scalar_type(), "interval_weights_backward_cpu", [&] {
    const scalar_t* g = g_out.data_ptr<scalar_t>();
    const scalar_t* tq = t_query.data_ptr<scalar_t>();
    const scalar_t* ts = t_src.data_ptr<scalar_t>();
    scalar_t* gw = g_w.data_ptr<scalar_t>();
    at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        interval_weights_backward_one<scalar_t>(g + r * q, tq + r * (q + 1), q, ts + r * (s + 1), s, gw + r * s);
    });
  });
  return g_w;
}

}  // namespace onefield
