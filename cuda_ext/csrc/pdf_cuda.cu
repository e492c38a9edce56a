// CUDA launchers: proposal-sampler ops on the dense layout, one thread a ray.
#include "cuda_common.cuh"
#include "ops.h"
#include "pdf_core.h"

namespace onefield {
namespace {

template <typename T>
__global__ void pdf_resample_kernel(int64_t n, int64_t k, int64_t m, const T* e, const T* w, const T* u, T padding,
                                    T* out) {
  const int64_t r = thread_index();
  if (r < n) pdf_resample_one<T>(e + r * (k + 1), w + r * k, k, u + r * m, m, padding, out + r * m);
}

template <typename T>
__global__ void interval_weights_forward_kernel(int64_t n, int64_t q, int64_t s, const T* tq, const T* ts,
                                                const T* w, T* out) {
  const int64_t r = thread_index();
  if (r < n) interval_weights_forward_one<T>(tq + r * (q + 1), q, ts + r * (s + 1), w + r * s, s, out + r * q);
}

template <typename T>
__global__ void interval_weights_backward_kernel(int64_t n, int64_t q, int64_t s, const T* g, const T* tq,
                                                 const T* ts, T* gw) {
  const int64_t r = thread_index();
  if (r < n) interval_weights_backward_one<T>(g + r * q, tq + r * (q + 1), q, ts + r * (s + 1), s, gw + r * s);
}

}  // namespace

at::Tensor pdf_resample_cuda(const at::Tensor& edges, const at::Tensor& weights, const at::Tensor& u,
                             double padding) {
  const c10::cuda::CUDAGuard guard(u.device());
  const int64_t n = u.size(0), k = weights.size(1), m = u.size(1);
  auto out = at::empty_like(u);  // every sample is written by its ray
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "pdf_resample_cuda", [&] {
    pdf_resample_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        n, k, m, edges.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(),
        scalar_t(padding), out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor interval_weights_forward_cuda(const at::Tensor& t_query, const at::Tensor& t_src,
                                         const at::Tensor& w_src) {
  const c10::cuda::CUDAGuard guard(w_src.device());
  const int64_t n = t_query.size(0), q = t_query.size(1) - 1, s = w_src.size(1);
  auto out = at::empty({n, q}, w_src.options());
  AT_DISPATCH_FLOATING_TYPES(w_src.scalar_type(), "interval_weights_forward_cuda", [&] {
    interval_weights_forward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        n, q, s, t_query.data_ptr<scalar_t>(), t_src.data_ptr<scalar_t>(), w_src.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor interval_weights_backward_cuda(const at::Tensor& g_out, const at::Tensor& t_query,
                                          const at::Tensor& t_src) {
  const c10::cuda::CUDAGuard guard(g_out.device());
  const int64_t n = t_query.size(0), q = t_query.size(1) - 1, s = t_src.size(1) - 1;
  auto g_w = at::empty({n, s}, g_out.options());  // zeroed row by row in the kernel
  AT_DISPATCH_FLOATING_TYPES(g_out.scalar_type(), "interval_weights_backward_cuda", [&] {
    interval_weights_backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        n, q, s, g_out.data_ptr<scalar_t>(), t_query.data_ptr<scalar_t>(), t_src.data_ptr<scalar_t>(),
        g_w.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return g_w;
}

}  // namespace onefield
