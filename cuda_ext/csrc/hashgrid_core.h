// Multiresolution hash encoding (Instant-NGP), per (point, level). Level l has grid scale
// s_l = base * b^l - 1 and resolution r_l = ceil(s_l) + 1; a point x in [0,1]^3 sits at
// p = x s_l + 0.5 (tiny-cuda-nn's alignment). A level whose r_l^3 cells fit in the table is
// indexed densely (corners clamped to the grid); finer levels use the spatial hash
// (x * 1) ^ (y * 2654435761) ^ (z * 805459861) mod T in uint32 arithmetic.
#pragma once

#include "hd.h"

namespace onefield {

struct HashLevel {
  float scale;
  int res;
  bool dense;
};

// Cell origin and fractional position of x in one level.
template <typename T>
OF_HD void hash_locate(const T* x, const HashLevel& lv, int* g, T* f) {
  for (int a = 0; a < 3; ++a) {
    const T p = x[a] * T(lv.scale) + T(0.5);
    g[a] = of_floor_int(p);
    f[a] = p - T(g[a]);
  }
}

// Trilinear weight of a corner (bit a of `corner` picks the upper neighbour along axis a), and
// its derivative with respect to f[axis] when axis >= 0.
template <typename T>
OF_HD T corner_weight(int corner, const T* f, int axis) {
  T w = T(1);
  for (int a = 0; a < 3; ++a) {
    const bool up = (corner >> a) & 1;
    if (a == axis) w *= up ? T(1) : T(-1);
    else w *= up ? f[a] : T(1) - f[a];
  }
  return w;
}

// Table rows and trilinear weights of the 8 corners of x's cell in one level. Written per axis
// (two factors and two index terms per axis, the dense/hashed choice once): the same weights, in the
// same float operations and order, as `corner_weight` per corner, at a third of the CPU time of
// indexing and weighing each corner on its own.
template <typename T>
OF_HD void hash_corners(const T* x, const HashLevel& lv, int64_t table_size, int64_t* rows, T* weights) {
  int g[3];
  T f[3];
  hash_locate(x, lv, g, f);
  const T wx[2] = {T(1) - f[0], f[0]}, wy[2] = {T(1) - f[1], f[1]}, wz[2] = {T(1) - f[2], f[2]};
  for (int c = 0; c < 8; ++c) weights[c] = wx[c & 1] * wy[(c >> 1) & 1] * wz[c >> 2];
  if (lv.dense) {
    const int r = lv.res;
    int64_t ix[2], iy[2], iz[2];
    for (int u = 0; u < 2; ++u) {
      ix[u] = of_clamp(g[0] + u, 0, r - 1);
      iy[u] = int64_t(of_clamp(g[1] + u, 0, r - 1)) * r;
      iz[u] = int64_t(of_clamp(g[2] + u, 0, r - 1)) * r * r;
    }
    for (int c = 0; c < 8; ++c) rows[c] = ix[c & 1] + iy[(c >> 1) & 1] + iz[c >> 2];
  } else {
    uint32_t hx[2], hy[2], hz[2];
    for (int u = 0; u < 2; ++u) {
      hx[u] = uint32_t(g[0] + u);
      hy[u] = uint32_t(g[1] + u) * 2654435761u;
      hz[u] = uint32_t(g[2] + u) * 805459861u;
    }
    for (int c = 0; c < 8; ++c) rows[c] = int64_t(hx[c & 1] ^ hy[(c >> 1) & 1] ^ hz[c >> 2]) & (table_size - 1);
  }
}

// out[F] = sum over the 8 corners of weight * table[row]; `table` points at this level.
template <typename T>
OF_HD void hash_accumulate(const int64_t* rows, const T* weights, const T* table, int n_feat, T* out) {
  for (int k = 0; k < n_feat; ++k) out[k] = T(0);
  for (int corner = 0; corner < 8; ++corner) {
    const T* row = table + rows[corner] * n_feat;
    for (int k = 0; k < n_feat; ++k) out[k] += weights[corner] * row[k];
  }
}

template <typename T>
OF_HD void hash_forward_one(const T* x, const HashLevel& lv, const T* table, int64_t table_size,
                            int n_feat, T* out) {
  int64_t rows[8];
  T weights[8];
  hash_corners(x, lv, table_size, rows, weights);
  hash_accumulate(rows, weights, table, n_feat, out);
}

// Gradient of one (point, level) with respect to x, given its cell's 8 table rows (`hash_corners`):
// sum_corners sum_k g_k table_k dw/dx.
template <typename T>
OF_HD void hash_backward_x_rows(const T* x, const HashLevel& lv, const int64_t* rows, const T* table,
                                int n_feat, const T* g_out, T* g_x) {
  int g[3];
  T f[3];
  hash_locate(x, lv, g, f);
  for (int corner = 0; corner < 8; ++corner) {
    const T* row = table + rows[corner] * n_feat;
    T dot = T(0);
    for (int k = 0; k < n_feat; ++k) dot += g_out[k] * row[k];
    for (int a = 0; a < 3; ++a) g_x[a] += dot * corner_weight(corner, f, a) * T(lv.scale);
  }
}

template <typename T>
OF_HD void hash_backward_x_one(const T* x, const HashLevel& lv, const T* table,
                               int64_t table_size, int n_feat, const T* g_out, T* g_x) {
  int64_t rows[8];
  T weights[8];
  hash_corners(x, lv, table_size, rows, weights);
  hash_backward_x_rows(x, lv, rows, table, n_feat, g_out, g_x);
}

// Scatter w * g_out into the table rows of the 8 corners; `add` is a plain += on the CPU (one
// thread owns a level) and atomicAdd on CUDA.
template <typename T, typename Add>
OF_HD void hash_scatter(const int64_t* rows, const T* weights, int n_feat, const T* g_out, T* g_table,
                        Add add) {
  for (int corner = 0; corner < 8; ++corner) {
    T* row = g_table + rows[corner] * n_feat;
    for (int k = 0; k < n_feat; ++k) add(row + k, weights[corner] * g_out[k]);
  }
}

}  // namespace onefield
