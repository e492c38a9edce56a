// 3D Gaussian splatting: per-Gaussian EWA projection and per-pixel front-to-back compositing,
// forward and hand-written backward, shared by the CPU and CUDA launchers (splat.cpp, splat_cuda.cu).
// The twin is onefield/cuda_ext/splat_reference.py; both follow gsplat's fused 3DGS projection and
// rasterizer (the same clamps and culls), with the original 3DGS alpha clamp of 0.99.
//
// Projection of Gaussian (mean mu, rotation quaternion q (w, x, y, z, any norm), scales s, opacity o):
//   p = W mu + t (camera space, OpenCV: z forward), Sigma = R(q) S S^T R(q)^T, Sigma_c = W Sigma W^T,
//   J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]] with tx/z, ty/z clamped to 1.3x the field of
//   view, Sigma_2d = J Sigma_c J^T + eps I (the low-pass dilation), conic = Sigma_2d^-1;
//   antialiased: o * sqrt(det(Sigma_2d - eps I) / det(Sigma_2d)) (opacity compensation, Mip-Splatting);
//   radius = ceil(min(3.33, sqrt(2 ln(255 o))) sqrt(diag Sigma_2d)): the opacity-aware 3-sigma box.
// A culled Gaussian (behind the near plane, past far, degenerate, transparent, off screen) gets
// radius 0, zero outputs and zero gradients.
#pragma once

#include "hd.h"

