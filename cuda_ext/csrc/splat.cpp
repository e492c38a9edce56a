// CPU launchers of the splat ops: projection and its backward (Gaussians spread over threads), tile
// binning (count, prefix sum, fill, then each tile's list sorted by depth), compositing and its
// backward (16x16 tiles spread over threads; the backward adds per-Gaussian gradients into one
// buffer per thread, summed at the end, so no two threads write one address).
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "ops.h"
#include "splat_core.h"

namespace onefield {

Tensors splat_project_forward_cpu(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                  const at::Tensor& opacities, const SplatCamera& cam) {
  const int64_t n = means.size(0);
  auto radii = at::zeros({n, 2}, means.options().dtype(at::kInt));
  auto means2d = at::zeros({n, 2}, means.options());
  auto depths = at::zeros({n}, means.options());
  auto conics = at::zeros({n, 3}, means.options());
  auto opac = at::zeros({n}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_project_forward_cpu", [&] {
    const scalar_t* mu = means.data_ptr<scalar_t>();
    const scalar_t* q = quats.data_ptr<scalar_t>();
    const scalar_t* sc = scales.data_ptr<scalar_t>();
    const scalar_t* op = opacities.data_ptr<scalar_t>();
    int32_t* rad = radii.data_ptr<int32_t>();
    scalar_t* m2 = means2d.data_ptr<scalar_t>();
    scalar_t* dep = depths.data_ptr<scalar_t>();
    scalar_t* con = conics.data_ptr<scalar_t>();
    scalar_t* oo = opac.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      SplatProjection<scalar_t> s;
      for (int64_t g = begin; g < end; ++g) {
        if (!splat_project_one(mu + 3 * g, q + 4 * g, sc + 3 * g, op[g], cam, s)) continue;
        rad[2 * g] = s.radius[0];
        rad[2 * g + 1] = s.radius[1];
        m2[2 * g] = s.mean2d[0];
        m2[2 * g + 1] = s.mean2d[1];
        dep[g] = s.p[2];
        for (int k = 0; k < 3; ++k) con[3 * g + k] = s.conic[k];
        oo[g] = s.opacity;
      }
    });
  });
  return {radii, means2d, depths, conics, opac};
}

Tensors splat_project_backward_cpu(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                   const at::Tensor& opacities, const SplatCamera& cam, const at::Tensor& radii,
                                   const at::Tensor& g_means2d, const at::Tensor& g_depths,
                                   const at::Tensor& g_conics, const at::Tensor& g_opac) {
  const int64_t n = means.size(0);
  auto g_means = at::zeros_like(means);
  auto g_quats = at::zeros_like(quats);
  auto g_scales = at::zeros_like(scales);
  auto g_opacities = at::zeros_like(opacities);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_project_backward_cpu", [&] {
    const scalar_t* mu = means.data_ptr<scalar_t>();
    const scalar_t* q = quats.data_ptr<scalar_t>();
    const scalar_t* sc = scales.data_ptr<scalar_t>();
    const scalar_t* op = opacities.data_ptr<scalar_t>();
    const int32_t* rad = radii.data_ptr<int32_t>();
    const scalar_t* gm2 = g_means2d.data_ptr<scalar_t>();
    const scalar_t* gd = g_depths.data_ptr<scalar_t>();
    const scalar_t* gc = g_conics.data_ptr<scalar_t>();
    const scalar_t* go = g_opac.data_ptr<scalar_t>();
    scalar_t* gmu = g_means.data_ptr<scalar_t>();
    scalar_t* gq = g_quats.data_ptr<scalar_t>();
    scalar_t* gs = g_scales.data_ptr<scalar_t>();
    scalar_t* gop = g_opacities.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      SplatProjection<scalar_t> s;
      for (int64_t g = begin; g < end; ++g) {
        if (rad[2 * g] == 0 && rad[2 * g + 1] == 0) continue;
        if (!splat_project_one(mu + 3 * g, q + 4 * g, sc + 3 * g, op[g], cam, s)) continue;
        splat_project_backward_one(sc + 3 * g, cam, s, gm2 + 2 * g, gd[g], gc + 3 * g, go[g], gmu + 3 * g,
                                   gq + 4 * g, gs + 3 * g, gop + g);
      }
    });
  });
  return {g_means, g_quats, g_scales, g_opacities};
}

