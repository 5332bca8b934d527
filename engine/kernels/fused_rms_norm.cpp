#include "engine/kernels/fused_rms_norm.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "engine/kernels/row_kernel.h"

namespace tlm {
namespace {

// Rows per task: a task of fewer elements costs more to hand to another thread than to run.
int64_t row_grain(int64_t H) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(H, 1)); }

// y[i] = w * (x[i] * r[i]), r[i] = 1 / sqrt(mean(x[i]^2) + eps), rows [n0, n1) of [N, H].
TLM_ROW_KERNEL void norm_rows(const float* x, const float* w, float* y, float* r, int64_t n0, int64_t n1,
                              int64_t H, float eps) {
  for (int64_t i = n0; i < n1; ++i) {
    const float* xi = x + i * H;
    float* yi = y + i * H;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < H; ++j) ss += xi[j] * xi[j];
    const float ri = 1.0f / std::sqrt(ss / static_cast<float>(H) + eps);
    r[i] = ri;
    for (int64_t j = 0; j < H; ++j) yi[j] = w[j] * (xi[j] * ri);
  }
}

// dx[i] = r g - x[i] r^3 (g . x[i]) / H with g = w * dy[i].
TLM_ROW_KERNEL void norm_rows_backward(const float* x, const float* w, const float* r, const float* dy, float* dx,
                                       int64_t n0, int64_t n1, int64_t H) {
  for (int64_t i = n0; i < n1; ++i) {
    const float* xi = x + i * H;
    const float* dyi = dy + i * H;
    float* dxi = dx + i * H;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < H; ++j) dot += w[j] * dyi[j] * xi[j];
    const float ri = r[i];
    const float c = ri * ri * ri * dot / static_cast<float>(H);
    for (int64_t j = 0; j < H; ++j) dxi[j] = ri * (w[j] * dyi[j]) - xi[j] * c;
  }
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FusedRmsNorm : torch::autograd::Function<FusedRmsNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, double eps) {
    const int64_t H = x.size(-1);
    const at::Tensor x2 = x.contiguous().view({-1, H});
    const at::Tensor w = weight.contiguous();
    at::Tensor y = at::empty_like(x2);
    at::Tensor r = at::empty({x2.size(0)}, x2.options());
    const float* xp = x2.const_data_ptr<float>();
    const float* wp = w.const_data_ptr<float>();
    float* yp = y.mutable_data_ptr<float>();
    float* rp = r.mutable_data_ptr<float>();
    at::parallel_for(0, x2.size(0), row_grain(H), [&](int64_t n0, int64_t n1) {
      norm_rows(xp, wp, yp, rp, n0, n1, H, static_cast<float>(eps));
    });
    ctx->saved_data["x"] = x2;
    ctx->saved_data["w"] = w;
    ctx->saved_data["r"] = r;
    ctx->saved_data["shape"] = x.sizes().vec();
    return y.view(x.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor x2 = ctx->saved_data["x"].toTensor();
    const at::Tensor w = ctx->saved_data["w"].toTensor();
    const at::Tensor r = ctx->saved_data["r"].toTensor();
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    const int64_t H = x2.size(1);
    const at::Tensor dy = grads[0].contiguous().view({-1, H});
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty_like(x2);
      const float* xp = x2.const_data_ptr<float>();
      const float* wp = w.const_data_ptr<float>();
      const float* rp = r.const_data_ptr<float>();
      const float* dyp = dy.const_data_ptr<float>();
      float* dxp = dx.mutable_data_ptr<float>();
      at::parallel_for(0, x2.size(0), row_grain(H), [&](int64_t n0, int64_t n1) {
        norm_rows_backward(xp, wp, rp, dyp, dxp, n0, n1, H);
      });
      dx = dx.view(shape);
    }
    // The weight's gradient sums over rows: ATen's reduction, whatever the thread count.
    at::Tensor dw = ctx->needs_input_grad(1) ? (dy * (x2 * r.unsqueeze(1))).sum(0) : at::Tensor();
    return {dx, dw, at::Tensor()};
  }
};

}  // namespace

bool fused_rms_norm_applies(const at::Tensor& x, const at::Tensor& weight) {
  return x.defined() && weight.defined() && x.device().is_cpu() && weight.device().is_cpu() &&
         x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat && weight.dim() == 1 && x.dim() >= 1 &&
         x.size(-1) == weight.size(0) && x.numel() > 0;
}

at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return FusedRmsNorm::apply(x, weight, eps);
}

}  // namespace tlm
