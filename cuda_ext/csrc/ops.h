// Declarations of the native ops. bindings.cpp dispatches on the tensors' device; every op has a
// pure-torch twin with the same name in onefield/cuda_ext/reference.py.
#pragma once

#include <ATen/ATen.h>
#include <vector>

#include "hashgrid_core.h"
#include "march_core.h"
#include "splat_core.h"

namespace onefield {

using Tensors = std::vector<at::Tensor>;

// Output of marching, allocated from per-ray sample counts [N] (defined in march.cpp).
struct PackedSamples {
  at::Tensor packed_info;  // [N, 2] int64 (start, count)
  at::Tensor ray_indices;  // [S] int64
  at::Tensor t_starts;     // [S]
  at::Tensor t_ends;       // [S]
  static PackedSamples allocate(const at::Tensor& counts, const at::TensorOptions& float_options);
};

#define ONEFIELD_DECLARE_OPS(dev)                                                                 \
  Tensors ray_aabb_intersect_##dev(const at::Tensor& rays_o, const at::Tensor& rays_d,             \
                                   const at::Tensor& aabb);                                        \
  void grid_ema_update_##dev(at::Tensor occs, const at::Tensor& indices,                           \
                             const at::Tensor& values, double decay);                              \
  at::Tensor grid_pack_bits_##dev(const at::Tensor& occs, double threshold);                       \
  Tensors march_rays_##dev(const at::Tensor& rays_o, const at::Tensor& rays_d,                     \
                           const at::Tensor& t_min, const at::Tensor& t_max,                       \
                           const at::Tensor& bitfield, const GridGeom& geom,                       \
                           const MarchParams& params);                                             \
  Tensors volrend_forward_##dev(const at::Tensor& sigmas, const at::Tensor& rgbs,                  \
                                const at::Tensor& t_starts, const at::Tensor& t_ends,              \
                                const at::Tensor& packed_info, double t_thresh);                   \
  Tensors volrend_backward_##dev(const at::Tensor& g_weights, const at::Tensor& g_color,           \
                                 const at::Tensor& g_depth, const at::Tensor& g_opacity,           \
                                 const at::Tensor& sigmas, const at::Tensor& rgbs,                 \
                                 const at::Tensor& t_starts, const at::Tensor& t_ends,             \
                                 const at::Tensor& weights, const at::Tensor& packed_info,         \
                                 double t_thresh);                                                 \
  at::Tensor hash_encode_forward_##dev(const at::Tensor& x, const at::Tensor& table,               \
                                       const std::vector<HashLevel>& levels);                      \
  Tensors hash_encode_backward_##dev(const at::Tensor& g_out, const at::Tensor& x,                 \
                                     const at::Tensor& table,                                      \
                                     const std::vector<HashLevel>& levels, bool need_x);            \
  at::Tensor plane_sample_forward_##dev(const at::Tensor& plane, const at::Tensor& uv, int64_t k);  \
  at::Tensor plane_sample_backward_##dev(const at::Tensor& g_out, const at::Tensor& uv, int64_t h,  \
                                         int64_t w, int64_t c);                                    \
  at::Tensor trivec_sample_forward_##dev(const at::Tensor& vectors, const at::Tensor& ids,          \
                                         const at::Tensor& local, const at::Tensor& weights,       \
                                         int64_t k);                                               \
  at::Tensor trivec_sample_backward_##dev(const at::Tensor& g_out, const at::Tensor& vectors,      \
                                          const at::Tensor& ids, const at::Tensor& local,          \
                                          const at::Tensor& weights);                              \
  at::Tensor pdf_resample_##dev(const at::Tensor& edges, const at::Tensor& weights,                \
                                const at::Tensor& u, double padding);                              \
  at::Tensor interval_weights_forward_##dev(const at::Tensor& t_query, const at::Tensor& t_src,    \
                                            const at::Tensor& w_src);                              \
  at::Tensor interval_weights_backward_##dev(const at::Tensor& g_out, const at::Tensor& t_query,   \
                                             const at::Tensor& t_src);                             \
  Tensors splat_project_forward_##dev(const at::Tensor& means, const at::Tensor& quats,            \
                                      const at::Tensor& scales, const at::Tensor& opacities,       \
                                      const SplatCamera& cam);                                     \
  Tensors splat_project_backward_##dev(const at::Tensor& means, const at::Tensor& quats,           \
                                       const at::Tensor& scales, const at::Tensor& opacities,      \
                                       const SplatCamera& cam, const at::Tensor& radii,            \
                                       const at::Tensor& g_means2d, const at::Tensor& g_depths,    \
                                       const at::Tensor& g_conics, const at::Tensor& g_opac);      \
  Tensors splat_rasterize_forward_##dev(const at::Tensor& means2d, const at::Tensor& radii,        \
                                        const at::Tensor& conics, const at::Tensor& colors,         \
                                        const at::Tensor& opacities,                              \
                                        const at::Tensor& background,                              \
                                        const at::Tensor& tile_offsets,                            \
                                        const at::Tensor& flatten_ids, int64_t width,              \
                                        int64_t height, int64_t tile);                             \
  Tensors splat_rasterize_backward_##dev(const at::Tensor& g_image, const at::Tensor& g_alpha,     \
                                         const at::Tensor& means2d, const at::Tensor& radii,       \
                                         const at::Tensor& conics, const at::Tensor& colors,       \
                                         const at::Tensor& opacities,                              \
                                         const at::Tensor& background,                             \
                                         const at::Tensor& tile_offsets,                           \
                                         const at::Tensor& flatten_ids, const at::Tensor& trans,   \
                                         const at::Tensor& last, int64_t width, int64_t height,    \
                                         int64_t tile);                                            \
  Tensors splat_sh_forward_##dev(const at::Tensor& means, const at::Tensor& coeffs,                \
                                 const at::Tensor& campos, int64_t degree);                        \
  Tensors splat_sh_backward_##dev(const at::Tensor& means, const at::Tensor& coeffs,               \
                                  const at::Tensor& campos, int64_t degree, const at::Tensor& g_rgb); \
  Tensors splat_query_##dev(const at::Tensor& x, const at::Tensor& dirs, const at::Tensor& origin,   \
                            const at::Tensor& cell, const at::Tensor& dims,                        \
                            const at::Tensor& offsets, const at::Tensor& keys,                     \
                            const at::Tensor& boxes, const at::Tensor& lo, const at::Tensor& hi,   \
                            const at::Tensor& means, const at::Tensor& whiten,                     \
                            const at::Tensor& peak, const at::Tensor& sh, int64_t degree);

ONEFIELD_DECLARE_OPS(cpu)
// The lattice tables of splat_query as the core's view (the tensors outlive the call).
inline SplatLatticeView splat_lattice_view(const at::Tensor& cell, const at::Tensor& dims, const at::Tensor& offsets,
                                           const at::Tensor& keys, const at::Tensor& boxes) {
  return {cell.data_ptr<double>(), dims.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(), keys.data_ptr<int64_t>(),
          boxes.data_ptr<int64_t>(), int(cell.numel()), keys.numel()};
}
// Tile binning runs natively on the CPU only: on CUDA the torch twin's radix sort is the fast path
// (it is what gsplat does with cub).
Tensors splat_bin_cpu(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths, int64_t width,
                      int64_t height, int64_t tile);
#ifdef WITH_CUDA
ONEFIELD_DECLARE_OPS(cuda)
#endif

}  // namespace onefield
