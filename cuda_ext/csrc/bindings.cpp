// The one binding file: argument checks, device dispatch, and the Python module. Only checks that
// need no tensor values (shapes, dtypes, devices, scalar arguments) live here: reading a value
// would sync the GPU on every call.
#include <torch/extension.h>

#include "ops.h"

namespace onefield {
namespace {

void check(const at::Tensor& t, const char* name, const at::Device& device) {
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.device() == device, name, " is on ", t.device(), " but the op runs on ", device);
}

void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
}

#ifdef WITH_CUDA
#define DISPATCH(ref, fn, ...) ((ref).is_cuda() ? fn##_cuda(__VA_ARGS__) : fn##_cpu(__VA_ARGS__))
#else
void require_cpu(const at::Tensor& t) {
  TORCH_CHECK(!t.is_cuda(), "onefield was built without CUDA kernels; use ONEFIELD_KERNELS=torch");
}
#define DISPATCH(ref, fn, ...) (require_cpu(ref), fn##_cpu(__VA_ARGS__))
#endif

Tensors ray_aabb_intersect(const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& aabb) {
  for (auto [t, name] : {std::pair{rays_o, "rays_o"}, {rays_d, "rays_d"}, {aabb, "aabb"}}) {
    check(t, name, rays_o.device());
    check_dtype(t, name, rays_o.scalar_type());
  }
  TORCH_CHECK(aabb.numel() == 6, "aabb must hold 6 values");
  return DISPATCH(rays_o, ray_aabb_intersect, rays_o, rays_d, aabb);
}

void grid_ema_update_(at::Tensor occs, const at::Tensor& indices, const at::Tensor& values, double decay) {
  check(occs, "occs", occs.device());
  check(indices, "indices", occs.device());
  check(values, "values", occs.device());
  check_dtype(occs, "occs", at::kFloat);
  check_dtype(values, "values", at::kFloat);
  check_dtype(indices, "indices", at::kLong);
  DISPATCH(occs, grid_ema_update, occs, indices, values, decay);
}

at::Tensor grid_pack_bits(const at::Tensor& occs, double threshold) {
  check(occs, "occs", occs.device());
  check_dtype(occs, "occs", at::kFloat);
  return DISPATCH(occs, grid_pack_bits, occs, threshold);
}

Tensors march_rays(const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& t_min,
                   const at::Tensor& t_max, const at::Tensor& bitfield, const std::vector<double>& aabb,
                   int64_t resolution, int64_t levels, double step_size, double max_step_size,
                   double cone_angle, int64_t max_samples) {
  for (auto [t, name] : {std::pair{rays_o, "rays_o"}, {rays_d, "rays_d"}, {t_min, "t_min"}, {t_max, "t_max"}}) {
    check(t, name, rays_o.device());
    check_dtype(t, name, at::kFloat);
  }
  check(bitfield, "bitfield", rays_o.device());
  check_dtype(bitfield, "bitfield", at::kByte);
  TORCH_CHECK(aabb.size() == 6, "aabb must hold 6 values");
  TORCH_CHECK(resolution > 0 && levels > 0 && levels <= 16, "bad grid resolution/levels");
  TORCH_CHECK(bitfield.numel() * 8 >= levels * resolution * resolution * resolution,
              "bitfield is smaller than levels * resolution^3 bits");
  TORCH_CHECK(step_size > 0, "step_size must be positive");
  GridGeom geom;
  for (int a = 0; a < 3; ++a) {
    const float lo = float(aabb[a]), hi = float(aabb[a + 3]);
    TORCH_CHECK(hi > lo, "aabb must have max > min on every axis");
    geom.center[a] = (lo + hi) * 0.5f;
    geom.half[a] = (hi - lo) * 0.5f;
    geom.inv_half[a] = 1.f / geom.half[a];
  }
  geom.cell_frac = 2.f / float(resolution);
  geom.res = int(resolution);
  geom.levels = int(levels);
  const MarchParams params{float(step_size), float(max_step_size), float(cone_angle), int(max_samples)};
  return DISPATCH(rays_o, march_rays, rays_o, rays_d, t_min, t_max, bitfield, geom, params);
}

