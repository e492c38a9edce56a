// CPU launchers for Strivec's local tri-vector sampling. Forward: parallel over points. Backward:
// parallel over ranges of tensors; each thread walks every (point, slot) and adds only into the
// tensors it owns, so there are no atomics.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "ops.h"
#include "trivec_core.h"

namespace onefield {

at::Tensor trivec_sample_forward_cpu(const at::Tensor& vectors, const at::Tensor& ids, const at::Tensor& local,
                                     const at::Tensor& weights, int64_t k) {
  const int64_t n = ids.size(0), slots = ids.size(1);
  const TrivecShape shape{vectors.size(1), vectors.size(2), vectors.size(3)};
  auto out = at::zeros({n, k}, vectors.options());
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "trivec_sample_forward_cpu", [&] {
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    const int64_t* id = ids.data_ptr<int64_t>();
    const scalar_t* loc = local.data_ptr<scalar_t>();
    const scalar_t* w = weights.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t s = 0; s < slots; ++s) {
          const int64_t t = id[i * slots + s];
          if (t < 0) continue;
          const scalar_t* rows[3];
          scalar_t f[3];
          for (int a = 0; a < 3; ++a) {
            int64_t i0;
            trivec_texel(loc[(i * slots + s) * 3 + a], shape.length, i0, f[a]);
            rows[a] = vec + trivec_row(shape, a, t, i0);
          }
          const scalar_t ws = w[i * slots + s];
          const int64_t c = shape.channels;
          scalar_t* oi = o + i * k;
          for (int64_t r = 0; r < k; ++r) {
            scalar_t prod = ws;
            for (int a = 0; a < 3; ++a) prod *= rows[a][r] * (scalar_t(1) - f[a]) + rows[a][r + c] * f[a];
            oi[r] += prod;
          }
        }
      }
    });
  });
  return out;
}

at::Tensor trivec_sample_backward_cpu(const at::Tensor& g_out, const at::Tensor& vectors, const at::Tensor& ids,
                                      const at::Tensor& local, const at::Tensor& weights) {
  const int64_t n = ids.size(0), slots = ids.size(1), k = g_out.size(1);
  const TrivecShape shape{vectors.size(1), vectors.size(2), vectors.size(3)};
  auto g_vec = at::zeros_like(vectors);
  const int64_t threads = at::get_num_threads();
  const int64_t grain = std::max<int64_t>(1, (shape.n_tensors + threads - 1) / threads);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "trivec_sample_backward_cpu", [&] {
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    const int64_t* id = ids.data_ptr<int64_t>();
    const scalar_t* loc = local.data_ptr<scalar_t>();
    const scalar_t* w = weights.data_ptr<scalar_t>();
    const scalar_t* go = g_out.data_ptr<scalar_t>();
    scalar_t* gv = g_vec.data_ptr<scalar_t>();
    at::parallel_for(0, shape.n_tensors, grain, [&](int64_t t_begin, int64_t t_end) {
      std::vector<scalar_t> val(3 * k);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t s = 0; s < slots; ++s) {
          const int64_t t = id[i * slots + s];
          if (t < t_begin || t >= t_end) continue;
          int64_t row[3];
          scalar_t f[3];
          const int64_t c = shape.channels;
          for (int a = 0; a < 3; ++a) {
            int64_t i0;
            trivec_texel(loc[(i * slots + s) * 3 + a], shape.length, i0, f[a]);
            row[a] = trivec_row(shape, a, t, i0);
            for (int64_t r = 0; r < k; ++r)
              val[a * k + r] = vec[row[a] + r] * (scalar_t(1) - f[a]) + vec[row[a] + r + c] * f[a];
          }
          const scalar_t ws = w[i * slots + s];
          const scalar_t* gi = go + i * k;
          for (int a = 0; a < 3; ++a) {
            const int b = (a + 1) % 3, d = (a + 2) % 3;
            scalar_t* g0 = gv + row[a];
            for (int64_t r = 0; r < k; ++r) {
              const scalar_t g = ws * gi[r] * val[b * k + r] * val[d * k + r];
              g0[r] += g * (scalar_t(1) - f[a]);
              g0[r + c] += g * f[a];
            }
          }
        }
      }
    });
  });
  return g_vec;
}

}  // namespace onefield
