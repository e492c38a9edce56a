// Strivec's local tri-vector (CP) tensors: a point's value is the sum over the local tensors that
// cover it (slots) of weight x prod over the three axes of the linearly interpolated vectors.
// Vectors are channels-last [3, T, L, C]: axis, tensor, texel along the axis, component.
// Shared by the CPU and CUDA launchers; reference.trivec_sample is the torch twin.
#pragma once

#include "hd.h"

namespace onefield {

struct TrivecShape {
  int64_t n_tensors, length, channels;  // T, L, C
};

// Texel i0 along an axis of length L (>= 2) and the weight f of i0 + 1 at local coordinate u in [-1, 1].
template <typename T> OF_HD void trivec_texel(T u, int64_t length, int64_t& i0, T& f) {
  const T x = of_clamp((u + T(1)) * T(0.5) * T(length - 1), T(0), T(length - 1));
  int64_t i = of_floor_int(x);
  if (i > length - 2) i = length - 2;
  i0 = i;
  f = x - T(i);
}

// Start of the (axis, tensor, texel) row of C components.
OF_HD int64_t trivec_row(const TrivecShape& s, int axis, int64_t tensor, int64_t texel) {
  return ((int64_t(axis) * s.n_tensors + tensor) * s.length + texel) * s.channels;
}

}  // namespace onefield