void check_volrend(const Tensors& ts, const std::vector<const char*>& names, const at::Tensor& info) {
  for (size_t k = 0; k < ts.size(); ++k) {
    check(ts[k], names[k], ts[0].device());
    check_dtype(ts[k], names[k], ts[0].scalar_type());
  }
  check(info, "packed_info", ts[0].device());
  check_dtype(info, "packed_info", at::kLong);
  TORCH_CHECK(info.dim() == 2 && info.size(1) == 2, "packed_info must be [N, 2] (start, count)");
  // Outputs are written ray by ray with no zero-fill, so the rays must cover every sample. Checking
  // that reads packed_info on the host (a device sync per call): ops.py does it under ONEFIELD_DEBUG.
}

Tensors volrend_forward(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts,
                        const at::Tensor& t_ends, const at::Tensor& packed_info, double t_thresh) {
  check_volrend({sigmas, rgbs, t_starts, t_ends}, {"sigmas", "rgbs", "t_starts", "t_ends"}, packed_info);
  return DISPATCH(sigmas, volrend_forward, sigmas, rgbs, t_starts, t_ends, packed_info, t_thresh);
}

Tensors volrend_backward(const at::Tensor& g_weights, const at::Tensor& g_color, const at::Tensor& g_depth,
                         const at::Tensor& g_opacity, const at::Tensor& sigmas, const at::Tensor& rgbs,
                         const at::Tensor& t_starts, const at::Tensor& t_ends, const at::Tensor& weights,
                         const at::Tensor& packed_info, double t_thresh) {
  check_volrend({sigmas, rgbs, t_starts, t_ends, weights, g_weights, g_color, g_depth, g_opacity},
                {"sigmas", "rgbs", "t_starts", "t_ends", "weights", "g_weights", "g_color", "g_depth", "g_opacity"},
                packed_info);
  return DISPATCH(sigmas, volrend_backward, g_weights, g_color, g_depth, g_opacity, sigmas, rgbs,
                  t_starts, t_ends, weights, packed_info, t_thresh);
}

std::vector<HashLevel> hash_levels(const at::Tensor& x, const at::Tensor& table,
                                   const std::vector<double>& scales, const std::vector<int64_t>& resolutions) {
  check(x, "x", x.device());
  check(table, "table", x.device());
  check_dtype(table, "table", x.scalar_type());
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "x must be [N, 3]");
  TORCH_CHECK(table.dim() == 3, "table must be [levels, table_size, features]");
  const int64_t t_size = table.size(1);
  TORCH_CHECK(t_size > 0 && (t_size & (t_size - 1)) == 0, "table size must be a power of two");
  TORCH_CHECK(int64_t(scales.size()) == table.size(0) && resolutions.size() == scales.size(),
              "one scale and one resolution per level");
  std::vector<HashLevel> levels;
  for (size_t l = 0; l < scales.size(); ++l) {
    const int64_t r = resolutions[l];
    levels.push_back({float(scales[l]), int(r), r * r * r <= t_size});
  }
  return levels;
}

at::Tensor hash_encode_forward(const at::Tensor& x, const at::Tensor& table, const std::vector<double>& scales,
                               const std::vector<int64_t>& resolutions) {
  const auto levels = hash_levels(x, table, scales, resolutions);
  return DISPATCH(x, hash_encode_forward, x, table, levels);
}

Tensors hash_encode_backward(const at::Tensor& g_out, const at::Tensor& x, const at::Tensor& table,
                             const std::vector<double>& scales, const std::vector<int64_t>& resolutions,
                             bool need_x) {
  const auto levels = hash_levels(x, table, scales, resolutions);
  check(g_out, "g_out", x.device());
  check_dtype(g_out, "g_out", x.scalar_type());
  return DISPATCH(x, hash_encode_backward, g_out, x, table, levels, need_x);
}

void check_plane_args(const at::Tensor& ref, const at::Tensor& uv) {
  check(uv, "uv", ref.device());
  check_dtype(uv, "uv", ref.scalar_type());
  TORCH_CHECK(uv.dim() == 2 && uv.size(1) == 2, "uv must be [N, 2]");
}

at::Tensor plane_sample_forward(const at::Tensor& plane, const at::Tensor& uv, int64_t k) {
  check(plane, "plane", plane.device());
  check_plane_args(plane, uv);
  TORCH_CHECK(plane.dim() == 3 && plane.size(0) > 0 && plane.size(1) > 0, "plane must be [H, W, C]");
  TORCH_CHECK(k >= 1 && k <= plane.size(2), "k must be in [1, C]");
  return DISPATCH(plane, plane_sample_forward, plane, uv, k);
}