Tensors splat_sh_forward_cpu(const at::Tensor& means, const at::Tensor& coeffs, const at::Tensor& campos,
                             int64_t degree) {
  const int64_t n = means.size(0), K = coeffs.size(1);
  auto rgb = at::empty({n, 3}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_sh_forward_cpu", [&] {
    const scalar_t* mu = means.data_ptr<scalar_t>();
    const scalar_t* co = coeffs.data_ptr<scalar_t>();
    const scalar_t* cam = campos.data_ptr<scalar_t>();
    scalar_t* out = rgb.data_ptr<scalar_t>();
    at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g)
        splat_sh_forward_one(mu + 3 * g, co + 3 * K * g, int(degree), cam, out + 3 * g);
    });
  });
  return {rgb};
}

Tensors splat_sh_backward_cpu(const at::Tensor& means, const at::Tensor& coeffs, const at::Tensor& campos,
                              int64_t degree, const at::Tensor& g_rgb) {
  const int64_t n = means.size(0), K = coeffs.size(1);
  auto g_coeffs = at::empty_like(coeffs);
  auto g_means = at::empty_like(means);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_sh_backward_cpu", [&] {
    const scalar_t* mu = means.data_ptr<scalar_t>();
    const scalar_t* co = coeffs.data_ptr<scalar_t>();
    const scalar_t* cam = campos.data_ptr<scalar_t>();
    const scalar_t* gr = g_rgb.data_ptr<scalar_t>();
    scalar_t* gc = g_coeffs.data_ptr<scalar_t>();
    scalar_t* gm = g_means.data_ptr<scalar_t>();
    at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g)
        splat_sh_backward_one(mu + 3 * g, co + 3 * K * g, int(K), int(degree), cam, gr + 3 * g, gc + 3 * K * g,
                              gm + 3 * g);
    });
  });
  return {g_coeffs, g_means};
}

// Tile range of a Gaussian: [x0, x1) x [y0, y1) in tiles, computed as the torch twin does.
template <typename T>
static void splat_tile_rect(const T* mean2d, const int32_t* radius, int64_t tile, int64_t tiles_x, int64_t tiles_y,
                            int64_t rect[4]) {
  const T tm_x = mean2d[0] / T(tile), tm_y = mean2d[1] / T(tile);
  const T tr_x = T(radius[0]) / T(tile), tr_y = T(radius[1]) / T(tile);
  rect[0] = std::clamp<int64_t>(int64_t(std::floor(tm_x - tr_x)), 0, tiles_x);
  rect[1] = std::clamp<int64_t>(int64_t(std::ceil(tm_x + tr_x)), 0, tiles_x);
  rect[2] = std::clamp<int64_t>(int64_t(std::floor(tm_y - tr_y)), 0, tiles_y);
  rect[3] = std::clamp<int64_t>(int64_t(std::ceil(tm_y + tr_y)), 0, tiles_y);
}