namespace onefield {

constexpr float SPLAT_ALPHA_MIN = 1.0f / 255.0f;  // a pixel ignores a Gaussian fainter than this
constexpr float SPLAT_ALPHA_MAX = 0.99f;          // alpha clamp: T never reaches 0
constexpr float SPLAT_T_MIN = 1e-4f;              // a pixel stops before transmittance drops to this
constexpr float SPLAT_EXTENT = 3.33f;             // the 3-sigma box, with gsplat's margin
constexpr float SPLAT_FOV_CLAMP = 0.3f;           // tx/z, ty/z clamped to the image plus 0.3x the half-FOV

struct SplatCamera {
  float w2c[12];  // row-major [3, 4]: world to camera (OpenCV)
  float fx, fy, cx, cy;
  int width, height;
  float near_plane, far_plane, eps2d;
  bool antialiased;
};

// R(q) for a unit quaternion (w, x, y, z), row-major.
template <typename T> OF_HD void splat_rotation(const T q[4], T R[3][3]) {
  const T w = q[0], x = q[1], y = q[2], z = q[3];
  R[0][0] = T(1) - T(2) * (y * y + z * z); R[0][1] = T(2) * (x * y - w * z); R[0][2] = T(2) * (x * z + w * y);
  R[1][0] = T(2) * (x * y + w * z); R[1][1] = T(1) - T(2) * (x * x + z * z); R[1][2] = T(2) * (y * z - w * x);
  R[2][0] = T(2) * (x * z - w * y); R[2][1] = T(2) * (y * z + w * x); R[2][2] = T(1) - T(2) * (x * x + y * y);
}

// Everything the backward pass needs again, recomputed from the inputs (cheaper than storing it).
template <typename T> struct SplatProjection {
  T qn[4], qnorm, R[3][3], M[3][3], cov_c[3][3], W[3][3];
  T p[3], tx, ty, ux, uy;  // camera-space mean, clamped tx/ty, clamped x/z, y/z
  bool clip_x, clip_y;
  T J[2][3], a0, b, c0, a, c, det, comp, opacity_in, opacity;  // opacity: compensated when antialiased
  int radius[2];
  T mean2d[2], conic[3];
};

// Forward for one Gaussian; false when it is culled (then only radius is meaningful: 0, 0).
template <typename T>
OF_HD bool splat_project_one(const T* mean, const T* quat, const T* scale, T opacity,
                             const SplatCamera& cam, SplatProjection<T>& s) {
  s.radius[0] = s.radius[1] = 0;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) s.W[i][j] = T(cam.w2c[4 * i + j]);
    s.p[i] = s.W[i][0] * mean[0] + s.W[i][1] * mean[1] + s.W[i][2] * mean[2] + T(cam.w2c[4 * i + 3]);
  }
  const T z = s.p[2];
  if (!(z >= T(cam.near_plane) && z <= T(cam.far_plane))) return false;
  s.qnorm = of_sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
  if (!(s.qnorm > T(0))) return false;
  for (int i = 0; i < 4; ++i) s.qn[i] = quat[i] / s.qnorm;
  splat_rotation(s.qn, s.R);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) s.M[i][j] = s.R[i][j] * scale[j];
  T cov[3][3], WC[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) cov[i][j] = s.M[i][0] * s.M[j][0] + s.M[i][1] * s.M[j][1] + s.M[i][2] * s.M[j][2];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) WC[i][j] = s.W[i][0] * cov[0][j] + s.W[i][1] * cov[1][j] + s.W[i][2] * cov[2][j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) s.cov_c[i][j] = WC[i][0] * s.W[j][0] + WC[i][1] * s.W[j][1] + WC[i][2] * s.W[j][2];

  const T fx = T(cam.fx), fy = T(cam.fy), cx = T(cam.cx), cy = T(cam.cy);
  const T tan_x = T(0.5f) * T(cam.width) / fx, tan_y = T(0.5f) * T(cam.height) / fy;
  const T lim_xp = (T(cam.width) - cx) / fx + T(SPLAT_FOV_CLAMP) * tan_x;
  const T lim_xn = cx / fx + T(SPLAT_FOV_CLAMP) * tan_x;
  const T lim_yp = (T(cam.height) - cy) / fy + T(SPLAT_FOV_CLAMP) * tan_y;
  const T lim_yn = cy / fy + T(SPLAT_FOV_CLAMP) * tan_y;
  const T rx = s.p[0] / z, ry = s.p[1] / z;
  s.clip_x = rx < -lim_xn || rx > lim_xp;
  s.clip_y = ry < -lim_yn || ry > lim_yp;
  s.ux = of_clamp(rx, -lim_xn, lim_xp);
  s.uy = of_clamp(ry, -lim_yn, lim_yp);
  s.tx = z * s.ux;
  s.ty = z * s.uy;
  const T z2 = z * z;
  s.J[0][0] = fx / z; s.J[0][1] = T(0); s.J[0][2] = -fx * s.tx / z2;
  s.J[1][0] = T(0); s.J[1][1] = fy / z; s.J[1][2] = -fy * s.ty / z2;
  T JC[2][3];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      JC[i][j] = s.J[i][0] * s.cov_c[0][j] + s.J[i][1] * s.cov_c[1][j] + s.J[i][2] * s.cov_c[2][j];
  s.a0 = JC[0][0] * s.J[0][0] + JC[0][1] * s.J[0][1] + JC[0][2] * s.J[0][2];
  s.b = JC[0][0] * s.J[1][0] + JC[0][1] * s.J[1][1] + JC[0][2] * s.J[1][2];
  s.c0 = JC[1][0] * s.J[1][0] + JC[1][1] * s.J[1][1] + JC[1][2] * s.J[1][2];

  const T eps = T(cam.eps2d);
  s.a = s.a0 + eps;
  s.c = s.c0 + eps;
  s.det = s.a * s.c - s.b * s.b;
  if (!(s.det > T(0))) return false;
  const T ratio = (s.a0 * s.c0 - s.b * s.b) / s.det;
  s.comp = ratio > T(0) ? of_sqrt(ratio) : T(0);
  s.opacity_in = opacity;
  s.opacity = cam.antialiased ? opacity * s.comp : opacity;
  if (!(s.opacity >= T(SPLAT_ALPHA_MIN))) return false;
  const T extent = of_min(T(SPLAT_EXTENT), of_sqrt(T(2) * of_log(s.opacity / T(SPLAT_ALPHA_MIN))));
  const T rad_x = of_ceil(extent * of_sqrt(s.a)), rad_y = of_ceil(extent * of_sqrt(s.c));
  s.mean2d[0] = fx * s.p[0] / z + cx;
  s.mean2d[1] = fy * s.p[1] / z + cy;
  if (s.mean2d[0] + rad_x <= T(0) || s.mean2d[0] - rad_x >= T(cam.width) ||
      s.mean2d[1] + rad_y <= T(0) || s.mean2d[1] - rad_y >= T(cam.height))
    return false;
  s.radius[0] = int(rad_x);
  s.radius[1] = int(rad_y);
  s.conic[0] = s.c / s.det;
  s.conic[1] = -s.b / s.det;
  s.conic[2] = s.a / s.det;
  return true;
}

