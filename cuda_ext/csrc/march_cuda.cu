// CUDA launchers: ray/box intersection, occupancy-grid update and ray marching (one thread a ray).
#include "cuda_common.cuh"
#include "ops.h"

namespace onefield {
namespace {

template <typename T>
__global__ void ray_aabb_kernel(int64_t n, const T* o, const T* d, const T* box, T* tn, T* tf, bool* hit) {
  const int64_t i = thread_index();
  if (i < n) ray_aabb_one(o + 3 * i, d + 3 * i, box, tn + i, tf + i, hit + i);
}

// Values are >= 0, so their bit patterns order like the floats: an integer atomicMax is a float max.
__global__ void scatter_max_kernel(int64_t k, const int64_t* idx, const float* v, float* fresh) {
  const int64_t i = thread_index();
  if (i < k) atomicMax(reinterpret_cast<int*>(fresh + idx[i]), __float_as_int(v[i]));
}

__global__ void ema_kernel(int64_t m, float* occ, const float* fresh, float decay) {
  const int64_t i = thread_index();
  if (i < m) occ[i] = of_max(occ[i] * decay, fresh[i]);
}

__global__ void pack_bits_kernel(int64_t n_bytes, int64_t n, const float* occ, float thr, uint8_t* bits) {
  const int64_t byte = thread_index();
  if (byte >= n_bytes) return;
  uint8_t packed = 0;
  for (int64_t k = 0; k < 8 && 8 * byte + k < n; ++k) packed |= uint8_t(occ[8 * byte + k] > thr) << k;
  bits[byte] = packed;
}

// Two passes over the same march: counts != nullptr counts; otherwise write at packed_info starts.
__global__ void march_kernel(int64_t n, const float* o, const float* d, const float* tmin, const float* tmax,
                             const uint8_t* bits, GridGeom geom, MarchParams params, int64_t* counts,
                             const int64_t* info, float* t0, float* t1, int64_t* ray_indices) {
  const int64_t i = thread_index();
  if (i >= n) return;
  if (counts != nullptr) {
    counts[i] = march_one(o + 3 * i, d + 3 * i, tmin[i], tmax[i], bits, geom, params, CountOnly{});
    return;
  }
  const int64_t s = info[2 * i];
  march_one(o + 3 * i, d + 3 * i, tmin[i], tmax[i], bits, geom, params, WriteAt{t0 + s, t1 + s});
  for (int64_t k = 0; k < info[2 * i + 1]; ++k) ray_indices[s + k] = i;
}

}  // namespace

Tensors ray_aabb_intersect_cuda(const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& aabb) {
  const c10::cuda::CUDAGuard guard(rays_o.device());
  const int64_t n = rays_o.size(0);
  auto t_near = at::empty({n}, rays_o.options());
  auto t_far = at::empty({n}, rays_o.options());
  auto hit = at::empty({n}, rays_o.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "ray_aabb_intersect_cuda", [&] {
    ray_aabb_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        n, rays_o.data_ptr<scalar_t>(), rays_d.data_ptr<scalar_t>(), aabb.data_ptr<scalar_t>(),
        t_near.data_ptr<scalar_t>(), t_far.data_ptr<scalar_t>(), hit.data_ptr<bool>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {t_near, t_far, hit};
}

void grid_ema_update_cuda(at::Tensor occs, const at::Tensor& indices, const at::Tensor& values, double decay) {
  const c10::cuda::CUDAGuard guard(occs.device());
  auto fresh = at::zeros_like(occs);
  const int64_t k = indices.numel(), m = occs.numel();
  scatter_max_kernel<<<blocks_for(k), kThreads, 0, current_stream()>>>(
      k, indices.data_ptr<int64_t>(), values.data_ptr<float>(), fresh.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  ema_kernel<<<blocks_for(m), kThreads, 0, current_stream()>>>(m, occs.data_ptr<float>(), fresh.data_ptr<float>(),
                                                               float(decay));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor grid_pack_bits_cuda(const at::Tensor& occs, double threshold) {
  const c10::cuda::CUDAGuard guard(occs.device());
  const int64_t n = occs.numel(), n_bytes = (n + 7) / 8;
  auto bits = at::empty({n_bytes}, occs.options().dtype(at::kByte));
  pack_bits_kernel<<<blocks_for(n_bytes), kThreads, 0, current_stream()>>>(
      n_bytes, n, occs.data_ptr<float>(), float(threshold), bits.data_ptr<uint8_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return bits;
}

Tensors march_rays_cuda(const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& t_min,
                        const at::Tensor& t_max, const at::Tensor& bitfield, const GridGeom& geom,
                        const MarchParams& params) {
  const c10::cuda::CUDAGuard guard(rays_o.device());
  const int64_t n = rays_o.size(0);
  const float* o = rays_o.data_ptr<float>();
  const float* d = rays_d.data_ptr<float>();
  const float* tmin = t_min.data_ptr<float>();
  const float* tmax = t_max.data_ptr<float>();
  const uint8_t* bits = bitfield.data_ptr<uint8_t>();
  auto counts = at::empty({n}, rays_o.options().dtype(at::kLong));
  march_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(n, o, d, tmin, tmax, bits, geom, params,
                                                                 counts.data_ptr<int64_t>(), nullptr,
                                                                 nullptr, nullptr, nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto [packed_info, ray_indices, t_starts, t_ends] = PackedSamples::allocate(counts, rays_o.options());
  march_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(
      n, o, d, tmin, tmax, bits, geom, params, nullptr, packed_info.data_ptr<int64_t>(),
      t_starts.data_ptr<float>(), t_ends.data_ptr<float>(), ray_indices.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {packed_info, ray_indices, t_starts, t_ends};
}

}  // namespace onefield
