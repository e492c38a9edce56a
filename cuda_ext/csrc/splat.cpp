// CPU launchers of the splat ops: projection and its backward (Gaussians spread over threads), tile
// binning (count, prefix sum, one depth sort, fill), compositing and its
// backward (16x16 tiles spread over threads; the backward adds per-Gaussian gradients into one
// buffer per thread, summed at the end, so no two threads write one address).
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
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

Tensors splat_query_cpu(const at::Tensor& x, const at::Tensor& dirs, const at::Tensor& origin, const at::Tensor& cell,
                        const at::Tensor& dims, const at::Tensor& offsets, const at::Tensor& keys,
                        const at::Tensor& boxes, const at::Tensor& lo, const at::Tensor& hi, const at::Tensor& means,
                        const at::Tensor& whiten, const at::Tensor& peak, const at::Tensor& sh, int64_t degree) {
  const int64_t m = x.size(0), K = sh.size(1);
  const bool colour = dirs.size(0) > 0;
  auto sigma = at::empty({m}, x.options());
  auto rgb = at::empty({colour ? m : 0, 3}, x.options());
  const SplatLatticeView lattice = splat_lattice_view(cell, dims, offsets, keys, boxes);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "splat_query_cpu", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pd = colour ? dirs.data_ptr<scalar_t>() : nullptr;
    scalar_t* out = sigma.data_ptr<scalar_t>();
    scalar_t* col = colour ? rgb.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, m, 256, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        splat_query_one(px + 3 * i, colour ? pd + 3 * i : nullptr, origin.data_ptr<scalar_t>(), lattice,
                        lo.data_ptr<scalar_t>(), hi.data_ptr<scalar_t>(), means.data_ptr<scalar_t>(),
                        whiten.data_ptr<scalar_t>(), peak.data_ptr<scalar_t>(), sh.data_ptr<scalar_t>(), int(K),
                        int(degree), out + i, colour ? col + 3 * i : nullptr);
    });
  });
  return {sigma, rgb};
}

// Tile range of a Gaussian: [x0, x1) x [y0, y1) in tiles, computed as the torch twin does (floor and
// ceil of values clamped to the tile grid first, so the integer floor is exact).
template <typename T>
static void splat_tile_rect(const T* mean2d, const int32_t* radius, int64_t tile, int64_t tiles_x, int64_t tiles_y,
                            int32_t rect[4]) {
  const T tm_x = mean2d[0] / T(tile), tm_y = mean2d[1] / T(tile);
  const T tr_x = T(radius[0]) / T(tile), tr_y = T(radius[1]) / T(tile);
  const auto floor_in = [](T v, int64_t n) { return of_floor_int(of_clamp(v, T(0), T(n))); };
  const auto ceil_in = [](T v, int64_t n) { return -of_floor_int(-of_clamp(v, T(0), T(n))); };
  rect[0] = floor_in(tm_x - tr_x, tiles_x);
  rect[1] = ceil_in(tm_x + tr_x, tiles_x);
  rect[2] = floor_in(tm_y - tr_y, tiles_y);
  rect[3] = ceil_in(tm_y + tr_y, tiles_y);
}

namespace {

// Stable LSD radix sort of `order` (Gaussian ids) by depth: a float's bits, the sign bit flipped for
// positive values and all bits for negative ones, order as unsigned integers; a byte at a time,
// least significant first, sorts them and keeps the incoming order among equal depths.
template <typename T> void sort_by_depth(std::vector<int64_t>& order, const T* depth) {
  using Key = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const size_t n = order.size();
  std::vector<Key> keys(n), keys_out(n);
  std::vector<int64_t> order_out(n);
  constexpr Key sign = Key(1) << (8 * sizeof(Key) - 1);
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(&keys[i], depth + order[i], sizeof(Key));
    keys[i] = (keys[i] & sign) ? ~keys[i] : keys[i] | sign;
  }
  for (size_t shift = 0; shift < 8 * sizeof(Key); shift += 8) {
    size_t count[257] = {};
    for (size_t i = 0; i < n; ++i) ++count[((keys[i] >> shift) & 0xff) + 1];
    if (count[((keys[0] >> shift) & 0xff) + 1] == n) continue;  // one value in this byte: nothing moves
    std::partial_sum(count, count + 257, count);
    for (size_t i = 0; i < n; ++i) {
      const size_t to = count[(keys[i] >> shift) & 0xff]++;
      keys_out[to] = keys[i];
      order_out[to] = order[i];
    }
    keys.swap(keys_out);
    order.swap(order_out);
  }
}

}  // namespace