// Backward for one Gaussian that was not culled: gradients of the mean (2-d), depth, conic and the
// (compensated) opacity -> gradients of mean, quat, scale and opacity (written, not accumulated).
template <typename T>
OF_HD void splat_project_backward_one(const T* scale, const SplatCamera& cam, const SplatProjection<T>& s,
                                      const T* g_mean2d, T g_depth, const T* g_conic, T g_opac,
                                      T* g_mean, T* g_quat, T* g_scale, T* g_opacity) {
  const T fx = T(cam.fx), fy = T(cam.fy);
  // opacity and compensation
  T g_comp = T(0);
  if (cam.antialiased) {
    *g_opacity = g_opac * s.comp;
    g_comp = g_opac * s.opacity_in;
  } else {
    *g_opacity = g_opac;
  }
  // conic = (c, -b, a) / det, det = a c - b^2
  const T id = T(1) / s.det, id2 = id * id;
  T g_a = g_conic[0] * (-s.c * s.c * id2) + g_conic[1] * (s.b * s.c * id2) + g_conic[2] * (id - s.a * s.c * id2);
  T g_b = g_conic[0] * (T(2) * s.b * s.c * id2) + g_conic[1] * (-id - T(2) * s.b * s.b * id2) +
          g_conic[2] * (T(2) * s.a * s.b * id2);
  T g_c = g_conic[0] * (id - s.c * s.a * id2) + g_conic[1] * (s.b * s.a * id2) + g_conic[2] * (-s.a * s.a * id2);
  // comp = sqrt((a0 c0 - b^2) / det)
  if (cam.antialiased && s.comp > T(0)) {
    const T r = s.comp * s.comp, k = g_comp / (s.comp * s.det);
    g_a += k * T(0.5) * (s.c0 - r * s.c);
    g_b += -k * s.b * (T(1) - r);
    g_c += k * T(0.5) * (s.a0 - r * s.a);
  }
  // Sigma_2d = J Sigma_c J^T: G (symmetric, b counted on both off-diagonals)
  const T G[2][2] = {{g_a, T(0.5) * g_b}, {T(0.5) * g_b, g_c}};
  T GJ[2][3], g_covc[3][3], g_J[2][3];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) GJ[i][j] = G[i][0] * s.J[0][j] + G[i][1] * s.J[1][j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) g_covc[i][j] = s.J[0][i] * GJ[0][j] + s.J[1][i] * GJ[1][j];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      g_J[i][j] = T(2) * (GJ[i][0] * s.cov_c[0][j] + GJ[i][1] * s.cov_c[1][j] + GJ[i][2] * s.cov_c[2][j]);
  // camera-space mean: through J, the 2-d mean and the depth
  const T z = s.p[2], z2 = z * z, z3 = z2 * z;
  T g_p[3] = {T(0), T(0), g_depth};
  g_p[2] += g_J[0][0] * (-fx / z2) + g_J[1][1] * (-fy / z2) + g_J[0][2] * (T(2) * fx * s.tx / z3) +
            g_J[1][2] * (T(2) * fy * s.ty / z3);
  const T g_tx = g_J[0][2] * (-fx / z2), g_ty = g_J[1][2] * (-fy / z2);
  if (s.clip_x) g_p[2] += g_tx * s.ux; else g_p[0] += g_tx;
  if (s.clip_y) g_p[2] += g_ty * s.uy; else g_p[1] += g_ty;
  g_p[0] += g_mean2d[0] * fx / z;
  g_p[1] += g_mean2d[1] * fy / z;
  g_p[2] -= (g_mean2d[0] * fx * s.p[0] + g_mean2d[1] * fy * s.p[1]) / z2;
  for (int j = 0; j < 3; ++j) g_mean[j] = s.W[0][j] * g_p[0] + s.W[1][j] * g_p[1] + s.W[2][j] * g_p[2];
  // Sigma_c = W Sigma W^T -> g_Sigma = W^T g_Sigma_c W; Sigma = M M^T -> g_M = (g + g^T) M
  T tmp[3][3], g_cov[3][3], g_M[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) tmp[i][j] = g_covc[i][0] * s.W[0][j] + g_covc[i][1] * s.W[1][j] + g_covc[i][2] * s.W[2][j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) g_cov[i][j] = s.W[0][i] * tmp[0][j] + s.W[1][i] * tmp[1][j] + s.W[2][i] * tmp[2][j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      T acc = T(0);
      for (int k = 0; k < 3; ++k) acc += (g_cov[i][k] + g_cov[k][i]) * s.M[k][j];
      g_M[i][j] = acc;
    }
  // M = R diag(s)
  T gR[3][3];
  for (int j = 0; j < 3; ++j) {
    g_scale[j] = g_M[0][j] * s.R[0][j] + g_M[1][j] * s.R[1][j] + g_M[2][j] * s.R[2][j];
    for (int i = 0; i < 3; ++i) gR[i][j] = g_M[i][j] * scale[j];
  }
  // R(q_n), q_n = q / |q|
  const T w = s.qn[0], x = s.qn[1], y = s.qn[2], zq = s.qn[3];
  T gq[4];
  gq[0] = T(2) * (-zq * gR[0][1] + y * gR[0][2] + zq * gR[1][0] - x * gR[1][2] - y * gR[2][0] + x * gR[2][1]);
  gq[1] = T(2) * (y * gR[0][1] + zq * gR[0][2] + y * gR[1][0] - T(2) * x * gR[1][1] - w * gR[1][2] + zq * gR[2][0] +
                  w * gR[2][1] - T(2) * x * gR[2][2]);
  gq[2] = T(2) * (-T(2) * y * gR[0][0] + x * gR[0][1] + w * gR[0][2] + x * gR[1][0] + zq * gR[1][2] - w * gR[2][0] +
                  zq * gR[2][1] - T(2) * y * gR[2][2]);
  gq[3] = T(2) * (-T(2) * zq * gR[0][0] - w * gR[0][1] + x * gR[0][2] + w * gR[1][0] - T(2) * zq * gR[1][1] +
                  y * gR[1][2] + x * gR[2][0] + y * gR[2][1]);
  const T dot = gq[0] * w + gq[1] * x + gq[2] * y + gq[3] * zq;
  for (int i = 0; i < 4; ++i) g_quat[i] = (gq[i] - s.qn[i] * dot) / s.qnorm;
}