at::Tensor plane_sample_backward(const at::Tensor& g_out, const at::Tensor& uv, int64_t h, int64_t w, int64_t c) {
  check(g_out, "g_out", g_out.device());
  check_plane_args(g_out, uv);
  TORCH_CHECK(g_out.dim() == 2 && g_out.size(0) == uv.size(0) && g_out.size(1) <= c, "g_out must be [N, k <= C]");
  TORCH_CHECK(h > 0 && w > 0, "plane size must be positive");
  return DISPATCH(g_out, plane_sample_backward, g_out, uv, h, w, c);
}

void check_trivec_args(const at::Tensor& vectors, const at::Tensor& ids, const at::Tensor& local,
                       const at::Tensor& weights) {
  check(vectors, "vectors", vectors.device());
  check(ids, "ids", vectors.device());
  check(local, "local", vectors.device());
  check(weights, "weights", vectors.device());
  check_dtype(ids, "ids", at::kLong);
  check_dtype(local, "local", vectors.scalar_type());
  check_dtype(weights, "weights", vectors.scalar_type());
  TORCH_CHECK(vectors.dim() == 4 && vectors.size(0) == 3 && vectors.size(2) >= 2,
              "vectors must be [3, T, L >= 2, C]");
  TORCH_CHECK(ids.dim() == 2, "ids must be [N, S]");
  TORCH_CHECK(local.dim() == 3 && local.size(0) == ids.size(0) && local.size(1) == ids.size(1) && local.size(2) == 3,
              "local must be [N, S, 3]");
  TORCH_CHECK(weights.sizes() == ids.sizes(), "weights must be [N, S] like ids");
}

at::Tensor trivec_sample_forward(const at::Tensor& vectors, const at::Tensor& ids, const at::Tensor& local,
                                 const at::Tensor& weights, int64_t k) {
  check_trivec_args(vectors, ids, local, weights);
  TORCH_CHECK(k >= 1 && k <= vectors.size(3), "k must be in [1, C]");
  // ids < T is checked by ops.py under ONEFIELD_DEBUG: reading ids on the host syncs the device.
  return DISPATCH(vectors, trivec_sample_forward, vectors, ids, local, weights, k);
}

at::Tensor trivec_sample_backward(const at::Tensor& g_out, const at::Tensor& vectors, const at::Tensor& ids,
                                  const at::Tensor& local, const at::Tensor& weights) {
  check_trivec_args(vectors, ids, local, weights);
  check(g_out, "g_out", vectors.device());
  check_dtype(g_out, "g_out", vectors.scalar_type());
  TORCH_CHECK(g_out.dim() == 2 && g_out.size(0) == ids.size(0) && g_out.size(1) <= vectors.size(3),
              "g_out must be [N, k <= C]");
  return DISPATCH(vectors, trivec_sample_backward, g_out, vectors, ids, local, weights);
}

// Dense per-ray rows: every tensor [N, columns], one dtype and device.
void check_rows(const std::vector<std::pair<const at::Tensor&, const char*>>& ts) {
  const at::Tensor& ref = ts[0].first;
  for (auto [t, name] : ts) {
    check(t, name, ref.device());
    check_dtype(t, name, ref.scalar_type());
    TORCH_CHECK(t.dim() == 2 && t.size(0) == ref.size(0), name, " must be [N, *] with N = ", ref.size(0));
  }
}

at::Tensor pdf_resample(const at::Tensor& edges, const at::Tensor& weights, const at::Tensor& u, double padding) {
  check_rows({{u, "u"}, {edges, "edges"}, {weights, "weights"}});
  TORCH_CHECK(weights.size(1) >= 1 && edges.size(1) == weights.size(1) + 1,
              "edges must be [N, K + 1] for weights [N, K], K >= 1");
  // weights >= 0 (so the cdf is sorted) is checked by ops.py under ONEFIELD_DEBUG: it reads values.
  return DISPATCH(u, pdf_resample, edges, weights, u, padding);
}

void check_interval_weights(const at::Tensor& t_query, const at::Tensor& t_src) {
  TORCH_CHECK(t_query.size(1) >= 1, "t_query must be [N, Q + 1], Q >= 0");
  TORCH_CHECK(t_src.size(1) >= 2, "t_src must be [N, S + 1], S >= 1");
  // t_src non-decreasing is checked by ops.py under ONEFIELD_DEBUG: it reads values.
}