// Binning: the visible Gaussians sorted front to back once (a radix sort of their depths), then
// dealt to their tiles in that order, so each tile's list comes out sorted (ties in Gaussian order,
// as the twin's stable sort per tile leaves them).
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
    std::vector<int64_t> order;
    std::vector<std::array<int32_t, 4>> rects(n);
    order.reserve(n);
    for (int64_t g = 0; g < n; ++g) {  // count per tile
      if (rad[2 * g] <= 0 || rad[2 * g + 1] <= 0) continue;
      order.push_back(g);
      int32_t* rect = rects[g].data();
      splat_tile_rect(m2 + 2 * g, rad + 2 * g, tile, tiles_x, tiles_y, rect);
      for (int64_t ty = rect[2]; ty < rect[3]; ++ty)
        for (int64_t tx = rect[0]; tx < rect[1]; ++tx) ++off[ty * tiles_x + tx + 1];
    }
    std::partial_sum(off, off + n_tiles + 1, off);
    ids = at::empty({off[n_tiles]}, tile_offsets.options());
    if (order.empty()) return;
    sort_by_depth(order, depths.data_ptr<scalar_t>());
    int64_t* out = ids.data_ptr<int64_t>();
    std::vector<int64_t> fill(off, off + n_tiles);
    for (const int64_t g : order) {
      const int32_t* rect = rects[g].data();
      for (int64_t ty = rect[2]; ty < rect[3]; ++ty)
        for (int64_t tx = rect[0]; tx < rect[1]; ++tx) out[fill[ty * tiles_x + tx]++] = g;
    }
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

// The pixels p of [t0, t1) with |m - (p + 0.5)| <= r (the box test of `splat_alpha`, in the same
// floats) as [lo, hi): a sweep visits no pixel that the test would reject.
template <typename T>
__attribute__((always_inline)) inline void box_span(T m, int32_t r, int64_t t0, int64_t t1, int64_t& lo, int64_t& hi) {
  const auto inside = [&](int64_t p) { return std::abs(m - (T(p) + T(0.5))) <= T(r); };
  lo = int64_t(std::clamp(std::ceil(m - T(r) - T(0.5)), T(t0), T(t1)));
  hi = int64_t(std::clamp(std::floor(m + T(r) - T(0.5)) + T(1), T(t0), T(t1)));
  while (lo > t0 && inside(lo - 1)) --lo;
  while (lo < hi && !inside(lo)) ++lo;
  while (hi < t1 && inside(hi)) ++hi;
  while (hi > lo && !inside(hi - 1)) --hi;
}

// The pixels of [x0, x1) x [y0, y1) in a Gaussian's radius box, as [bx0, bx1) x [by0, by1).
template <typename T>
__attribute__((always_inline)) inline void box_pixels(const T* mean2d, const int32_t* radius, int64_t x0, int64_t x1, int64_t y0, int64_t y1,
                int64_t& bx0, int64_t& bx1, int64_t& by0, int64_t& by1) {
  box_span(mean2d[0], radius[0], x0, x1, bx0, bx1);
  box_span(mean2d[1], radius[1], y0, y1, by0, by1);
}

}  // namespace