// View-dependent colour (3DGS): rgb = max(sum_k SH_k(dir) coeffs_k + 0.5, 0) with dir the unit vector
// from the camera centre to the mean; the real SH basis of 3DGS, its signs and order, up to degree 3.
constexpr double SH_C0 = 0.28209479177387814, SH_C1 = 0.4886025119029199;
// (scalars, not arrays: constexpr arrays are not visible in CUDA device code)
constexpr double SH_C2_0 = 1.0925484305920792, SH_C2_1 = -1.0925484305920792, SH_C2_2 = 0.31539156525252005,
                 SH_C2_3 = -1.0925484305920792, SH_C2_4 = 0.5462742152960396;
constexpr double SH_C3_0 = -0.5900435899266435, SH_C3_1 = 2.890611442640554, SH_C3_2 = -0.4570457994644658,
                 SH_C3_3 = 0.3731763325901154, SH_C3_4 = -0.4570457994644658, SH_C3_5 = 1.445305721320277,
                 SH_C3_6 = -0.5900435899266435;

// basis b[(degree + 1)^2] at unit direction (x, y, z); with db (not null) also db/dx, db/dy, db/dz
// as db[3 * k + axis].
template <typename T>
OF_HD void splat_sh_basis(int degree, T x, T y, T z, T* b, T* db) {
  b[0] = T(SH_C0);
  if (db) db[0] = db[1] = db[2] = T(0);
  if (degree < 1) return;
  b[1] = -T(SH_C1) * y;
  b[2] = T(SH_C1) * z;
  b[3] = -T(SH_C1) * x;
  if (db) {
    const T d[9] = {T(0), -T(SH_C1), T(0), T(0), T(0), T(SH_C1), -T(SH_C1), T(0), T(0)};
    for (int i = 0; i < 9; ++i) db[3 + i] = d[i];
  }
  if (degree < 2) return;
  const T xx = x * x, yy = y * y, zz = z * z;
  b[4] = T(SH_C2_0) * x * y;
  b[5] = T(SH_C2_1) * y * z;
  b[6] = T(SH_C2_2) * (T(2) * zz - xx - yy);
  b[7] = T(SH_C2_3) * x * z;
  b[8] = T(SH_C2_4) * (xx - yy);
  if (db) {
    const T d[15] = {T(SH_C2_0) * y, T(SH_C2_0) * x, T(0),
                     T(0), T(SH_C2_1) * z, T(SH_C2_1) * y,
                     T(SH_C2_2) * (-T(2) * x), T(SH_C2_2) * (-T(2) * y), T(SH_C2_2) * (T(4) * z),
                     T(SH_C2_3) * z, T(0), T(SH_C2_3) * x,
                     T(SH_C2_4) * (T(2) * x), T(SH_C2_4) * (-T(2) * y), T(0)};
    for (int i = 0; i < 15; ++i) db[12 + i] = d[i];
  }
  if (degree < 3) return;
  b[9] = T(SH_C3_0) * y * (T(3) * xx - yy);
  b[10] = T(SH_C3_1) * x * y * z;
  b[11] = T(SH_C3_2) * y * (T(4) * zz - xx - yy);
  b[12] = T(SH_C3_3) * z * (T(2) * zz - T(3) * xx - T(3) * yy);
  b[13] = T(SH_C3_4) * x * (T(4) * zz - xx - yy);
  b[14] = T(SH_C3_5) * z * (xx - yy);
  b[15] = T(SH_C3_6) * x * (xx - T(3) * yy);
  if (db) {
    const T d[21] = {T(SH_C3_0) * (T(6) * x * y), T(SH_C3_0) * (T(3) * xx - T(3) * yy), T(0),
                     T(SH_C3_1) * (y * z), T(SH_C3_1) * (x * z), T(SH_C3_1) * (x * y),
                     T(SH_C3_2) * (-T(2) * x * y), T(SH_C3_2) * (T(4) * zz - xx - T(3) * yy),
                     T(SH_C3_2) * (T(8) * y * z),
                     T(SH_C3_3) * (-T(6) * x * z), T(SH_C3_3) * (-T(6) * y * z),
                     T(SH_C3_3) * (T(6) * zz - T(3) * xx - T(3) * yy),
                     T(SH_C3_4) * (T(4) * zz - T(3) * xx - yy), T(SH_C3_4) * (-T(2) * x * y),
                     T(SH_C3_4) * (T(8) * x * z),
                     T(SH_C3_5) * (T(2) * x * z), T(SH_C3_5) * (-T(2) * y * z), T(SH_C3_5) * (xx - yy),
                     T(SH_C3_6) * (T(3) * xx - T(3) * yy), T(SH_C3_6) * (-T(6) * x * y), T(0)};
    for (int i = 0; i < 21; ++i) db[27 + i] = d[i];
  }
}

