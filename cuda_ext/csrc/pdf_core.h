// Per-ray proposal-sampler ops on the dense layout (every ray has the same number of intervals):
//   pdf_resample      inverse-transform sampling of new edges from a weight histogram (nerfstudio's
//                     PDFSampler),
//   interval_weights  the sum of the source weights over each query interval (mip-NeRF 360's
//                     `outer` envelope), and its backward.
// torch.searchsorted is replaced by merge walks: the searched rows are non-decreasing and queries
// usually are too, so a ray costs O(rows + queries). A query below the previous one walks back (or
// restarts), so any query order gives exactly the searchsorted result, only slower.
// Running sums are sequential in double, rounded to T where the reference rounds its float64
// cumsum (torch's CPU cumsum is sequential too), so values match reference.py bit for bit.
#pragma once

#include "hd.h"

namespace onefield {

constexpr double kPdfEps = 1e-5;  // nerfstudio's PDFSampler eps: a row summing below it is padded up to it

// searchsorted(x[0..n), v, side='right') for a non-decreasing x: the number of x <= v, continued
// from the previous query's answer.
template <typename T> struct SearchRight {
  const T* x;
  int64_t n;
  int64_t i = 0;
  OF_HD int64_t operator()(T v) {
    while (i > 0 && x[i - 1] > v) --i;
    while (i < n && x[i] <= v) ++i;
    return i;
  }
};

// T(sum_{k < target} w[k]), summed in double from k = 0 like the reference's cumsum. Moving back
// restarts the sum: subtracting would round differently.
template <typename T> struct PrefixSum {
  const T* w;
  int64_t i = 0;
  double acc = 0.0;
  OF_HD T operator()(int64_t target) {
    if (target < i) {
      i = 0;
      acc = 0.0;
    }
    for (; i < target; ++i) acc += double(w[i]);
    return T(acc);
  }
};

// One ray: edges [K + 1], weights [K], u [M] -> out [M]. The cdf is never stored: it is built as
// the walk passes it (cdf[p] = min(1, T(sum_{k < p} pdf_k)), pdf_k recomputed the same way each time).
template <typename T>
OF_HD void pdf_resample_one(const T* edges, const T* weights, int64_t k, const T* u, int64_t m, T padding,
                            T* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) sum += double(weights[i] + padding);
  T s = T(sum);
  const T short_by = T(kPdfEps) - s;
  const T pad = short_by > T(0) ? short_by : T(0);  // relu
  const T add = pad / T(k);
  s = s + pad;

  int64_t p = 0;           // searchsorted(cdf, u_j, right): how many cdf values are <= u_j
  double acc = 0.0;        // sum of pdf_k for k < p
  T c_next = T(0);         // cdf[p] while p <= K (cdf[0] = 0)
  T c_last = T(0);         // cdf[p - 1] once p >= 1
  T u_prev = T(0);
  for (int64_t j = 0; j < m; ++j) {
    const T uj = u[j];
    if (j > 0 && uj < u_prev) {  // unsorted u: restart the walk
      p = 0;
      acc = 0.0;
      c_next = c_last = T(0);
    }
    u_prev = uj;
    while (p <= k && c_next <= uj) {
      c_last = c_next;
      ++p;
      if (p <= k) {
        acc += double(((weights[p - 1] + padding) + add) / s);
        c_next = of_min(T(acc), T(1));
      }
    }
    const int64_t below = p >= 1 ? p - 1 : 0;  // p <= K + 1, so already <= K
    const int64_t above = p < k ? p : k;
    const T c0 = p >= 1 ? c_last : c_next;
    const T c1 = p <= k ? c_next : c_last;
    T f = (uj - c0) / (c1 - c0);
    if (f != f) f = T(0);  // nan_to_num: 0/0 once u >= cdf[K] (then below == above); +inf clamps to 1
    f = of_clamp(f, T(0), T(1));
    out[j] = edges[below] + f * (edges[above] - edges[below]);
  }
}

// Query interval q's source range [lo, hi] (clamped to [0, S - 1]), as nerfstudio's `outer`:
// lo = searchsorted(src starts, query start, right) - 1, hi = searchsorted(src ends, query end, right).
template <typename T> struct IntervalBounds {
  SearchRight<T> starts, ends;
  int64_t s;
  OF_HD IntervalBounds(const T* t_src, int64_t s_) : starts{t_src, s_}, ends{t_src + 1, s_}, s(s_) {}
  OF_HD void operator()(T q0, T q1, int64_t* lo, int64_t* hi) {
    *lo = of_clamp<int64_t>(starts(q0) - 1, 0, s - 1);
    *hi = of_clamp<int64_t>(ends(q1), 0, s - 1);
  }
};

// One ray: t_query [Q + 1], t_src [S + 1], w_src [S] -> out [Q] = cy[hi + 1] - cy[lo], cy the
// exclusive prefix sum of w_src.
template <typename T>
OF_HD void interval_weights_forward_one(const T* t_query, int64_t q, const T* t_src, const T* w_src, int64_t s,
                                        T* out) {
  IntervalBounds<T> bounds(t_src, s);
  PrefixSum<T> c_lo{w_src}, c_hi{w_src};
  for (int64_t i = 0; i < q; ++i) {
    int64_t lo, hi;
    bounds(t_query[i], t_query[i + 1], &lo, &hi);
    out[i] = c_hi(hi + 1) - c_lo(lo);
  }
}

// d out_q / d w_k = [k <= hi_q] - [k < lo_q] (= [lo_q <= k <= hi_q] for ordered bounds): a difference
// array (+g at lo, -g at hi + 1) built in g_w, then its prefix sum (in double) in place.
template <typename T>
OF_HD void interval_weights_backward_one(const T* g_out, const T* t_query, int64_t q, const T* t_src, int64_t s,
                                         T* g_w) {
  for (int64_t k = 0; k < s; ++k) g_w[k] = T(0);
  IntervalBounds<T> bounds(t_src, s);
  for (int64_t i = 0; i < q; ++i) {
    int64_t lo, hi;
    bounds(t_query[i], t_query[i + 1], &lo, &hi);
    g_w[lo] += g_out[i];
    if (hi + 1 < s) g_w[hi + 1] -= g_out[i];
  }
  double acc = 0.0;
  for (int64_t k = 0; k < s; ++k) {
    acc += double(g_w[k]);
    g_w[k] = T(acc);
  }
}

}  // namespace onefield
