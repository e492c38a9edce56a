// Host/device portability for the per-item algorithms shared by the CPU (.cpp) and CUDA (.cu)
// launchers. Each *_core.h holds ONE implementation of an op's inner loop; the launchers only
// decide how items are spread over threads. That is what keeps the CPU and CUDA paths the same
// algorithm, and reference.py mirrors these loops operation by operation.
#pragma once

#include <cstdint>
#include <cmath>

#if defined(__CUDACC__)
#define OF_HD __host__ __device__ __forceinline__
#else
#define OF_HD inline
#endif

namespace onefield {

OF_HD float of_exp(float x) { return ::expf(x); }
OF_HD double of_exp(double x) { return ::exp(x); }
OF_HD float of_ceil(float x) { return ::ceilf(x); }
OF_HD double of_ceil(double x) { return ::ceil(x); }
OF_HD float of_abs(float x) { return ::fabsf(x); }
OF_HD double of_abs(double x) { return ::fabs(x); }
OF_HD float of_sqrt(float x) { return ::sqrtf(x); }
OF_HD double of_sqrt(double x) { return ::sqrt(x); }
OF_HD float of_log(float x) { return ::logf(x); }
OF_HD double of_log(double x) { return ::log(x); }

// floor(x) as an int, exact for |x| < 2^31, without a libm call: on the CPU's baseline x86-64
// instruction set floorf is a ~16-instruction emulation, and it was a quarter of a marching step.
template <typename T> OF_HD int of_floor_int(T x) {
  const int i = int(x);  // truncates toward zero
  return i - (x < T(i) ? 1 : 0);
}

template <typename T> OF_HD T of_min(T a, T b) { return a < b ? a : b; }
template <typename T> OF_HD T of_max(T a, T b) { return a > b ? a : b; }
template <typename T> OF_HD T of_clamp(T v, T lo, T hi) { return of_min(of_max(v, lo), hi); }

}  // namespace onefield