// The unit direction from the camera centre to a mean, and the distance.
template <typename T> OF_HD T splat_view_dir(const T* mean, const T* campos, T* dir) {
  const T d[3] = {mean[0] - campos[0], mean[1] - campos[1], mean[2] - campos[2]};
  const T norm = of_max(of_sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), T(1e-12));
  for (int i = 0; i < 3; ++i) dir[i] = d[i] / norm;
  return norm;
}

// coeffs [K, 3] (K >= (degree + 1)^2) -> rgb [3].
template <typename T>
OF_HD void splat_sh_forward_one(const T* mean, const T* coeffs, int degree, const T* campos, T* rgb) {
  T dir[3], b[16];
  splat_view_dir(mean, campos, dir);
  splat_sh_basis<T>(degree, dir[0], dir[1], dir[2], b, nullptr);
  const int n = (degree + 1) * (degree + 1);
  for (int ch = 0; ch < 3; ++ch) {
    T v = T(0);
    for (int k = 0; k < n; ++k) v += b[k] * coeffs[3 * k + ch];
    v += T(0.5);
    rgb[ch] = v > T(0) ? v : T(0);
  }
}

// Backward: g_coeffs [K, 3] (written for the used bands, zeros beyond) and g_mean [3] (written).
template <typename T>
OF_HD void splat_sh_backward_one(const T* mean, const T* coeffs, int K, int degree, const T* campos, const T* g_rgb,
                                 T* g_coeffs, T* g_mean) {
  T dir[3], b[16], db[48];
  const T norm = splat_view_dir(mean, campos, dir);
  splat_sh_basis<T>(degree, dir[0], dir[1], dir[2], b, db);
  const int n = (degree + 1) * (degree + 1);
  T g_v[3];
  for (int ch = 0; ch < 3; ++ch) {
    T v = T(0);
    for (int k = 0; k < n; ++k) v += b[k] * coeffs[3 * k + ch];
    v += T(0.5);
    g_v[ch] = v >= T(0) ? g_rgb[ch] : T(0);  // the clamp at 0 passes the gradient where v >= 0
  }
  T g_dir[3] = {T(0), T(0), T(0)};
  for (int k = 0; k < K; ++k)
    for (int ch = 0; ch < 3; ++ch) g_coeffs[3 * k + ch] = k < n ? b[k] * g_v[ch] : T(0);
  for (int k = 1; k < n; ++k) {
    const T g_b = coeffs[3 * k] * g_v[0] + coeffs[3 * k + 1] * g_v[1] + coeffs[3 * k + 2] * g_v[2];
    for (int a = 0; a < 3; ++a) g_dir[a] += g_b * db[3 * k + a];
  }
  const T dot = g_dir[0] * dir[0] + g_dir[1] * dir[1] + g_dir[2] * dir[2];
  for (int a = 0; a < 3; ++a) g_mean[a] = (g_dir[a] - dir[a] * dot) / norm;
}