Tensors splat_bin_cpu(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths, int64_t width,
                      int64_t height, int64_t tile) {
  const int64_t n = means2d.size(0);
  const int64_t tiles_x = (width + tile - 1) / tile, tiles_y = (height + tile - 1) / tile;
  const int64_t n_tiles = tiles_x * tiles_y;
  auto tile_offsets = at::zeros({n_tiles + 1}, means2d.options().dtype(at::kLong));
  int64_t* off = tile_offsets.data_ptr<int64_t>();
  const int32_t* rad = radii.data_ptr<int32_t>();
  at::Tensor ids;
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "splat_bin_cpu", [&] {
    const scalar_t* m2 = means2d.data_ptr<scalar_t>();
    const scalar_t* dep = depths.data_ptr<scalar_t>();
    int64_t rect[4];
    for (int64_t g = 0; g < n; ++g) {  // count per tile
      if (rad[2 * g] <= 0 || rad[2 * g + 1] <= 0) continue;
      splat_tile_rect(m2 + 2 * g, rad + 2 * g, tile, tiles_x, tiles_y, rect);
      for (int64_t ty = rect[2]; ty < rect[3]; ++ty)
        for (int64_t tx = rect[0]; tx < rect[1]; ++tx) ++off[ty * tiles_x + tx + 1];
    }
    std::partial_sum(off, off + n_tiles + 1, off);
    ids = at::empty({off[n_tiles]}, tile_offsets.options());
    int64_t* out = ids.data_ptr<int64_t>();
    std::vector<int64_t> fill(off, off + n_tiles);
    for (int64_t g = 0; g < n; ++g) {  // fill in Gaussian order, so equal depths keep it
      if (rad[2 * g] <= 0 || rad[2 * g + 1] <= 0) continue;
      splat_tile_rect(m2 + 2 * g, rad + 2 * g, tile, tiles_x, tiles_y, rect);
      for (int64_t ty = rect[2]; ty < rect[3]; ++ty)
        for (int64_t tx = rect[0]; tx < rect[1]; ++tx) out[fill[ty * tiles_x + tx]++] = g;
    }
    at::parallel_for(0, n_tiles, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t)
        std::stable_sort(out + off[t], out + off[t + 1], [&](int64_t i, int64_t j) { return dep[i] < dep[j]; });
    });
  });
  return {tile_offsets, ids};
}

namespace {

// Tiles differ in work by 100x (a few hold the object): they are handed out one at a time (an OpenMP
// dynamic schedule), not in at::parallel_for's equal static chunks. f(thread, tile).
template <typename F> void for_each_tile(int64_t n_tiles, const F& f) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
  for (int64_t t = 0; t < n_tiles; ++t) f(int64_t(omp_get_thread_num()), t);
}

// The pixels of tile t: [x0, x1) x [y0, y1).
struct TileGrid {
  int64_t width, height, tile, tiles_x;
  void pixels(int64_t t, int64_t& x0, int64_t& x1, int64_t& y0, int64_t& y1) const {
    x0 = (t % tiles_x) * tile;
    y0 = (t / tiles_x) * tile;
    x1 = std::min(x0 + tile, width);
    y1 = std::min(y0 + tile, height);
  }
};

// The pixels of [x0, x1) x [y0, y1) that may lie in a Gaussian's radius box (one pixel of slack on
// each side: `splat_alpha` makes the exact test), as [bx0, bx1) x [by0, by1).
template <typename T>
__attribute__((always_inline)) inline void box_pixels(const T* mean2d, const int32_t* radius, int64_t x0, int64_t x1, int64_t y0, int64_t y1,
                int64_t& bx0, int64_t& bx1, int64_t& by0, int64_t& by1) {
  bx0 = std::max(x0, int64_t(std::floor(mean2d[0] - T(radius[0]))) - 1);
  bx1 = std::min(x1, int64_t(std::ceil(mean2d[0] + T(radius[0]))) + 1);
  by0 = std::max(y0, int64_t(std::floor(mean2d[1] - T(radius[1]))) - 1);
  by1 = std::min(y1, int64_t(std::ceil(mean2d[1] + T(radius[1]))) + 1);
}

}  // namespace

