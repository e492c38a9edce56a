// CUDA launchers of the splat ops: projection one thread a Gaussian; compositing one thread a pixel,
// reading its tile's depth-sorted list from global memory, the backward scattering per-Gaussian
// gradients with atomicAdd. A plain kernel, the same algorithm as the CPU one (splat_core.h); using
// gsplat's shared-memory rasterizer on CUDA when it is installed is not wired yet (issue 16).
#include "cuda_common.cuh"
#include "ops.h"

namespace onefield {
namespace {

template <typename T>
__global__ void splat_project_forward_kernel(int64_t n, const T* mu, const T* q, const T* sc, const T* op,
                                             SplatCamera cam, int32_t* rad, T* m2, T* dep, T* con, T* oo) {
  const int64_t g = thread_index();
  if (g >= n) return;
  SplatProjection<T> s;
  if (!splat_project_one(mu + 3 * g, q + 4 * g, sc + 3 * g, op[g], cam, s)) return;  // outputs stay zero
  rad[2 * g] = s.radius[0];
  rad[2 * g + 1] = s.radius[1];
  m2[2 * g] = s.mean2d[0];
  m2[2 * g + 1] = s.mean2d[1];
  dep[g] = s.p[2];
  for (int k = 0; k < 3; ++k) con[3 * g + k] = s.conic[k];
  oo[g] = s.opacity;
}

template <typename T>
__global__ void splat_project_backward_kernel(int64_t n, const T* mu, const T* q, const T* sc, const T* op,
                                              SplatCamera cam, const int32_t* rad, const T* gm2, const T* gd,
                                              const T* gc, const T* go, T* gmu, T* gq, T* gs, T* gop) {
  const int64_t g = thread_index();
  if (g >= n || (rad[2 * g] == 0 && rad[2 * g + 1] == 0)) return;
  SplatProjection<T> s;
  if (!splat_project_one(mu + 3 * g, q + 4 * g, sc + 3 * g, op[g], cam, s)) return;
  splat_project_backward_one(sc + 3 * g, cam, s, gm2 + 2 * g, gd[g], gc + 3 * g, go[g], gmu + 3 * g, gq + 4 * g,
                             gs + 3 * g, gop + g);
}

template <typename T>
__global__ void splat_rasterize_forward_kernel(int64_t width, int64_t height, int64_t tile, int64_t tiles_x,
                                               const int64_t* off, const int64_t* ids, const T* m2,
                                               const int32_t* rad, const T* con, const T* col, const T* op,
                                               const T* bg, int C, T* img, T* tr, int64_t* lst) {
  const int64_t pix = thread_index();
  if (pix >= width * height) return;
  const int64_t x = pix % width, y = pix / width;
  const int64_t t = (y / tile) * tiles_x + x / tile;
  tr[pix] = splat_composite_one(ids, off[t], off[t + 1], m2, rad, con, col, op, bg, C, T(x) + T(0.5), T(y) + T(0.5),
                                img + C * pix, lst + pix);
}

template <typename T>
__global__ void splat_rasterize_backward_kernel(int64_t width, int64_t height, int64_t tile, int64_t tiles_x,
                                                const int64_t* off, const int64_t* ids, const int64_t* lst,
                                                const T* m2, const int32_t* rad, const T* con, const T* col,
                                                const T* op, const T* bg,
                                                int C, const T* tr, const T* gi, const T* ga, T* gm2, T* gcon,
                                                T* gcol, T* gop) {
  const int64_t pix = thread_index();
  if (pix >= width * height) return;
  const int64_t x = pix % width, y = pix / width;
  const int64_t t = (y / tile) * tiles_x + x / tile;
  splat_composite_backward_one(ids, off[t], lst[pix], m2, rad, con, col, op, bg, C, T(x) + T(0.5), T(y) + T(0.5),
                               tr[pix], gi + C * pix, ga[pix], gm2, gcon, gcol, gop, AtomicAdd{});
}

template <typename T>
__global__ void splat_sh_forward_kernel(int64_t n, int64_t K, int degree, const T* mu, const T* co, const T* cam,
                                        T* out) {
  const int64_t g = thread_index();
  if (g < n) splat_sh_forward_one(mu + 3 * g, co + 3 * K * g, degree, cam, out + 3 * g);
}

template <typename T>
__global__ void splat_query_kernel(int64_t m, int64_t K, int degree, const T* x, const T* dirs, const T* origin,
                                   SplatLatticeView lattice, const T* lo, const T* hi, const T* means, const T* whiten,
                                   const T* peak, const T* sh, T* sigma, T* rgb) {
  const int64_t i = thread_index();
  if (i < m)
    splat_query_one(x + 3 * i, dirs ? dirs + 3 * i : nullptr, origin, lattice, lo, hi, means, whiten, peak, sh, int(K),
                    degree, sigma + i, rgb ? rgb + 3 * i : nullptr);
}

template <typename T>
__global__ void splat_sh_backward_kernel(int64_t n, int64_t K, int degree, const T* mu, const T* co, const T* cam,
                                         const T* gr, T* gc, T* gm) {
  const int64_t g = thread_index();
  if (g < n) splat_sh_backward_one(mu + 3 * g, co + 3 * K * g, int(K), degree, cam, gr + 3 * g, gc + 3 * K * g, gm + 3 * g);
}

}  // namespace

Tensors splat_project_forward_cuda(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                   const at::Tensor& opacities, const SplatCamera& cam) {
  const c10::cuda::CUDAGuard guard(means.device());
  const int64_t n = means.size(0);
  auto radii = at::zeros({n, 2}, means.options().dtype(at::kInt));
  auto means2d = at::zeros({n, 2}, means.options());
  auto depths = at::zeros({n}, means.options());
  auto conics = at::zeros({n, 3}, means.options());
  auto opac = at::zeros({n}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_project_forward_cuda", [&] {
    splat_project_forward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        n, means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
        opacities.data_ptr<scalar_t>(), cam, radii.data_ptr<int32_t>(), means2d.data_ptr<scalar_t>(),
        depths.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), opac.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {radii, means2d, depths, conics, opac};
}

Tensors splat_project_backward_cuda(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                    const at::Tensor& opacities, const SplatCamera& cam, const at::Tensor& radii,
                                    const at::Tensor& g_means2d, const at::Tensor& g_depths,
                                    const at::Tensor& g_conics, const at::Tensor& g_opac) {
  const c10::cuda::CUDAGuard guard(means.device());
  const int64_t n = means.size(0);
  auto g_means = at::zeros_like(means);
  auto g_quats = at::zeros_like(quats);
  auto g_scales = at::zeros_like(scales);
  auto g_opacities = at::zeros_like(opacities);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_project_backward_cuda", [&] {
    splat_project_backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        n, means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
        opacities.data_ptr<scalar_t>(), cam, radii.data_ptr<int32_t>(), g_means2d.data_ptr<scalar_t>(),
        g_depths.data_ptr<scalar_t>(), g_conics.data_ptr<scalar_t>(), g_opac.data_ptr<scalar_t>(),
        g_means.data_ptr<scalar_t>(), g_quats.data_ptr<scalar_t>(), g_scales.data_ptr<scalar_t>(),
        g_opacities.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {g_means, g_quats, g_scales, g_opacities};
}

Tensors splat_rasterize_forward_cuda(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& conics,
                                     const at::Tensor& colors, const at::Tensor& opacities, const at::Tensor& background,
                                     const at::Tensor& tile_offsets, const at::Tensor& flatten_ids, int64_t width,
                                     int64_t height, int64_t tile) {
  const c10::cuda::CUDAGuard guard(means2d.device());
  const int64_t C = colors.size(1);
  auto image = at::empty({height, width, C}, colors.options());
  auto trans = at::empty({height, width}, colors.options());
  auto last = at::empty({height, width}, tile_offsets.options());
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "splat_rasterize_forward_cuda", [&] {
    splat_rasterize_forward_kernel<scalar_t><<<blocks_for(width * height), kThreads, 0, current_stream()>>>(
        width, height, tile, (width + tile - 1) / tile, tile_offsets.data_ptr<int64_t>(),
        flatten_ids.data_ptr<int64_t>(), means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
        conics.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(),
        background.data_ptr<scalar_t>(), int(C), image.data_ptr<scalar_t>(), trans.data_ptr<scalar_t>(), last.data_ptr<int64_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {image, trans, last};
}

Tensors splat_rasterize_backward_cuda(const at::Tensor& g_image, const at::Tensor& g_alpha,
                                      const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& conics,
                                      const at::Tensor& colors, const at::Tensor& opacities,
                                      const at::Tensor& background,
                                      const at::Tensor& tile_offsets, const at::Tensor& flatten_ids,
                                      const at::Tensor& trans, const at::Tensor& last, int64_t width,
                                      int64_t height, int64_t tile) {
  const c10::cuda::CUDAGuard guard(means2d.device());
  const int64_t n = means2d.size(0), C = colors.size(1);
  auto g_means2d = at::zeros({n, 2}, colors.options());
  auto g_conics = at::zeros({n, 3}, colors.options());
  auto g_colors = at::zeros({n, C}, colors.options());
  auto g_opacities = at::zeros({n}, colors.options());
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "splat_rasterize_backward_cuda", [&] {
    splat_rasterize_backward_kernel<scalar_t><<<blocks_for(width * height), kThreads, 0, current_stream()>>>(
        width, height, tile, (width + tile - 1) / tile, tile_offsets.data_ptr<int64_t>(),
        flatten_ids.data_ptr<int64_t>(), last.data_ptr<int64_t>(), means2d.data_ptr<scalar_t>(),
        radii.data_ptr<int32_t>(), conics.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(),
        background.data_ptr<scalar_t>(), int(C), trans.data_ptr<scalar_t>(), g_image.data_ptr<scalar_t>(),
        g_alpha.data_ptr<scalar_t>(), g_means2d.data_ptr<scalar_t>(), g_conics.data_ptr<scalar_t>(),
        g_colors.data_ptr<scalar_t>(), g_opacities.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {g_means2d, g_conics, g_colors, g_opacities};
}

Tensors splat_sh_forward_cuda(const at::Tensor& means, const at::Tensor& coeffs, const at::Tensor& campos,
                              int64_t degree) {
  const c10::cuda::CUDAGuard guard(means.device());
  const int64_t n = means.size(0), K = coeffs.size(1);
  auto rgb = at::empty({n, 3}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_sh_forward_cuda", [&] {
    splat_sh_forward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        n, K, int(degree), means.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(), campos.data_ptr<scalar_t>(),
        rgb.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {rgb};
}

Tensors splat_sh_backward_cuda(const at::Tensor& means, const at::Tensor& coeffs, const at::Tensor& campos,
                               int64_t degree, const at::Tensor& g_rgb) {
  const c10::cuda::CUDAGuard guard(means.device());
  const int64_t n = means.size(0), K = coeffs.size(1);
  auto g_coeffs = at::empty_like(coeffs);
  auto g_means = at::empty_like(means);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_sh_backward_cuda", [&] {
    splat_sh_backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        n, K, int(degree), means.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(), campos.data_ptr<scalar_t>(),
        g_rgb.data_ptr<scalar_t>(), g_coeffs.data_ptr<scalar_t>(), g_means.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {g_coeffs, g_means};
}

Tensors splat_query_cuda(const at::Tensor& x, const at::Tensor& dirs, const at::Tensor& origin, const at::Tensor& cell,
                         const at::Tensor& dims, const at::Tensor& offsets, const at::Tensor& keys,
                         const at::Tensor& boxes, const at::Tensor& lo, const at::Tensor& hi, const at::Tensor& means,
                         const at::Tensor& whiten, const at::Tensor& peak, const at::Tensor& sh, int64_t degree) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t m = x.size(0), K = sh.size(1);
  const bool colour = dirs.size(0) > 0;
  auto sigma = at::empty({m}, x.options());
  auto rgb = at::empty({colour ? m : 0, 3}, x.options());
  const SplatLatticeView lattice = splat_lattice_view(cell, dims, offsets, keys, boxes);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "splat_query_cuda", [&] {
    splat_query_kernel<scalar_t><<<blocks_for(m), kThreads, 0, current_stream()>>>(
        m, K, int(degree), x.data_ptr<scalar_t>(), colour ? dirs.data_ptr<scalar_t>() : nullptr,
        origin.data_ptr<scalar_t>(), lattice, lo.data_ptr<scalar_t>(), hi.data_ptr<scalar_t>(),
        means.data_ptr<scalar_t>(), whiten.data_ptr<scalar_t>(), peak.data_ptr<scalar_t>(), sh.data_ptr<scalar_t>(),
        sigma.data_ptr<scalar_t>(), colour ? rgb.data_ptr<scalar_t>() : nullptr);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {sigma, rgb};
}

}  // namespace onefield