namespace {

// The sweeps below run a row of a Gaussian's box as 16-byte vectors (GCC vector extensions: SSE2,
// the x86-64 baseline; 4 float or 2 double lanes): boxes are mostly 2-5 pixels wide, too short for
// the compiler's loop vectoriser, whose scalar remainder then did all the work.
template <typename T> struct Lanes {
  static constexpr int N = 16 / sizeof(T);
  typedef T V __attribute__((vector_size(16)));
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;  // a lane mask's integer
  typedef I M __attribute__((vector_size(16)));
  static V load(const T* p) { V v; std::memcpy(&v, p, sizeof v); return v; }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof v); }
  static M load(const I* p) { M v; std::memcpy(&v, p, sizeof v); return v; }
  static void store(I* p, M v) { std::memcpy(p, &v, sizeof v); }
  static V iota() { V v; for (int i = 0; i < N; ++i) v[i] = T(i); return v; }
  static T sum(V v) { T s = T(0); for (int i = 0; i < N; ++i) s += v[i]; return s; }
  static I count(M m) { I s = 0; for (int i = 0; i < N; ++i) s -= m[i]; return s; }  // of -1 (true) lanes
  static bool any(M m) { return count(m) != 0; }
};

// exp(x) lane by lane for x <= 0 without libm (Cephes' expf polynomial: within 2 ulp of expf, far
// below the 1e-5 the kernels are compared at); in double, std::exp.
using F4 = Lanes<float>::V;
using D2 = Lanes<double>::V;
__attribute__((always_inline)) inline F4 sweep_exp(F4 x) {
  using I4 = Lanes<float>::M;
  x = x < -87.0f ? F4{} - 87.0f : x;
  x = x > 0.0f ? F4{} : x;
  const F4 n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round(x / ln 2), no libm
  const F4 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  F4 p = F4{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const I4 bits = (__builtin_convertvector(n, I4) + 127) << 23;
  F4 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
__attribute__((always_inline)) inline D2 sweep_exp(D2 x) {
  for (int i = 0; i < 2; ++i) x[i] = std::exp(std::min(x[i], 0.0));
  return x;
}

constexpr int64_t SWEEP_PIXELS = 256 + 8;  // a 16x16 tile, and a vector's overhang past its end

// A tile's list visits Gaussians in depth order, i.e. at random addresses: the data of the entry
// `SWEEP_AHEAD` places on is requested early, or the sweep waits on five cache misses an entry
// (in the backward also on its gradients' slots).
constexpr int64_t SWEEP_AHEAD = 8;
template <typename T>
__attribute__((always_inline)) inline void prefetch_gaussian(int64_t g, int C, const T* m2, const int32_t* rad,
                                                             const T* con, const T* col, const T* op) {
  __builtin_prefetch(m2 + 2 * g);
  if (rad != nullptr) __builtin_prefetch(rad + 2 * g);
  __builtin_prefetch(con + 3 * g);
  __builtin_prefetch(col + C * g);
  __builtin_prefetch(op + g);
}

// Calls f(std::integral_constant<int, C>) for C = channels (1..8): the channel loops unroll.
template <typename F> void with_channels(int64_t channels, const F& f) {
  switch (channels) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

// One Gaussian's row of pixels [x, x + N) at pixel-centre height dy: the lanes inside its box span
// (< x_end) that pass `splat_alpha`'s tests, with alpha, exp(-sigma) and dx.
template <typename T> struct RowAlpha {
  using L = Lanes<T>;
  typename L::V alpha, vis, dx;
  typename L::M seen;
  RowAlpha(int64_t x, int64_t x_end, T dy, T mx, const T* conic, T opacity) {
    const typename L::V px = L::iota() + (T(x) + T(0.5));
    dx = mx - px;
    const typename L::V sigma = T(0.5) * (conic[0] * dx * dx + conic[2] * dy * dy) + conic[1] * dx * dy;
    vis = sweep_exp(-sigma);
    const typename L::V a = opacity * vis;
    alpha = a < T(SPLAT_ALPHA_MAX) ? a : typename L::V{} + T(SPLAT_ALPHA_MAX);
    seen = (px < T(x_end)) & (sigma >= T(0)) & (alpha >= T(SPLAT_ALPHA_MIN));
  }
};

// Front to back over one tile: the pixels' running state lives in local planes (pixel-major), each
// Gaussian is blended over the pixels of its radius box, a row at a time, with the operations of
// `splat_alpha` and `splat_blend` as lane selects.
template <typename T, int C>
void forward_tile(int64_t t, const TileGrid& grid, const int64_t* off, const int64_t* ids, const T* m2,
                  const int32_t* rad, const T* con, const T* col, const T* op, const T* bg, T* img, T* tr,
                  int64_t* lst) {
  using L = Lanes<T>;
  using V = typename L::V;
  using M = typename L::M;
  using I = typename L::I;
  alignas(64) T trans[SWEEP_PIXELS], out[C][SWEEP_PIXELS];
  alignas(64) I last[SWEEP_PIXELS], live[SWEEP_PIXELS];  // last: one past the last entry blended
  const int64_t tile = grid.tile, base = off[t];
  int64_t x0, x1, y0, y1;
  grid.pixels(t, x0, x1, y0, y1);
  int64_t n_live = 0;
  for (int64_t l = 0; l < SWEEP_PIXELS; ++l) {
    trans[l] = T(1);
    last[l] = 0;
    for (int k = 0; k < C; ++k) out[k][l] = T(0);
    live[l] = (l < tile * tile && x0 + l % tile < x1 && y0 + l / tile < y1) ? -1 : 0;
    n_live -= live[l];
  }
  for (int64_t e = base; e < off[t + 1] && n_live > 0; ++e) {
    const int64_t g = ids[e];
    if (e + SWEEP_AHEAD < off[t + 1]) prefetch_gaussian(ids[e + SWEEP_AHEAD], C, m2, rad, con, col, op);
    int64_t bx0, bx1, by0, by1;
    box_pixels(m2 + 2 * g, rad + 2 * g, x0, x1, y0, y1, bx0, bx1, by0, by1);
    T c[C];
    for (int k = 0; k < C; ++k) c[k] = col[C * g + k];
    const I stamp = I(e - base + 1);
    M stopped{};  // -1 per pixel that stops at this Gaussian, summed over its rows
    for (int64_t y = by0; y < by1; ++y) {
      const T dy = m2[2 * g + 1] - (T(y) + T(0.5));
      for (int64_t x = bx0; x < bx1; x += L::N) {
        const int64_t l = (y - y0) * tile + (x - x0);
        const RowAlpha<T> a(x, bx1, dy, m2[2 * g], con + 3 * g, op[g]);
        const V tr_l = L::load(trans + l);
        const M seen = a.seen & L::load(live + l);
        const V next = tr_l * (T(1) - a.alpha);
        const M stop = seen & (next <= T(SPLAT_T_MIN));
        const M blend = seen & ~stop;
        const V w = blend ? a.alpha * tr_l : V{};
        for (int k = 0; k < C; ++k) L::store(out[k] + l, L::load(out[k] + l) + c[k] * w);
        L::store(trans + l, blend ? next : tr_l);
        L::store(last + l, blend ? M{} + stamp : L::load(last + l));
        L::store(live + l, stop ? M{} : L::load(live + l));
        stopped += stop;
      }
    }
    n_live -= L::count(stopped);
  }
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) {
      const int64_t l = (y - y0) * tile + (x - x0), pix = y * grid.width + x;
      for (int k = 0; k < C; ++k) img[C * pix + k] = out[k][l] + trans[l] * bg[k];
      tr[pix] = trans[l];
      lst[pix] = base + int64_t(last[l]);
    }
}

// Back to front over one tile, from the deepest entry any pixel used: `splat_unblend` and
// `splat_alpha_backward` as lane selects; each Gaussian's gradients are summed over its pixels in
// vectors and added once into the thread's buffers g_* ([N, 2], [N, 3], [N, C], [N]).
template <typename T, int C>
void backward_tile(int64_t t, const TileGrid& grid, const int64_t* off, const int64_t* ids, const T* m2,
                   const int32_t* rad, const T* con, const T* col, const T* op, const T* bg, const T* gi,
                   const T* ga, const T* tr, const int64_t* lst, T* gm2, T* gcon, T* gcol, T* gop) {
  using L = Lanes<T>;
  using V = typename L::V;
  using M = typename L::M;
  using I = typename L::I;
  alignas(64) T running[SWEEP_PIXELS], behind[C][SWEEP_PIXELS], g_out[C][SWEEP_PIXELS];
  alignas(64) T final_tr[SWEEP_PIXELS], g_alpha_out[SWEEP_PIXELS];
  alignas(64) I last[SWEEP_PIXELS];
  const int64_t tile = grid.tile, base = off[t];
  int64_t x0, x1, y0, y1;
  grid.pixels(t, x0, x1, y0, y1);
  int64_t deepest = base;
  for (int64_t l = 0; l < SWEEP_PIXELS; ++l) {
    const int64_t x = x0 + l % tile, y = y0 + l / tile, pix = y * grid.width + x;
    const bool inside = l < tile * tile && x < x1 && y < y1;
    running[l] = final_tr[l] = inside ? tr[pix] : T(1);
    g_alpha_out[l] = inside ? ga[pix] : T(0);
    last[l] = inside ? I(lst[pix] - base) : 0;
    for (int k = 0; k < C; ++k) {
      behind[k][l] = T(0);
      g_out[k][l] = inside ? gi[C * pix + k] : T(0);
    }
    if (inside) deepest = std::max(deepest, lst[pix]);
  }
  for (int64_t e = deepest - 1; e >= base; --e) {
    const int64_t g = ids[e];
    if (e - SWEEP_AHEAD >= base) {
      const int64_t ahead = ids[e - SWEEP_AHEAD];
      prefetch_gaussian(ahead, C, m2, rad, con, col, op);
      prefetch_gaussian(ahead, C, gm2, nullptr, gcon, gcol, gop);  // where its gradients are added
    }
    int64_t bx0, bx1, by0, by1;
    box_pixels(m2 + 2 * g, rad + 2 * g, x0, x1, y0, y1, bx0, bx1, by0, by1);
    const T* q = con + 3 * g;
    const T o = op[g];
    T c[C];
    for (int k = 0; k < C; ++k) c[k] = col[C * g + k];
    V g_c[C] = {}, g_mx{}, g_my{}, g_qa{}, g_qb{}, g_qc{}, g_o{};
    M touched{};
    const I entry = I(e - base);
    for (int64_t y = by0; y < by1; ++y) {
      const T dy = m2[2 * g + 1] - (T(y) + T(0.5));
      for (int64_t x = bx0; x < bx1; x += L::N) {
        const int64_t l = (y - y0) * tile + (x - x0);
        const RowAlpha<T> a(x, bx1, dy, m2[2 * g], q, o);
        const M ok = a.seen & (entry < L::load(last + l));
        touched |= ok;
        const V one_minus = T(1) - a.alpha, trf = L::load(final_tr + l), run = L::load(running + l);
        const V inv = T(1) / one_minus;  // one division: x / (1 - alpha) as x * inv (1 ulp apart)
        const V tr_i = run * inv;
        L::store(running + l, ok ? tr_i : run);
        const V w = a.alpha * tr_i;
        V g_alpha = L::load(g_alpha_out + l) * trf * inv;
        for (int k = 0; k < C; ++k) {
          const V go = L::load(g_out[k] + l), bh = L::load(behind[k] + l);
          g_c[k] += ok ? w * go : V{};
          g_alpha += go * (c[k] * tr_i - (bh + trf * bg[k]) * inv);
          L::store(behind[k] + l, ok ? bh + c[k] * w : bh);
        }
        const M use = ok & (o * a.vis <= T(SPLAT_ALPHA_MAX));  // at the clamp alpha is constant
        const V g_sigma = use ? -g_alpha * a.alpha : V{};
        g_o += use ? g_alpha * a.vis : V{};
        g_qa += T(0.5) * a.dx * a.dx * g_sigma;
        g_qb += a.dx * dy * g_sigma;
        g_qc += T(0.5) * dy * dy * g_sigma;
        g_mx += (q[0] * a.dx + q[1] * dy) * g_sigma;
        g_my += (q[1] * a.dx + q[2] * dy) * g_sigma;
      }
    }
    if (!L::any(touched)) continue;
    for (int k = 0; k < C; ++k) gcol[C * g + k] += L::sum(g_c[k]);
    gm2[2 * g] += L::sum(g_mx);
    gm2[2 * g + 1] += L::sum(g_my);
    gcon[3 * g] += L::sum(g_qa);
    gcon[3 * g + 1] += L::sum(g_qb);
    gcon[3 * g + 2] += L::sum(g_qc);
    gop[g] += L::sum(g_o);
  }
}

}  // namespace

// The CPU sweeps a tile Gaussian by Gaussian (front to back), each over the pixels of its box, with
// the pixels' running state in arrays: per pixel the same Gaussians in the same order meet the same
// float operations as in the per-pixel walk of the CUDA kernel (`splat_composite_one`), exp aside.
Tensors splat_rasterize_forward_cpu(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& conics,
                                    const at::Tensor& colors, const at::Tensor& opacities,
                                    const at::Tensor& background, const at::Tensor& tile_offsets,
                                    const at::Tensor& flatten_ids, int64_t width, int64_t height, int64_t tile) {
  const TileGrid grid{width, height, tile, (width + tile - 1) / tile};
  const int64_t n_tiles = tile_offsets.size(0) - 1;
  auto image = at::empty({height, width, colors.size(1)}, colors.options());
  auto trans = at::empty({height, width}, colors.options());
  auto last = at::empty({height, width}, tile_offsets.options());
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "splat_rasterize_forward_cpu", [&] {
    with_channels(colors.size(1), [&](auto channels) {
      for_each_tile(n_tiles, [&](int64_t, int64_t t) {
        forward_tile<scalar_t, decltype(channels)::value>(
            t, grid, tile_offsets.data_ptr<int64_t>(), flatten_ids.data_ptr<int64_t>(), means2d.data_ptr<scalar_t>(),
            radii.data_ptr<int32_t>(), conics.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(),
            opacities.data_ptr<scalar_t>(), background.data_ptr<scalar_t>(), image.data_ptr<scalar_t>(),
            trans.data_ptr<scalar_t>(), last.data_ptr<int64_t>());
      });
    });
  });
  return {image, trans, last};
}

