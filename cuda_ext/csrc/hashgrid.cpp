// CPU launchers: hash encoding forward (parallel over points) and backward. The table gradient is
// parallel over levels, so each thread owns its rows and needs no atomics.
#include <ATen/Parallel.h>

#include <algorithm>

#include "ops.h"

namespace onefield {

namespace {
constexpr int64_t kPointBlock = 4096;
constexpr int64_t kBatch = 16;       // points whose 8 rows are located and prefetched before use
constexpr int64_t kRowBlock = 512;   // points per block of the float, 2-feature forward and of d/dx

// Runs fn(rows, weights, i) for points [first, last) of one level. Rows of a batch of points are
// computed and prefetched first: the table slices are bigger than L2, and issuing the batch's
// 128 loads up front keeps many cache misses in flight instead of one point's worth.
template <typename T, typename Fn>
void for_each_point_corners(const T* x, const HashLevel& lv, int64_t table_size, int n_feat,
                            const T* table, int64_t first, int64_t last, Fn fn) {
  int64_t rows[kBatch][8];
  T weights[kBatch][8];
  for (int64_t b = first; b < last; b += kBatch) {
    const int64_t m = std::min(kBatch, last - b);
    for (int64_t j = 0; j < m; ++j) {
      hash_corners(x + 3 * (b + j), lv, table_size, rows[j], weights[j]);
      for (int c = 0; c < 8; ++c) __builtin_prefetch(table + rows[j][c] * n_feat);
    }
    for (int64_t j = 0; j < m; ++j) fn(rows[j], weights[j], b + j);
  }
}
}  // namespace

at::Tensor hash_encode_forward_cpu(const at::Tensor& x, const at::Tensor& table,
                                   const std::vector<HashLevel>& levels) {
  const int64_t n = x.size(0), n_levels = table.size(0), t_size = table.size(1);
  const int n_feat = int(table.size(2));
  if (x.scalar_type() == at::kFloat && n_feat == 2) {
    // Float tables with 2 features per level, the common case. Blocks of points outermost, levels
    // inside: a block's output rows [512, L*2] (64 KB) stay in L2 while each level writes its 8 bytes
    // of them, so the result needs no level-major slab and transpose (a sixth of the time at 700K
    // points); the tables are read with the batch's prefetches as below.
    auto out = at::empty({n, n_levels * 2}, x.options());
    const float* xp = x.data_ptr<float>();
    const float* tab = table.data_ptr<float>();
    float* o = out.data_ptr<float>();
    const int64_t stride = n_levels * 2;
    at::parallel_for(0, (n + kRowBlock - 1) / kRowBlock, 1, [&](int64_t begin, int64_t end) {
      for (int64_t block = begin; block < end; ++block) {
        const int64_t first = block * kRowBlock, last = std::min(first + kRowBlock, n);
        for (int64_t l = 0; l < n_levels; ++l) {
          const float* level_tab = tab + l * t_size * 2;
          for_each_point_corners(xp, levels[l], t_size, 2, level_tab, first, last,
                                 [&](const int64_t* rows, const float* w, int64_t i) {
                                   // hash_accumulate's sums, with the feature count known
                                   float a0 = 0.f, a1 = 0.f;
                                   for (int c = 0; c < 8; ++c) {
                                     a0 += w[c] * level_tab[2 * rows[c]];
                                     a1 += w[c] * level_tab[2 * rows[c] + 1];
                                   }
                                   o[i * stride + 2 * l] = a0;
                                   o[i * stride + 2 * l + 1] = a1;
                                 });
        }
      }
    });
    return out;
  }
  // Level-major everything: one level's table slice stays cache-resident while a block of points
  // reads it, and each level writes its own contiguous [N, F] slab. (Point-major order cycles
  // through all L table slices per point; writing [N, L*F] directly from a level-major loop
  // touches one cache line per point and level. Both were ~3x slower here.)
  auto out = at::empty({n_levels, n, n_feat}, x.options());
  const int64_t n_blocks = (n + kPointBlock - 1) / kPointBlock;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_forward_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* tab = table.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n_levels * n_blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t l = item / n_blocks, first = (item % n_blocks) * kPointBlock;
        const scalar_t* level_tab = tab + l * t_size * n_feat;
        for_each_point_corners(xp, levels[l], t_size, n_feat, level_tab, first,
                               std::min(first + kPointBlock, n),
                               [&](const int64_t* rows, const scalar_t* w, int64_t i) {
                                 hash_accumulate(rows, w, level_tab, n_feat, o + (l * n + i) * n_feat);
                               });
      }
    });
  });
  return out.permute({1, 0, 2}).reshape({n, n_levels * n_feat});
}