// The CPU sweeps a tile Gaussian by Gaussian (front to back), each over the pixels of its box, with
// the pixels' running state in arrays: per pixel the same Gaussians in the same order meet the same
// float operations as in the per-pixel walk of the CUDA kernel (`splat_composite_one`).
Tensors splat_rasterize_forward_cpu(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& conics,
                                    const at::Tensor& colors, const at::Tensor& opacities,
                                    const at::Tensor& background, const at::Tensor& tile_offsets,
                                    const at::Tensor& flatten_ids, int64_t width, int64_t height, int64_t tile) {
  const int64_t C = colors.size(1);
  const TileGrid grid{width, height, tile, (width + tile - 1) / tile};
  const int64_t n_tiles = tile_offsets.size(0) - 1;
  auto image = at::empty({height, width, C}, colors.options());
  auto trans = at::empty({height, width}, colors.options());
  auto last = at::empty({height, width}, tile_offsets.options());
  const int64_t* off = tile_offsets.data_ptr<int64_t>();
  const int64_t* ids = flatten_ids.data_ptr<int64_t>();
  const int32_t* rad = radii.data_ptr<int32_t>();
  int64_t* lst = last.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "splat_rasterize_forward_cpu", [&] {
    const scalar_t* m2 = means2d.data_ptr<scalar_t>();
    const scalar_t* con = conics.data_ptr<scalar_t>();
    const scalar_t* col = colors.data_ptr<scalar_t>();
    const scalar_t* op = opacities.data_ptr<scalar_t>();
    const scalar_t* bg = background.data_ptr<scalar_t>();
    scalar_t* img = image.data_ptr<scalar_t>();
    scalar_t* tr = trans.data_ptr<scalar_t>();
    for_each_tile(n_tiles, [&](int64_t, int64_t t) {
      uint8_t done[256];  // tile <= 16
      int64_t x0, x1, y0, y1;
      grid.pixels(t, x0, x1, y0, y1);
      for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x) {
          const int64_t pix = y * width + x;
          tr[pix] = scalar_t(1);
          lst[pix] = off[t];
          for (int64_t k = 0; k < C; ++k) img[C * pix + k] = scalar_t(0);
        }
      std::fill(done, done + tile * tile, 0);
      int64_t live = (x1 - x0) * (y1 - y0);
      for (int64_t e = off[t]; e < off[t + 1] && live > 0; ++e) {
        const int64_t g = ids[e];
        int64_t bx0, bx1, by0, by1;
        box_pixels(m2 + 2 * g, rad + 2 * g, x0, x1, y0, y1, bx0, bx1, by0, by1);
        if (by0 >= by1 || bx0 >= bx1) continue;
        for (int64_t y = by0; y < by1; ++y) {
          for (int64_t x = bx0; x < bx1; ++x) {
            const int64_t local = (y - y0) * tile + (x - x0), pix = y * width + x;
            if (done[local]) continue;
            scalar_t dx, dy, vis;
            const scalar_t alpha = splat_alpha(m2 + 2 * g, rad + 2 * g, con + 3 * g, op[g],
                                               scalar_t(x) + scalar_t(0.5), scalar_t(y) + scalar_t(0.5), dx, dy, vis);
            if (alpha < scalar_t(0)) continue;
            if (!splat_blend(alpha, col + C * g, int(C), tr[pix], img + C * pix)) {
              done[local] = 1;
              --live;
              continue;
            }
            lst[pix] = e + 1;
          }
        }
      }
      for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x) {
          const int64_t pix = y * width + x;
          for (int64_t k = 0; k < C; ++k) img[C * pix + k] += tr[pix] * bg[k];
        }
    });
  });
  return {image, trans, last};
}

