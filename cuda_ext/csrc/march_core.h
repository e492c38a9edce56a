// Per-ray algorithms: ray/box intersection and occupancy-grid marching. reference.py's
// `ray_aabb_intersect` and `march_rays` perform the same float operations in the same order
// (build with -ffp-contract=off / --fmad=false so no FMA changes a rounding).
#pragma once

#include "hd.h"

namespace onefield {

constexpr float kMissT = 1e10f;
constexpr float kParallelEps = 1e-12f;

// Slab test. Misses (and boxes entirely behind the origin) return t_near = t_far = kMissT.
template <typename T>
OF_HD void ray_aabb_one(const T* o, const T* d, const T* aabb, T* t_near, T* t_far, bool* hit) {
  T tn = -T(kMissT), tf = T(kMissT);
  bool ok = true;
  for (int a = 0; a < 3; ++a) {
    if (of_abs(d[a]) < T(kParallelEps)) {
      ok = ok && o[a] >= aabb[a] && o[a] <= aabb[a + 3];
      continue;
    }
    const T t0 = (aabb[a] - o[a]) / d[a];
    const T t1 = (aabb[a + 3] - o[a]) / d[a];
    tn = of_max(tn, of_min(t0, t1));
    tf = of_min(tf, of_max(t0, t1));
  }
  ok = ok && tf >= tn && tf > T(0);
  *t_near = ok ? tn : T(kMissT);
  *t_far = ok ? tf : T(kMissT);
  *hit = ok;
}

// Cascade c covers the base box scaled by 2^c about its centre.
// Geometry precomputed once on the host, in float, so the kernels multiply where they would
// divide (reference.py uses the same reciprocals, so results stay identical).
struct GridGeom {
  float center[3];
  float half[3];
  float inv_half[3];  // 1 / half
  float cell_frac;    // 2 / res: a cell's width as a fraction of the cascade's half size
  int res;
  int levels;
};

// Smallest cascade containing x, or g.levels when x is outside all of them.
OF_HD int cascade_of(const float* x, const GridGeom& g) {
  float m = 0.f;
  for (int a = 0; a < 3; ++a) m = of_max(m, of_abs(x[a] - g.center[a]) * g.inv_half[a]);
  int c = 0;
  float s = 1.f;
  for (int k = 0; k < g.levels; ++k, s *= 2.f) c += (m > s) ? 1 : 0;
  return c;
}

// Integer cell coordinates of x inside cascade c.
OF_HD void cell_of(const float* x, int c, const GridGeom& g, int* idx) {
  const float inv_s = 1.f / float(1 << c);  // exact: a power of two
  for (int a = 0; a < 3; ++a) {
    const float u = ((x[a] - g.center[a]) * (g.inv_half[a] * inv_s) * 0.5f + 0.5f) * float(g.res);
    // Truncation equals floor here: they differ only for negative u, which clamps to 0 either way.
    idx[a] = of_clamp(int(u), 0, g.res - 1);
  }
}

OF_HD bool is_occupied(const uint8_t* bits, int c, const int* idx, const GridGeom& g) {
  const int64_t r = g.res;
  const int64_t lin = int64_t(c) * r * r * r + (int64_t(idx[0]) * r + idx[1]) * r + idx[2];
  return (bits[lin >> 3] >> (lin & 7)) & 1;
}

// Ray parameter at which the ray leaves cell `idx` of cascade c; inv_d = 1 / d per axis.
OF_HD float cell_exit_t(const float* o, const float* d, const float* inv_d, int c, const int* idx,
                        const GridGeom& g) {
  const float s = float(1 << c);
  float t_exit = kMissT;
  for (int a = 0; a < 3; ++a) {
    const float half_s = g.half[a] * s;
    const float width = half_s * g.cell_frac;
    const float lo = (g.center[a] - half_s) + float(idx[a]) * width;
    const float hi = lo + width;
    float t_a = kMissT;
    if (d[a] > kParallelEps) t_a = (hi - o[a]) * inv_d[a];
    if (d[a] < -kParallelEps) t_a = (lo - o[a]) * inv_d[a];
    t_exit = of_min(t_exit, t_a);
  }
  return t_exit;
}

struct MarchParams {
  float step_size;      // minimum step (t units)
  float max_step_size;  // cap for the cone-angle step
  float cone_angle;     // dt = clamp(t * cone_angle, step_size, max_step_size); 0 = constant step
  int max_samples;      // per ray
};

// March one ray over [t_min, t_max). A step [t, t + dt) is tested at its midpoint: in an occupied
// cell it becomes sample k, handed to emit(k, t, t + dt); in an empty cell the ray jumps to the
// first step of its dt lattice whose midpoint lies past the cell's exit (Instant-NGP's skip, for
// midpoint samples). Returns the number of samples.
template <typename Emit>
OF_HD int march_one(const float* o, const float* d, float t_min, float t_max, const uint8_t* bits,
                    const GridGeom& g, const MarchParams& p, Emit emit) {
  const float inv_d[3] = {1.f / d[0], 1.f / d[1], 1.f / d[2]};
  float t = t_min;
  int n = 0;
  while (t < t_max && n < p.max_samples) {
    const float dt = of_clamp(t * p.cone_angle, p.step_size, p.max_step_size);
    const float t_mid = t + dt * 0.5f;
    float x[3];
    for (int a = 0; a < 3; ++a) x[a] = o[a] + d[a] * t_mid;
    const int c = cascade_of(x, g);
    if (c >= g.levels) break;
    int idx[3];
    cell_of(x, c, g, idx);
    if (is_occupied(bits, c, idx, g)) {
      emit(n, t, t + dt);
      ++n;
      t = t + dt;
    } else {
      const float t_exit = cell_exit_t(o, d, inv_d, c, idx, g);
      const float steps = of_max(of_ceil((t_exit - t_mid) / dt), 1.f);
      t = t + dt * steps;
    }
  }
  return n;
}

// Emitters for march_one: count only, or write sample k at fixed output positions.
struct CountOnly {
  OF_HD void operator()(int, float, float) const {}
};

struct WriteAt {
  float* t0;
  float* t1;
  OF_HD void operator()(int k, float a, float b) const {
    t0[k] = a;
    t1[k] = b;
  }
};

}  // namespace onefield