at::Tensor interval_weights_forward(const at::Tensor& t_query, const at::Tensor& t_src, const at::Tensor& w_src) {
  check_rows({{w_src, "w_src"}, {t_query, "t_query"}, {t_src, "t_src"}});
  check_interval_weights(t_query, t_src);
  TORCH_CHECK(t_src.size(1) == w_src.size(1) + 1, "t_src must be [N, S + 1] for w_src [N, S]");
  return DISPATCH(w_src, interval_weights_forward, t_query, t_src, w_src);
}

at::Tensor interval_weights_backward(const at::Tensor& g_out, const at::Tensor& t_query, const at::Tensor& t_src) {
  check_rows({{g_out, "g_out"}, {t_query, "t_query"}, {t_src, "t_src"}});
  check_interval_weights(t_query, t_src);
  TORCH_CHECK(t_query.size(1) == g_out.size(1) + 1, "t_query must be [N, Q + 1] for g_out [N, Q]");
  return DISPATCH(g_out, interval_weights_backward, g_out, t_query, t_src);
}

// Splats: every tensor one float dtype on one device (ids int64, radii int32), contiguous.
SplatCamera splat_camera(const std::vector<double>& w2c, double fx, double fy, double cx, double cy, int64_t width,
                         int64_t height, double near_plane, double far_plane, double eps2d, bool antialiased) {
  TORCH_CHECK(w2c.size() == 12, "w2c must hold 12 values (a row-major [3, 4] matrix)");
  TORCH_CHECK(width > 0 && height > 0, "the image must have a positive size");
  TORCH_CHECK(fx > 0 && fy > 0, "focal lengths must be positive");
  SplatCamera cam;
  for (int i = 0; i < 12; ++i) cam.w2c[i] = float(w2c[i]);
  cam.fx = float(fx), cam.fy = float(fy), cam.cx = float(cx), cam.cy = float(cy);
  cam.width = int(width), cam.height = int(height);
  cam.near_plane = float(near_plane), cam.far_plane = float(far_plane), cam.eps2d = float(eps2d);
  cam.antialiased = antialiased;
  return cam;
}

void check_gaussians(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                     const at::Tensor& opacities) {
  const int64_t n = means.size(0);
  for (auto [t, name] : {std::pair{means, "means"}, {quats, "quats"}, {scales, "scales"}, {opacities, "opacities"}}) {
    check(t, name, means.device());
    check_dtype(t, name, means.scalar_type());
    TORCH_CHECK(t.size(0) == n, name, " must have N = ", n, " rows");
  }
  TORCH_CHECK(means.dim() == 2 && means.size(1) == 3, "means must be [N, 3]");
  TORCH_CHECK(quats.dim() == 2 && quats.size(1) == 4, "quats must be [N, 4]");
  TORCH_CHECK(scales.dim() == 2 && scales.size(1) == 3, "scales must be [N, 3]");
  TORCH_CHECK(opacities.dim() == 1, "opacities must be [N]");
}

Tensors splat_project_forward(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                              const at::Tensor& opacities, const std::vector<double>& w2c, double fx, double fy,
                              double cx, double cy, int64_t width, int64_t height, double near_plane,
                              double far_plane, double eps2d, bool antialiased) {
  check_gaussians(means, quats, scales, opacities);
  const SplatCamera cam = splat_camera(w2c, fx, fy, cx, cy, width, height, near_plane, far_plane, eps2d, antialiased);
  return DISPATCH(means, splat_project_forward, means, quats, scales, opacities, cam);
}

