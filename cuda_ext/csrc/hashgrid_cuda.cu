// CUDA launchers: hash encoding, one thread a (level, point) pair, level-major so neighbouring
// threads read the same table slice; the table gradient is scattered with atomicAdd.
#include "cuda_common.cuh"
#include "ops.h"

namespace onefield {
namespace {

// Level parameters travel by value in the kernel arguments.
constexpr int kMaxLevels = 32;
struct LevelArray {
  HashLevel lv[kMaxLevels];
};

LevelArray pack_levels(const std::vector<HashLevel>& levels) {
  TORCH_CHECK(levels.size() <= size_t(kMaxLevels), "at most ", kMaxLevels, " hash-grid levels on CUDA");
  LevelArray a{};
  for (size_t l = 0; l < levels.size(); ++l) a.lv[l] = levels[l];
  return a;
}

template <typename T>
__global__ void hash_forward_kernel(int64_t n, int64_t n_levels, const T* x, const T* table, int64_t t_size,
                                    int n_feat, LevelArray levels, T* out) {
  const int64_t tid = thread_index();
  if (tid >= n * n_levels) return;
  const int64_t l = tid / n, i = tid % n;
  hash_forward_one(x + 3 * i, levels.lv[l], table + l * t_size * n_feat, t_size, n_feat, out + tid * n_feat);
}

template <typename T>
__global__ void hash_backward_table_kernel(int64_t n, int64_t n_levels, const T* x, const T* g_level,
                                           int64_t t_size, int n_feat, LevelArray levels, T* g_table) {
  const int64_t tid = thread_index();
  if (tid >= n * n_levels) return;
  const int64_t l = tid / n, i = tid % n;
  int64_t rows[8];
  T weights[8];
  hash_corners(x + 3 * i, levels.lv[l], t_size, rows, weights);
  hash_scatter(rows, weights, n_feat, g_level + tid * n_feat, g_table + l * t_size * n_feat, AtomicAdd{});
}

template <typename T>
__global__ void hash_backward_x_kernel(int64_t n, int64_t n_levels, const T* x, const T* table,
                                       const T* g_level, int64_t t_size, int n_feat, LevelArray levels, T* g_x) {
  const int64_t i = thread_index();
  if (i >= n) return;
  for (int64_t l = 0; l < n_levels; ++l)
    hash_backward_x_one(x + 3 * i, levels.lv[l], table + l * t_size * n_feat, t_size, n_feat,
                        g_level + (l * n + i) * n_feat, g_x + 3 * i);
}

}  // namespace

at::Tensor hash_encode_forward_cuda(const at::Tensor& x, const at::Tensor& table,
                                    const std::vector<HashLevel>& levels) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = x.size(0), n_levels = table.size(0), t_size = table.size(1);
  const int n_feat = int(table.size(2));
  const LevelArray lv = pack_levels(levels);
  auto out = at::empty({n_levels, n, n_feat}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_forward_cuda", [&] {
    hash_forward_kernel<scalar_t><<<blocks_for(n * n_levels), kThreads, 0, current_stream()>>>(
        n, n_levels, x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), t_size, n_feat, lv,
        out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out.permute({1, 0, 2}).reshape({n, n_levels * n_feat});
}

Tensors hash_encode_backward_cuda(const at::Tensor& g_out, const at::Tensor& x, const at::Tensor& table,
                                  const std::vector<HashLevel>& levels, bool need_x) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = x.size(0), n_levels = table.size(0), t_size = table.size(1);
  const int n_feat = int(table.size(2));
  const LevelArray lv = pack_levels(levels);
  auto g_level = g_out.view({n, n_levels, n_feat}).permute({1, 0, 2}).contiguous();  // [L, N, F]
  auto g_table = at::zeros_like(table);
  auto g_x = need_x ? at::zeros_like(x) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_backward_cuda", [&] {
    hash_backward_table_kernel<scalar_t><<<blocks_for(n * n_levels), kThreads, 0, current_stream()>>>(
        n, n_levels, x.data_ptr<scalar_t>(), g_level.data_ptr<scalar_t>(), t_size, n_feat, lv,
        g_table.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (need_x) {
      hash_backward_x_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
          n, n_levels, x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), g_level.data_ptr<scalar_t>(), t_size,
          n_feat, lv, g_x.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {g_table, g_x};
}

}  // namespace onefield
