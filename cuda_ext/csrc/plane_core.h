// Bilinear sampling of a channels-last 2-D factor [H, W, C] at coordinates in [-1, 1]
// (align_corners: the first and last texel sit on the box faces). A 1-D factor (a line) is the
// W = 1 case. Shared by the CPU and CUDA launchers; reference.plane_sample is the torch twin.
#pragma once

#include "hd.h"

namespace onefield {

template <typename T>
struct Corners {
  int64_t texel[4];  // flat texel indices (y * W + x) of the 4 corners
  T weight[4];
  int row[2];  // the two rows touched (equal when H == 1)
};


// One axis: texel index i0 and the weight f of i0 + 1; a size-1 axis puts everything on texel 0.
template <typename T> OF_HD void axis_corner(T coord, int size, int& i0, T& f) {
  if (size == 1) {
    i0 = 0;
    f = T(0);
    return;
  }
  const T x = of_clamp((coord + T(1)) * T(0.5) * T(size - 1), T(0), T(size - 1));
  i0 = of_floor_int(x);
  if (i0 > size - 2) i0 = size - 2;
  f = x - T(i0);
}

template <typename T> OF_HD Corners<T> plane_corners(const T* uv, int h, int w) {
  int x0, y0;
  T fx, fy;
  axis_corner(uv[0], w, x0, fx);
  axis_corner(uv[1], h, y0, fy);
  const int x1 = w > 1 ? x0 + 1 : x0, y1 = h > 1 ? y0 + 1 : y0;
  Corners<T> c;
  c.texel[0] = int64_t(y0) * w + x0;
  c.texel[1] = int64_t(y0) * w + x1;
  c.texel[2] = int64_t(y1) * w + x0;
  c.texel[3] = int64_t(y1) * w + x1;
  c.weight[0] = (T(1) - fx) * (T(1) - fy);
  c.weight[1] = fx * (T(1) - fy);
  c.weight[2] = (T(1) - fx) * fy;
  c.weight[3] = fx * fy;
  c.row[0] = y0;
  c.row[1] = y1;
  return c;
}

}  // namespace onefield