Tensors splat_project_backward(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                               const at::Tensor& opacities, const std::vector<double>& w2c, double fx, double fy,
                               double cx, double cy, int64_t width, int64_t height, double near_plane,
                               double far_plane, double eps2d, bool antialiased, const at::Tensor& radii,
                               const at::Tensor& g_means2d, const at::Tensor& g_depths, const at::Tensor& g_conics,
                               const at::Tensor& g_opac) {
  check_gaussians(means, quats, scales, opacities);
  const int64_t n = means.size(0);
  check(radii, "radii", means.device());
  check_dtype(radii, "radii", at::kInt);
  for (auto [t, name, cols] : {std::tuple{g_means2d, "g_means2d", 2}, {g_conics, "g_conics", 3}}) {
    check(t, name, means.device());
    check_dtype(t, name, means.scalar_type());
    TORCH_CHECK(t.dim() == 2 && t.size(0) == n && t.size(1) == cols, name, " must be [N, ", cols, "]");
  }
  for (auto [t, name] : {std::pair{g_depths, "g_depths"}, {g_opac, "g_opac"}}) {
    check(t, name, means.device());
    check_dtype(t, name, means.scalar_type());
    TORCH_CHECK(t.dim() == 1 && t.size(0) == n, name, " must be [N]");
  }
  TORCH_CHECK(radii.dim() == 2 && radii.size(0) == n && radii.size(1) == 2, "radii must be [N, 2]");
  const SplatCamera cam = splat_camera(w2c, fx, fy, cx, cy, width, height, near_plane, far_plane, eps2d, antialiased);
  return DISPATCH(means, splat_project_backward, means, quats, scales, opacities, cam, radii, g_means2d, g_depths,
                  g_conics, g_opac);
}

Tensors splat_bin(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths, int64_t width,
                  int64_t height, int64_t tile) {
  TORCH_CHECK(!means2d.is_cuda(), "splat_bin runs on the CPU; on CUDA the torch twin bins");
  check(means2d, "means2d", means2d.device());
  check(radii, "radii", means2d.device());
  check(depths, "depths", means2d.device());
  check_dtype(radii, "radii", at::kInt);
  check_dtype(depths, "depths", means2d.scalar_type());
  const int64_t n = means2d.size(0);
  TORCH_CHECK(means2d.dim() == 2 && means2d.size(1) == 2, "means2d must be [N, 2]");
  TORCH_CHECK(radii.dim() == 2 && radii.size(0) == n && radii.size(1) == 2, "radii must be [N, 2]");
  TORCH_CHECK(depths.dim() == 1 && depths.size(0) == n, "depths must be [N]");
  TORCH_CHECK(width > 0 && height > 0 && tile > 0, "width, height and tile must be positive");
  return splat_bin_cpu(means2d, radii, depths, width, height, tile);
}

void check_raster(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& conics, const at::Tensor& colors,
                  const at::Tensor& opacities, const at::Tensor& background, const at::Tensor& tile_offsets,
                  const at::Tensor& flatten_ids, int64_t width, int64_t height, int64_t tile) {
  const int64_t n = means2d.size(0);
  for (auto [t, name] : {std::pair{means2d, "means2d"}, {conics, "conics"}, {colors, "colors"},
                         {opacities, "opacities"}, {background, "background"}}) {
    check(t, name, means2d.device());
    check_dtype(t, name, means2d.scalar_type());
  }
  for (auto [t, name] : {std::pair{tile_offsets, "tile_offsets"}, {flatten_ids, "flatten_ids"}}) {
    check(t, name, means2d.device());
    check_dtype(t, name, at::kLong);
  }
  TORCH_CHECK(means2d.dim() == 2 && means2d.size(1) == 2, "means2d must be [N, 2]");
  check(radii, "radii", means2d.device());
  check_dtype(radii, "radii", at::kInt);
  TORCH_CHECK(radii.dim() == 2 && radii.size(0) == n && radii.size(1) == 2, "radii must be [N, 2]");
  TORCH_CHECK(conics.dim() == 2 && conics.size(0) == n && conics.size(1) == 3, "conics must be [N, 3]");
  TORCH_CHECK(colors.dim() == 2 && colors.size(0) == n && colors.size(1) >= 1 && colors.size(1) <= 8,
              "colors must be [N, C] with 1 <= C <= 8");
  TORCH_CHECK(opacities.dim() == 1 && opacities.size(0) == n, "opacities must be [N]");
  TORCH_CHECK(background.dim() == 1 && background.size(0) == colors.size(1), "background must be [C]");
  TORCH_CHECK(width > 0 && height > 0 && tile > 0 && tile <= 16, "width and height must be positive, tile in [1, 16]");
  const int64_t n_tiles = ((width + tile - 1) / tile) * ((height + tile - 1) / tile);
  TORCH_CHECK(tile_offsets.dim() == 1 && tile_offsets.size(0) == n_tiles + 1, "tile_offsets must be [tiles + 1]");
  TORCH_CHECK(flatten_ids.dim() == 1, "flatten_ids must be [M]");
  // offsets ascending and ids < N are checked by the Python layer under ONEFIELD_DEBUG: they read values.
}

