// CUDA launchers for Strivec's local tri-vector sampling: one thread per (point, component),
// looping over the slots; the vector gradient is scattered with atomicAdd.
#include "cuda_common.cuh"
#include "ops.h"
#include "trivec_core.h"

namespace onefield {
namespace {

template <typename T>
__global__ void trivec_forward_kernel(int64_t n, int64_t slots, int64_t k, TrivecShape shape, const T* vec,
                                      const int64_t* ids, const T* local, const T* weights, T* out) {
  const int64_t tid = thread_index();
  if (tid >= n * k) return;
  const int64_t i = tid / k, r = tid % k;
  T acc = T(0);
  for (int64_t s = 0; s < slots; ++s) {
    const int64_t t = ids[i * slots + s];
    if (t < 0) continue;
    T prod = weights[i * slots + s];
    for (int a = 0; a < 3; ++a) {
      int64_t i0;
      T f;
      trivec_texel(local[(i * slots + s) * 3 + a], shape.length, i0, f);
      const T* row = vec + trivec_row(shape, a, t, i0);
      prod *= row[r] * (T(1) - f) + row[r + shape.channels] * f;
    }
    acc += prod;
  }
  out[tid] = acc;
}

template <typename T>
__global__ void trivec_backward_kernel(int64_t n, int64_t slots, int64_t k, TrivecShape shape, const T* vec,
                                       const int64_t* ids, const T* local, const T* weights, const T* g_out,
                                       T* g_vec) {
  const int64_t tid = thread_index();
  if (tid >= n * k) return;
  const int64_t i = tid / k, r = tid % k;
  const T g = g_out[tid];
  for (int64_t s = 0; s < slots; ++s) {
    const int64_t t = ids[i * slots + s];
    if (t < 0) continue;
    int64_t row[3];
    T f[3], val[3];
    for (int a = 0; a < 3; ++a) {
      int64_t i0;
      trivec_texel(local[(i * slots + s) * 3 + a], shape.length, i0, f[a]);
      row[a] = trivec_row(shape, a, t, i0);
      val[a] = vec[row[a] + r] * (T(1) - f[a]) + vec[row[a] + r + shape.channels] * f[a];
    }
    const T ws = weights[i * slots + s] * g;
    for (int a = 0; a < 3; ++a) {
      const T ga = ws * val[(a + 1) % 3] * val[(a + 2) % 3];
      atomicAdd(g_vec + row[a] + r, ga * (T(1) - f[a]));
      atomicAdd(g_vec + row[a] + r + shape.channels, ga * f[a]);
    }
  }
}

}  // namespace

at::Tensor trivec_sample_forward_cuda(const at::Tensor& vectors, const at::Tensor& ids, const at::Tensor& local,
                                      const at::Tensor& weights, int64_t k) {
  const c10::cuda::CUDAGuard guard(vectors.device());
  const int64_t n = ids.size(0);
  const TrivecShape shape{vectors.size(1), vectors.size(2), vectors.size(3)};
  auto out = at::empty({n, k}, vectors.options());
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "trivec_sample_forward_cuda", [&] {
    trivec_forward_kernel<scalar_t><<<blocks_for(n * k), kThreads, 0, current_stream()>>>(
        n, ids.size(1), k, shape, vectors.data_ptr<scalar_t>(), ids.data_ptr<int64_t>(), local.data_ptr<scalar_t>(),
        weights.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor trivec_sample_backward_cuda(const at::Tensor& g_out, const at::Tensor& vectors, const at::Tensor& ids,
                                       const at::Tensor& local, const at::Tensor& weights) {
  const c10::cuda::CUDAGuard guard(vectors.device());
  const int64_t n = ids.size(0), k = g_out.size(1);
  const TrivecShape shape{vectors.size(1), vectors.size(2), vectors.size(3)};
  auto g_vec = at::zeros_like(vectors);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "trivec_sample_backward_cuda", [&] {
    trivec_backward_kernel<scalar_t><<<blocks_for(n * k), kThreads, 0, current_stream()>>>(
        n, ids.size(1), k, shape, vectors.data_ptr<scalar_t>(), ids.data_ptr<int64_t>(), local.data_ptr<scalar_t>(),
        weights.data_ptr<scalar_t>(), g_out.data_ptr<scalar_t>(), g_vec.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return g_vec;
}

}  // namespace onefield
