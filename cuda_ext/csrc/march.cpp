// CPU launchers: ray/box intersection, occupancy-grid update and ray marching.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "ops.h"

namespace onefield {

namespace {
constexpr int64_t kGrain = 256;
constexpr int64_t kRayBlock = 64;
}

Tensors ray_aabb_intersect_cpu(const at::Tensor& rays_o, const at::Tensor& rays_d,
                               const at::Tensor& aabb) {
  const int64_t n = rays_o.size(0);
  auto t_near = at::empty({n}, rays_o.options());
  auto t_far = at::empty({n}, rays_o.options());
  auto hit = at::empty({n}, rays_o.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "ray_aabb_intersect_cpu", [&] {
    const scalar_t* o = rays_o.data_ptr<scalar_t>();
    const scalar_t* d = rays_d.data_ptr<scalar_t>();
    const scalar_t* box = aabb.data_ptr<scalar_t>();
    scalar_t* tn = t_near.data_ptr<scalar_t>();
    scalar_t* tf = t_far.data_ptr<scalar_t>();
    bool* h = hit.data_ptr<bool>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) ray_aabb_one(o + 3 * i, d + 3 * i, box, tn + i, tf + i, h + i);
    });
  });
  return {t_near, t_far, hit};
}

void grid_ema_update_cpu(at::Tensor occs, const at::Tensor& indices, const at::Tensor& values,
                         double decay) {
  // Scatter-max of this round's values (duplicates resolved by max, so order never matters),
  // then every cell decays: occ = max(occ * decay, new).
  auto fresh = at::zeros_like(occs);
  float* f = fresh.data_ptr<float>();
  const int64_t* idx = indices.data_ptr<int64_t>();
  const float* v = values.data_ptr<float>();
  for (int64_t k = 0; k < indices.numel(); ++k) f[idx[k]] = of_max(f[idx[k]], v[k]);
  float* occ = occs.data_ptr<float>();
  const float dec = float(decay);
  at::parallel_for(0, occs.numel(), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) occ[i] = of_max(occ[i] * dec, f[i]);
  });
}

at::Tensor grid_pack_bits_cpu(const at::Tensor& occs, double threshold) {
  const int64_t n = occs.numel();
  auto bits = at::empty({(n + 7) / 8}, occs.options().dtype(at::kByte));
  const float* occ = occs.data_ptr<float>();
  uint8_t* b = bits.data_ptr<uint8_t>();
  const float thr = float(threshold);
  at::parallel_for(0, bits.numel(), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t byte = begin; byte < end; ++byte) {
      uint8_t packed = 0;
      for (int64_t k = 0; k < 8 && 8 * byte + k < n; ++k) packed |= uint8_t(occ[8 * byte + k] > thr) << k;
      b[byte] = packed;
    }
  });
  return bits;
}

PackedSamples PackedSamples::allocate(const at::Tensor& counts, const at::TensorOptions& float_options) {
  const auto ends = counts.cumsum(0);
  const int64_t total = counts.numel() > 0 ? ends[-1].item<int64_t>() : 0;
  return {at::stack({ends - counts, counts}, 1).contiguous(),
          at::empty({total}, float_options.dtype(at::kLong)), at::empty({total}, float_options),
          at::empty({total}, float_options)};
}

Tensors march_rays_cpu(const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& t_min,
                       const at::Tensor& t_max, const at::Tensor& bitfield, const GridGeom& geom,
                       const MarchParams& params) {
  const int64_t n = rays_o.size(0);
  const float* o = rays_o.data_ptr<float>();
  const float* d = rays_d.data_ptr<float>();
  const float* tmin = t_min.data_ptr<float>();
  const float* tmax = t_max.data_ptr<float>();
  const uint8_t* bits = bitfield.data_ptr<uint8_t>();

  // One march per ray: each block of rays appends its samples to its own buffers, which are then
  // copied to their packed positions (half the work of a count pass followed by a write pass).
  const int64_t n_blocks = (n + kRayBlock - 1) / kRayBlock;
  std::vector<std::vector<float>> block_t0(n_blocks), block_t1(n_blocks);
  auto counts = at::empty({n}, rays_o.options().dtype(at::kLong));
  int64_t* cnt = counts.data_ptr<int64_t>();
  at::parallel_for(0, n_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      auto& t0v = block_t0[b];
      auto& t1v = block_t1[b];
      auto append = [&](int, float a, float c) {
        t0v.push_back(a);
        t1v.push_back(c);
      };
      for (int64_t i = b * kRayBlock; i < std::min(n, (b + 1) * kRayBlock); ++i)
        cnt[i] = march_one(o + 3 * i, d + 3 * i, tmin[i], tmax[i], bits, geom, params, append);
    }
  });
  auto [packed_info, ray_indices, t_starts, t_ends] = PackedSamples::allocate(counts, rays_o.options());
  const int64_t* info = packed_info.data_ptr<int64_t>();
  float* t0 = t_starts.data_ptr<float>();
  float* t1 = t_ends.data_ptr<float>();
  int64_t* ri = ray_indices.data_ptr<int64_t>();
  at::parallel_for(0, n_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * kRayBlock, s = info[2 * first];
      std::copy(block_t0[b].begin(), block_t0[b].end(), t0 + s);
      std::copy(block_t1[b].begin(), block_t1[b].end(), t1 + s);
      for (int64_t i = first; i < std::min(n, first + kRayBlock); ++i)
        std::fill_n(ri + info[2 * i], info[2 * i + 1], i);
    }
  });
  return {packed_info, ray_indices, t_starts, t_ends};
}

}  // namespace onefield