// One Gaussian's alpha at a pixel centre, or a negative value when the pixel skips it: outside the
// Gaussian's radius box (|dx| > rx or |dy| > ry: there alpha < 1/255 anyway, and a CPU tile sweep
// then visits only the box), sigma < 0, or alpha below 1/255. `vis` gets exp(-sigma) for the
// backward pass.
template <typename T>
OF_HD T splat_alpha(const T* mean2d, const int32_t* radius, const T* conic, T opacity, T px, T py, T& dx, T& dy,
                    T& vis) {
  dx = mean2d[0] - px;
  dy = mean2d[1] - py;
  if (!(of_abs(dx) <= T(radius[0]) && of_abs(dy) <= T(radius[1]))) return T(-1);
  const T sigma = T(0.5) * (conic[0] * dx * dx + conic[2] * dy * dy) + conic[1] * dx * dy;
  if (sigma < T(0)) return T(-1);
  vis = of_exp(-sigma);
  const T alpha = of_min(T(SPLAT_ALPHA_MAX), opacity * vis);
  return alpha < T(SPLAT_ALPHA_MIN) ? T(-1) : alpha;
}

// Front to back, one Gaussian onto one pixel: false (and nothing blended) when the pixel's
// transmittance would drop to T_MIN, where the pixel stops.
template <typename T>
OF_HD bool splat_blend(T alpha, const T* color, int C, T& trans, T* out) {
  const T next = trans * (T(1) - alpha);
  if (next <= T(SPLAT_T_MIN)) return false;
  const T w = alpha * trans;
  for (int k = 0; k < C; ++k) out[k] += color[k] * w;
  trans = next;
  return true;
}

// The backward of `splat_blend`, back to front: T_i is recovered as T_{i+1} / (1 - alpha_i) (`trans`
// goes from T_{i+1} to T_i), `behind` sums colour * weight of the later Gaussians. Adds
// dL/dcolour into g_color [C] and returns dL/dalpha.
template <typename T>
OF_HD T splat_unblend(T alpha, const T* color, int C, T trans_final, const T* background, const T* g_out,
                      T g_alpha_out, T& trans, T* behind, T* g_color) {
  const T one_minus = T(1) - alpha;
  trans = trans / one_minus;
  const T w = alpha * trans;
  T g_alpha = g_alpha_out * trans_final / one_minus;
  for (int k = 0; k < C; ++k) {
    g_color[k] += w * g_out[k];
    g_alpha += g_out[k] * (color[k] * trans - (behind[k] + trans_final * background[k]) / one_minus);
    behind[k] += color[k] * w;
  }
  return g_alpha;
}

