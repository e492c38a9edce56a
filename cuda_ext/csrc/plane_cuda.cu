// CUDA launchers: plane sampling, one thread per (sample, channel) so a warp reads a texel's
// channels contiguously; the factor gradient is scattered with atomicAdd.
#include "cuda_common.cuh"
#include "ops.h"
#include "plane_core.h"

namespace onefield {
namespace {

template <typename T>
__global__ void plane_forward_kernel(int64_t n, int64_t k, int h, int w, int64_t c, const T* plane, const T* uv,
                                     T* out) {
  const int64_t tid = thread_index();
  if (tid >= n * k) return;
  const int64_t i = tid / k, j = tid % k;
  const Corners<T> cr = plane_corners(uv + 2 * i, h, w);
  T acc = T(0);
  for (int q = 0; q < 4; ++q) acc += cr.weight[q] * plane[cr.texel[q] * c + j];
  out[tid] = acc;
}

template <typename T>
__global__ void plane_backward_kernel(int64_t n, int64_t k, int h, int w, int64_t c, const T* g_out, const T* uv,
                                      T* g_plane) {
  const int64_t tid = thread_index();
  if (tid >= n * k) return;
  const int64_t i = tid / k, j = tid % k;
  const Corners<T> cr = plane_corners(uv + 2 * i, h, w);
  const T g = g_out[tid];
  const int corners = cr.row[1] == cr.row[0] ? 2 : 4;
  for (int q = 0; q < corners; ++q)
    if (cr.weight[q] != T(0)) atomicAdd(g_plane + cr.texel[q] * c + j, cr.weight[q] * g);
}

}  // namespace

at::Tensor plane_sample_forward_cuda(const at::Tensor& plane, const at::Tensor& uv, int64_t k) {
  const c10::cuda::CUDAGuard guard(plane.device());
  const int64_t n = uv.size(0);
  auto out = at::empty({n, k}, plane.options());
  AT_DISPATCH_FLOATING_TYPES(plane.scalar_type(), "plane_sample_forward_cuda", [&] {
    plane_forward_kernel<scalar_t><<<blocks_for(n * k), kThreads, 0, current_stream()>>>(
        n, k, int(plane.size(0)), int(plane.size(1)), plane.size(2), plane.data_ptr<scalar_t>(),
        uv.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor plane_sample_backward_cuda(const at::Tensor& g_out, const at::Tensor& uv, int64_t h, int64_t w,
                                      int64_t c) {
  const c10::cuda::CUDAGuard guard(g_out.device());
  const int64_t n = uv.size(0), k = g_out.size(1);
  auto g_plane = at::zeros({h, w, c}, g_out.options());
  AT_DISPATCH_FLOATING_TYPES(g_out.scalar_type(), "plane_sample_backward_cuda", [&] {
    plane_backward_kernel<scalar_t><<<blocks_for(n * k), kThreads, 0, current_stream()>>>(
        n, k, int(h), int(w), c, g_out.data_ptr<scalar_t>(), uv.data_ptr<scalar_t>(), g_plane.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return g_plane;
}

}  // namespace onefield