Tensors splat_rasterize_forward(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& conics,
                                const at::Tensor& colors, const at::Tensor& opacities, const at::Tensor& background,
                                const at::Tensor& tile_offsets, const at::Tensor& flatten_ids, int64_t width,
                                int64_t height, int64_t tile) {
  check_raster(means2d, radii, conics, colors, opacities, background, tile_offsets, flatten_ids, width, height, tile);
  return DISPATCH(means2d, splat_rasterize_forward, means2d, radii, conics, colors, opacities, background,
                  tile_offsets, flatten_ids, width, height, tile);
}

Tensors splat_rasterize_backward(const at::Tensor& g_image, const at::Tensor& g_alpha, const at::Tensor& means2d,
                                 const at::Tensor& radii, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
                                 const at::Tensor& background, const at::Tensor& tile_offsets,
                                 const at::Tensor& flatten_ids, const at::Tensor& trans, const at::Tensor& last,
                                 int64_t width, int64_t height, int64_t tile) {
  check_raster(means2d, radii, conics, colors, opacities, background, tile_offsets, flatten_ids, width, height, tile);
  for (auto [t, name] : {std::pair{g_image, "g_image"}, {g_alpha, "g_alpha"}, {trans, "trans"}}) {
    check(t, name, means2d.device());
    check_dtype(t, name, means2d.scalar_type());
  }
  check(last, "last", means2d.device());
  check_dtype(last, "last", at::kLong);
  TORCH_CHECK(g_image.dim() == 3 && g_image.size(0) == height && g_image.size(1) == width &&
                  g_image.size(2) == colors.size(1), "g_image must be [H, W, C]");
  for (auto [t, name] : {std::pair{g_alpha, "g_alpha"}, {trans, "trans"}, {last, "last"}})
    TORCH_CHECK(t.dim() == 2 && t.size(0) == height && t.size(1) == width, name, " must be [H, W]");
  return DISPATCH(means2d, splat_rasterize_backward, g_image, g_alpha, means2d, radii, conics, colors, opacities,
                  background, tile_offsets, flatten_ids, trans, last, width, height, tile);
}

void check_sh(const at::Tensor& means, const at::Tensor& coeffs, const at::Tensor& campos, int64_t degree) {
  for (auto [t, name] : {std::pair{means, "means"}, {coeffs, "coeffs"}, {campos, "campos"}}) {
    check(t, name, means.device());
    check_dtype(t, name, means.scalar_type());
  }
  TORCH_CHECK(means.dim() == 2 && means.size(1) == 3, "means must be [N, 3]");
  TORCH_CHECK(degree >= 0 && degree <= 3, "SH degree must be in [0, 3]");
  TORCH_CHECK(coeffs.dim() == 3 && coeffs.size(0) == means.size(0) && coeffs.size(2) == 3 &&
                  coeffs.size(1) >= (degree + 1) * (degree + 1),
              "coeffs must be [N, K, 3] with K >= (degree + 1)^2");
  TORCH_CHECK(campos.numel() == 3, "campos must hold 3 values");
}

Tensors splat_sh_forward(const at::Tensor& means, const at::Tensor& coeffs, const at::Tensor& campos, int64_t degree) {
  check_sh(means, coeffs, campos, degree);
  return DISPATCH(means, splat_sh_forward, means, coeffs, campos, degree);
}

Tensors splat_sh_backward(const at::Tensor& means, const at::Tensor& coeffs, const at::Tensor& campos, int64_t degree,
                          const at::Tensor& g_rgb) {
  check_sh(means, coeffs, campos, degree);
  check(g_rgb, "g_rgb", means.device());
  check_dtype(g_rgb, "g_rgb", means.scalar_type());
  TORCH_CHECK(g_rgb.sizes() == means.sizes(), "g_rgb must be [N, 3]");
  return DISPATCH(means, splat_sh_backward, means, coeffs, campos, degree, g_rgb);
}