// dL/dalpha -> the Gaussian's 2-d mean [2], conic [3] and opacity [1] (added); below the clamp
// alpha = o exp(-sigma), at it alpha is constant.
template <typename T>
OF_HD void splat_alpha_backward(T g_alpha, T alpha, T vis, T opacity, const T* conic, T dx, T dy, T* g_mean2d,
                                T* g_conic, T* g_opacity) {
  if (!(opacity * vis <= T(SPLAT_ALPHA_MAX))) return;
  *g_opacity += g_alpha * vis;
  const T g_sigma = -g_alpha * alpha;
  g_conic[0] += T(0.5) * dx * dx * g_sigma;
  g_conic[1] += dx * dy * g_sigma;
  g_conic[2] += T(0.5) * dy * dy * g_sigma;
  g_mean2d[0] += (conic[0] * dx + conic[1] * dy) * g_sigma;
  g_mean2d[1] += (conic[1] * dx + conic[2] * dy) * g_sigma;
}

// One pixel over its tile's depth-sorted list ids[begin, end) (the CUDA kernel's loop). Writes
// out[C] (colour + T bg), returns the final transmittance, sets *last to one past the last entry
// that contributed (the backward pass walks back from there).
template <typename T>
OF_HD T splat_composite_one(const int64_t* ids, int64_t begin, int64_t end, const T* means2d, const int32_t* radii,
                            const T* conics, const T* colors, const T* opacities, const T* background, int C, T px,
                            T py, T* out, int64_t* last) {
  T trans = T(1);
  for (int k = 0; k < C; ++k) out[k] = T(0);
  *last = begin;
  for (int64_t e = begin; e < end; ++e) {
    const int64_t g = ids[e];
    T dx, dy, vis;
    const T alpha = splat_alpha(means2d + 2 * g, radii + 2 * g, conics + 3 * g, opacities[g], px, py, dx, dy, vis);
    if (alpha < T(0)) continue;
    if (!splat_blend(alpha, colors + C * g, C, trans, out)) break;
    *last = e + 1;
  }
  for (int k = 0; k < C; ++k) out[k] += trans * background[k];
  return trans;
}

// Backward of one pixel, back to front from `last`. Per-Gaussian gradients go through `add` into
// g_means2d [N, 2], g_conics [N, 3], g_colors [N, C], g_opacities [N] (atomics on CUDA).
template <typename T, typename Add>
OF_HD void splat_composite_backward_one(const int64_t* ids, int64_t begin, int64_t last, const T* means2d,
                                        const int32_t* radii, const T* conics, const T* colors, const T* opacities,
                                        const T* background, int C, T px, T py, T trans_final, const T* g_out,
                                        T g_alpha_out, T* g_means2d, T* g_conics, T* g_colors, T* g_opacities,
                                        Add add) {
  T behind[8], g_col[8];  // C <= 8
  for (int k = 0; k < C; ++k) behind[k] = T(0);
  T trans = trans_final;
  for (int64_t e = last - 1; e >= begin; --e) {
    const int64_t g = ids[e];
    T dx, dy, vis;
    const T* q = conics + 3 * g;
    const T alpha = splat_alpha(means2d + 2 * g, radii + 2 * g, q, opacities[g], px, py, dx, dy, vis);
    if (alpha < T(0)) continue;
    for (int k = 0; k < C; ++k) g_col[k] = T(0);
    const T g_alpha = splat_unblend(alpha, colors + C * g, C, trans_final, background, g_out, g_alpha_out, trans,
                                    behind, g_col);
    T g_m[2] = {T(0), T(0)}, g_q[3] = {T(0), T(0), T(0)}, g_o = T(0);
    splat_alpha_backward(g_alpha, alpha, vis, opacities[g], q, dx, dy, g_m, g_q, &g_o);
    for (int k = 0; k < C; ++k) add(&g_colors[C * g + k], g_col[k]);
    for (int k = 0; k < 2; ++k) add(&g_means2d[2 * g + k], g_m[k]);
    for (int k = 0; k < 3; ++k) add(&g_conics[3 * g + k], g_q[k]);
    add(&g_opacities[g], g_o);
  }
}

