// Launch helpers shared by the CUDA launchers.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace onefield {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) { return unsigned(n > 0 ? (n + kThreads - 1) / kThreads : 1); }

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

__device__ inline int64_t thread_index() { return blockIdx.x * int64_t(blockDim.x) + threadIdx.x; }

// The `add` of the shared *_core.h loops that scatter gradients: atomics on the device.
struct AtomicAdd {
  template <typename T>
  __host__ __device__ void operator()(T* p, T v) const {
#ifdef __CUDA_ARCH__
    atomicAdd(p, v);
#else
    *p += v;  // never reached: the cores are host-callable only by signature
#endif
  }
};

}  // namespace onefield