Tensors splat_query(const at::Tensor& x, const at::Tensor& dirs, const at::Tensor& origin, const at::Tensor& cell,
                    const at::Tensor& dims, const at::Tensor& offsets, const at::Tensor& keys, const at::Tensor& boxes,
                    const at::Tensor& lo, const at::Tensor& hi, const at::Tensor& means, const at::Tensor& whiten,
                    const at::Tensor& peak, const at::Tensor& sh, int64_t degree) {
  const auto dtype = x.scalar_type();
  for (auto [t, name] : {std::pair{x, "x"}, {dirs, "dirs"}, {origin, "origin"}, {lo, "lo"}, {hi, "hi"},
                         {means, "means"}, {whiten, "whiten"}, {peak, "peak"}, {sh, "sh"}}) {
    check(t, name, x.device());
    check_dtype(t, name, dtype);
  }
  for (auto [t, name] : {std::pair{dims, "dims"}, {offsets, "offsets"}, {keys, "keys"}, {boxes, "boxes"}}) {
    check(t, name, x.device());
    check_dtype(t, name, at::kLong);
  }
  check(cell, "cell", x.device());
  check_dtype(cell, "cell", at::kDouble);
  const int64_t n = means.size(0), levels = cell.numel();
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "x must be [M, 3]");
  TORCH_CHECK(dirs.dim() == 2 && dirs.size(1) == 3 && (dirs.size(0) == 0 || dirs.size(0) == x.size(0)),
              "dirs must be [M, 3] (or [0, 3]: density only)");
  TORCH_CHECK(origin.numel() == 3, "origin must hold 3 values");
  TORCH_CHECK(dims.dim() == 2 && dims.size(0) == levels && dims.size(1) == 3 && offsets.numel() == levels,
              "dims must be [L, 3] and offsets [L] for L = cell.numel() levels");
  TORCH_CHECK(keys.dim() == 1 && boxes.sizes() == keys.sizes(), "keys and boxes must be [E]");
  TORCH_CHECK(means.dim() == 2 && means.size(1) == 3 && lo.sizes() == means.sizes() && hi.sizes() == means.sizes(),
              "means, lo and hi must be [N, 3]");
  TORCH_CHECK(whiten.dim() == 3 && whiten.size(0) == n && whiten.size(1) == 3 && whiten.size(2) == 3,
              "whiten must be [N, 3, 3]");
  TORCH_CHECK(peak.dim() == 1 && peak.size(0) == n, "peak must be [N]");
  TORCH_CHECK(degree >= 0 && degree <= 3, "SH degree must be in [0, 3]");
  TORCH_CHECK(sh.dim() == 3 && sh.size(0) == n && sh.size(2) == 3 && sh.size(1) >= (degree + 1) * (degree + 1),
              "sh must be [N, K, 3] with K >= (degree + 1)^2");
  return DISPATCH(x, splat_query, x, dirs, origin, cell, dims, offsets, keys, boxes, lo, hi, means, whiten, peak, sh,
                  degree);
}

bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace onefield

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace onefield;
  m.def("has_cuda", &has_cuda, "whether the CUDA kernels were compiled in");
  m.def("ray_aabb_intersect", &ray_aabb_intersect);
  m.def("grid_ema_update_", &grid_ema_update_);
  m.def("grid_pack_bits", &grid_pack_bits);
  m.def("march_rays", &march_rays);
  m.def("volrend_forward", &volrend_forward);
  m.def("volrend_backward", &volrend_backward);
  m.def("hash_encode_forward", &hash_encode_forward);
  m.def("hash_encode_backward", &hash_encode_backward);
  m.def("plane_sample_forward", &plane_sample_forward);
  m.def("plane_sample_backward", &plane_sample_backward);
  m.def("trivec_sample_forward", &trivec_sample_forward);
  m.def("trivec_sample_backward", &trivec_sample_backward);
  m.def("pdf_resample", &pdf_resample);
  m.def("interval_weights_forward", &interval_weights_forward);
  m.def("interval_weights_backward", &interval_weights_backward);
  m.def("splat_project_forward", &splat_project_forward);
  m.def("splat_project_backward", &splat_project_backward);
  m.def("splat_bin", &splat_bin);
  m.def("splat_rasterize_forward", &splat_rasterize_forward);
  m.def("splat_rasterize_backward", &splat_rasterize_backward);
  m.def("splat_sh_forward", &splat_sh_forward);
  m.def("splat_sh_backward", &splat_sh_backward);
  m.def("splat_query", &splat_query);
}