// ---- the volume view: density and colour at points (fields/splats.py) ---------------------------
// sigma(x) = sum of peak_g exp(-|(x - mu_g) W_g|^2 / 2) over the Gaussians g whose box [lo_g, hi_g]
// holds x; with a direction, also their density-weighted colour sum_g w_g max(SH_g(d) + 0.5, 0) / sigma,
// clamped to [0, 1]. Candidates come from a loose hierarchy of sparse lattices (fields/box_lattice.py):
// level l has cells of edge cell[l] from `origin`, dims[3 l..3 l + 2] per axis, keys offset by
// offsets[l]; keys [n_keys] ascend and boxes[e] is the Gaussian listed under keys[e].
struct SplatLatticeView {
  const double* cell;
  const int64_t* dims;
  const int64_t* offsets;
  const int64_t* keys;
  const int64_t* boxes;
  int levels;
  int64_t n_keys;
};

// First index in the ascending a[0, n) whose value is >= key (right: > key), as torch.searchsorted.
OF_HD int64_t of_search(const int64_t* a, int64_t n, int64_t key, bool right) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (right ? a[mid] <= key : a[mid] < key) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// One point x [3]; dir [3] or null (density only, rgb untouched). whiten [N, 3, 3] row-major,
// sh [N, K, 3].
template <typename T>
OF_HD void splat_query_one(const T* x, const T* dir, const T* origin, const SplatLatticeView& lat, const T* lo,
                           const T* hi, const T* means, const T* whiten, const T* peak, const T* sh, int K,
                           int degree, T* sigma_out, T* rgb) {
  T b[16], sigma = T(0), acc[3] = {T(0), T(0), T(0)};
  const int n_basis = (degree + 1) * (degree + 1);
  if (dir) {
    const T norm = of_max(of_sqrt(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]), T(1e-12));
    splat_sh_basis<T>(degree, dir[0] / norm, dir[1] / norm, dir[2] / norm, b, nullptr);
  }
  for (int l = 0; l < lat.levels; ++l) {
    const int64_t* dims = lat.dims + 3 * l;
    int64_t ijk[3];
    bool inside = true;
    for (int a = 0; a < 3; ++a) {  // the twin's cell index: the offset in T, the quotient in double
      const double v = ::floor(double(x[a] - origin[a]) / lat.cell[l]);
      inside = inside && v >= 0.0 && v < double(dims[a]);
      ijk[a] = inside ? int64_t(v) : 0;
    }
    if (!inside) continue;
    const int64_t key = lat.offsets[l] + (ijk[0] * dims[1] + ijk[1]) * dims[2] + ijk[2];
    const int64_t end = of_search(lat.keys, lat.n_keys, key, true);
    for (int64_t e = of_search(lat.keys, lat.n_keys, key, false); e < end; ++e) {
      const int64_t g = lat.boxes[e];
      const T* l3 = lo + 3 * g;
      const T* h3 = hi + 3 * g;
      if (x[0] < l3[0] || x[1] < l3[1] || x[2] < l3[2] || x[0] > h3[0] || x[1] > h3[1] || x[2] > h3[2]) continue;
      const T d[3] = {x[0] - means[3 * g], x[1] - means[3 * g + 1], x[2] - means[3 * g + 2]};
      const T* W = whiten + 9 * g;
      T q = T(0);
      for (int j = 0; j < 3; ++j) {
        const T u = d[0] * W[j] + d[1] * W[3 + j] + d[2] * W[6 + j];
        q += u * u;
      }
      const T w = peak[g] * of_exp(T(-0.5) * q);
      sigma += w;
      if (!dir) continue;
      const T* c = sh + 3 * int64_t(K) * g;
      for (int ch = 0; ch < 3; ++ch) {
        T v = T(0);
        for (int k = 0; k < n_basis; ++k) v += b[k] * c[3 * k + ch];
        v += T(0.5);
        acc[ch] += w * (v > T(0) ? v : T(0));
      }
    }
  }
  *sigma_out = sigma;
  if (dir)
    for (int ch = 0; ch < 3; ++ch) rgb[ch] = of_clamp(acc[ch] / of_max(sigma, T(1e-10)), T(0), T(1));
}

}  // namespace onefield