Tensors hash_encode_backward_cpu(const at::Tensor& g_out, const at::Tensor& x, const at::Tensor& table,
                                 const std::vector<HashLevel>& levels, bool need_x) {
  const int64_t n = x.size(0), n_levels = table.size(0), t_size = table.size(1);
  const int n_feat = int(table.size(2));
  auto g_level = g_out.view({n, n_levels, n_feat}).permute({1, 0, 2}).contiguous();  // [L, N, F]
  auto g_table = at::empty_like(table);  // each level's slice is zeroed by the thread that fills it
  auto g_x = need_x ? at::zeros_like(x) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_backward_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* tab = table.data_ptr<scalar_t>();
    const scalar_t* go = g_level.data_ptr<scalar_t>();
    scalar_t* gt = g_table.data_ptr<scalar_t>();
    auto add = [](scalar_t* p, scalar_t v) { *p += v; };
    at::parallel_for(0, n_levels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t l = begin; l < end; ++l) {
        scalar_t* level_gt = gt + l * t_size * n_feat;
        std::fill_n(level_gt, t_size * n_feat, scalar_t(0));
        if (n_feat == 2) {  // hash_scatter's adds, in its order, with the feature count known
          for_each_point_corners(xp, levels[l], t_size, 2, level_gt, 0, n,
                                 [&](const int64_t* rows, const scalar_t* w, int64_t i) {
                                   const scalar_t g0 = go[(l * n + i) * 2], g1 = go[(l * n + i) * 2 + 1];
                                   for (int c = 0; c < 8; ++c) {
                                     level_gt[2 * rows[c]] += w[c] * g0;
                                     level_gt[2 * rows[c] + 1] += w[c] * g1;
                                   }
                                 });
          continue;
        }
        for_each_point_corners(xp, levels[l], t_size, n_feat, level_gt, 0, n,
                               [&](const int64_t* rows, const scalar_t* w, int64_t i) {
                                 hash_scatter(rows, w, n_feat, go + (l * n + i) * n_feat, level_gt, add);
                               });
      }
    });
    if (need_x) {
      // Blocks of points outermost, levels inside, each level's rows located and prefetched in
      // batches (the forward's order): a walk through all L table slices per point missed cache on
      // every corner (d/dx took 2.8x as long, bench_hashgrid). Each point still adds its levels in
      // order, so g_x is the same sum.
      scalar_t* gx = g_x.data_ptr<scalar_t>();
      at::parallel_for(0, (n + kRowBlock - 1) / kRowBlock, 1, [&](int64_t begin, int64_t end) {
        for (int64_t block = begin; block < end; ++block) {
          const int64_t first = block * kRowBlock, last = std::min(first + kRowBlock, n);
          for (int64_t l = 0; l < n_levels; ++l) {
            const scalar_t* level_tab = tab + l * t_size * n_feat;
            for_each_point_corners(xp, levels[l], t_size, n_feat, level_tab, first, last,
                                   [&](const int64_t* rows, const scalar_t*, int64_t i) {
                                     hash_backward_x_rows(xp + 3 * i, levels[l], rows, level_tab, n_feat,
                                                          go + (l * n + i) * n_feat, gx + 3 * i);
                                   });
          }
        }
      });
    }
  });
  return {g_table, g_x};
}

}  // namespace onefield
