// CUDA launchers: packed volume rendering forward and backward, one thread a ray.
#include "cuda_common.cuh"
#include "ops.h"
#include "volrend_core.h"

namespace onefield {
namespace {

template <typename T>
__global__ void volrend_forward_kernel(int64_t n, const int64_t* info, const T* s, const T* c, const T* t0,
                                       const T* t1, T t_thresh, T* w, T* color, T* depth, T* opacity) {
  const int64_t r = thread_index();
  if (r < n)
    volrend_forward_one<T>(info[2 * r], info[2 * r + 1], s, c, t0, t1, t_thresh, w, color + 3 * r, depth + r,
                           opacity + r);
}

template <typename T>
__global__ void volrend_backward_kernel(int64_t n, const int64_t* info, const T* s, const T* c, const T* t0,
                                        const T* t1, const T* w, T t_thresh, const T* gw, const T* gc, const T* gd,
                                        const T* go, T* gs, T* gr) {
  const int64_t r = thread_index();
  if (r < n)
    volrend_backward_one<T>(info[2 * r], info[2 * r + 1], s, c, t0, t1, w, t_thresh, gw, gc + 3 * r, gd[r], go[r],
                            gs, gr);
}

}  // namespace

Tensors volrend_forward_cuda(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts,
                             const at::Tensor& t_ends, const at::Tensor& packed_info, double t_thresh) {
  const c10::cuda::CUDAGuard guard(sigmas.device());
  const int64_t n = packed_info.size(0);
  auto weights = at::empty_like(sigmas);  // every sample is written by its ray
  auto color = at::empty({n, 3}, sigmas.options());
  auto depth = at::empty({n}, sigmas.options());
  auto opacity = at::empty({n}, sigmas.options());
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "volrend_forward_cuda", [&] {
    volrend_forward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        n, packed_info.data_ptr<int64_t>(), sigmas.data_ptr<scalar_t>(), rgbs.data_ptr<scalar_t>(),
        t_starts.data_ptr<scalar_t>(), t_ends.data_ptr<scalar_t>(), scalar_t(t_thresh),
        weights.data_ptr<scalar_t>(), color.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(),
        opacity.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {weights, color, depth, opacity};
}

Tensors volrend_backward_cuda(const at::Tensor& g_weights, const at::Tensor& g_color, const at::Tensor& g_depth,
                              const at::Tensor& g_opacity, const at::Tensor& sigmas, const at::Tensor& rgbs,
                              const at::Tensor& t_starts, const at::Tensor& t_ends, const at::Tensor& weights,
                              const at::Tensor& packed_info, double t_thresh) {
  const c10::cuda::CUDAGuard guard(sigmas.device());
  const int64_t n = packed_info.size(0);
  auto g_sigmas = at::empty_like(sigmas);  // every sample is written by its ray
  auto g_rgbs = at::empty_like(rgbs);
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "volrend_backward_cuda", [&] {
    volrend_backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        n, packed_info.data_ptr<int64_t>(), sigmas.data_ptr<scalar_t>(), rgbs.data_ptr<scalar_t>(),
        t_starts.data_ptr<scalar_t>(), t_ends.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
        scalar_t(t_thresh), g_weights.data_ptr<scalar_t>(), g_color.data_ptr<scalar_t>(), g_depth.data_ptr<scalar_t>(),
        g_opacity.data_ptr<scalar_t>(), g_sigmas.data_ptr<scalar_t>(), g_rgbs.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {g_sigmas, g_rgbs};
}

}  // namespace onefield