// Backward: the same sweep back to front, per-Gaussian gradients added into one buffer per thread
// (summed over threads at the end), so no two threads write one address.
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
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "splat_rasterize_backward_cpu", [&] {
    with_channels(C, [&](auto channels) {
      for_each_tile(n_tiles, [&](int64_t me, int64_t t) {
        backward_tile<scalar_t, decltype(channels)::value>(
            t, grid, tile_offsets.data_ptr<int64_t>(), flatten_ids.data_ptr<int64_t>(), means2d.data_ptr<scalar_t>(),
            radii.data_ptr<int32_t>(), conics.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(),
            opacities.data_ptr<scalar_t>(), background.data_ptr<scalar_t>(), g_image.data_ptr<scalar_t>(),
            g_alpha.data_ptr<scalar_t>(), trans.data_ptr<scalar_t>(), last.data_ptr<int64_t>(),
            g_means2d.data_ptr<scalar_t>() + me * n * 2, g_conics.data_ptr<scalar_t>() + me * n * 3,
            g_colors.data_ptr<scalar_t>() + me * n * C, g_opacities.data_ptr<scalar_t>() + me * n);
      });
    });
  });
  return {g_means2d.sum(0), g_conics.sum(0), g_colors.sum(0), g_opacities.sum(0)};
}

}  // namespace onefield