// Backward: the same sweep back to front; each Gaussian's gradients are summed over its pixels in
// registers and added once per tile into the thread's own buffer (summed over threads at the end).
Tensors splat_rasterize_backward_cpu(const at::Tensor& g_image, const at::Tensor& g_alpha, const at::Tensor& means2d,
                                     const at::Tensor& radii, const at::Tensor& conics, const at::Tensor& colors,
                                     const at::Tensor& opacities, const at::Tensor& background,
                                     const at::Tensor& tile_offsets, const at::Tensor& flatten_ids,
                                     const at::Tensor& trans, const at::Tensor& last, int64_t width, int64_t height,
                                     int64_t tile) {
  const int64_t n = means2d.size(0), C = colors.size(1);
  const TileGrid grid{width, height, tile, (width + tile - 1) / tile};
  const int64_t n_tiles = tile_offsets.size(0) - 1;
  const int64_t threads = at::get_num_threads();
  auto g_means2d = at::zeros({threads, n, 2}, colors.options());
  auto g_conics = at::zeros({threads, n, 3}, colors.options());
  auto g_colors = at::zeros({threads, n, C}, colors.options());
  auto g_opacities = at::zeros({threads, n}, colors.options());
  const int64_t* off = tile_offsets.data_ptr<int64_t>();
  const int64_t* ids = flatten_ids.data_ptr<int64_t>();
  const int64_t* lst = last.data_ptr<int64_t>();
  const int32_t* rad = radii.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "splat_rasterize_backward_cpu", [&] {
    const scalar_t* gi = g_image.data_ptr<scalar_t>();
    const scalar_t* ga = g_alpha.data_ptr<scalar_t>();
    const scalar_t* m2 = means2d.data_ptr<scalar_t>();
    const scalar_t* con = conics.data_ptr<scalar_t>();
    const scalar_t* col = colors.data_ptr<scalar_t>();
    const scalar_t* op = opacities.data_ptr<scalar_t>();
    const scalar_t* bg = background.data_ptr<scalar_t>();
    const scalar_t* tr = trans.data_ptr<scalar_t>();
    for_each_tile(n_tiles, [&](int64_t me, int64_t t) {
      scalar_t* gm2 = g_means2d.data_ptr<scalar_t>() + me * n * 2;
      scalar_t* gcon = g_conics.data_ptr<scalar_t>() + me * n * 3;
      scalar_t* gcol = g_colors.data_ptr<scalar_t>() + me * n * C;
      scalar_t* gop = g_opacities.data_ptr<scalar_t>() + me * n;
      scalar_t running[256], behind[256 * 8];  // tile <= 16, C <= 8
      int64_t x0, x1, y0, y1;
      grid.pixels(t, x0, x1, y0, y1);
      int64_t deepest = off[t];  // one past the last entry any pixel of the tile used
      for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x) {
          const int64_t local = (y - y0) * tile + (x - x0);
          running[local] = tr[y * width + x];
          deepest = std::max(deepest, lst[y * width + x]);
        }
      std::fill(behind, behind + tile * tile * C, scalar_t(0));
      for (int64_t e = deepest - 1; e >= off[t]; --e) {
        const int64_t g = ids[e];
        const scalar_t* q = con + 3 * g;
        scalar_t g_m[2] = {0, 0}, g_q[3] = {0, 0, 0}, g_o = 0, g_c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        bool touched = false;
        int64_t bx0, bx1, by0, by1;
        box_pixels(m2 + 2 * g, rad + 2 * g, x0, x1, y0, y1, bx0, bx1, by0, by1);
        if (by0 >= by1 || bx0 >= bx1) continue;
        for (int64_t y = by0; y < by1; ++y) {
          for (int64_t x = bx0; x < bx1; ++x) {
            const int64_t local = (y - y0) * tile + (x - x0), pix = y * width + x;
            if (e >= lst[pix]) continue;
            scalar_t dx, dy, vis;
            const scalar_t alpha = splat_alpha(m2 + 2 * g, rad + 2 * g, q, op[g], scalar_t(x) + scalar_t(0.5),
                                               scalar_t(y) + scalar_t(0.5), dx, dy, vis);
            if (alpha < scalar_t(0)) continue;
            const scalar_t g_alpha_px = splat_unblend(alpha, col + C * g, int(C), tr[pix], bg, gi + C * pix,
                                                      ga[pix], running[local], behind + C * local, g_c);
            splat_alpha_backward(g_alpha_px, alpha, vis, op[g], q, dx, dy, g_m, g_q, &g_o);
            touched = true;
          }
        }
        if (!touched) continue;
        for (int64_t k = 0; k < C; ++k) gcol[C * g + k] += g_c[k];
        for (int k = 0; k < 2; ++k) gm2[2 * g + k] += g_m[k];
        for (int k = 0; k < 3; ++k) gcon[3 * g + k] += g_q[k];
        gop[g] += g_o;
      }
    });
  });
  return {g_means2d.sum(0), g_conics.sum(0), g_colors.sum(0), g_opacities.sum(0)};
}

}  // namespace onefield
