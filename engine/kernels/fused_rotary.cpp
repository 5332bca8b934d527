#include "engine/kernels/fused_rotary.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "engine/kernels/row_kernel.h"

namespace tlm {
namespace {

// Where the rows of x [B, heads, T, D] and of cos/sin [B or 1, T, D] are (last dimension
// contiguous): row (b, h, t) of x at b * xb + h * xh + t * xt, its angles at b * cb + t * ct.
struct RotaryLayout {
  int64_t heads, T, D;
  int64_t xb, xh, xt;
  int64_t cb, ct;
};

// Forward: out = x * cos + cat(-x2, x1) * sin. Backward (x is then the output's gradient dy):
// the input gradient as the composite's autograd sums it, dx1 = dy1 c1 + dy2 s2 and
// dx2 = dy2 c2 - dy1 s1.
TLM_ROW_KERNEL void rotate_rows(const float* x, const float* cos, const float* sin, float* out, RotaryLayout l,
                                bool backward, int64_t r0, int64_t r1) {
  const int64_t half = l.D / 2;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t t = r % l.T, h = (r / l.T) % l.heads, b = r / (l.T * l.heads);
    const float* xr = x + b * l.xb + h * l.xh + t * l.xt;
    const float* c = cos + b * l.cb + t * l.ct;
    const float* s = sin + b * l.cb + t * l.ct;
    float* o = out + r * l.D;
    if (!backward) {
      for (int64_t j = 0; j < half; ++j) {
        o[j] = xr[j] * c[j] - xr[j + half] * s[j];
        o[j + half] = xr[j + half] * c[j + half] + xr[j] * s[j + half];
      }
    } else {
      for (int64_t j = 0; j < half; ++j) {
        o[j] = xr[j] * c[j] + xr[j + half] * s[j + half];
        o[j + half] = xr[j + half] * c[j + half] - xr[j] * s[j];
      }
    }
  }
}

// x with its last dimension contiguous; cos/sin [B or 1, T, D] likewise.
at::Tensor rotate(const at::Tensor& x_in, const at::Tensor& cos_in, const at::Tensor& sin_in, bool backward) {
  const at::Tensor x = x_in.stride(3) == 1 ? x_in : x_in.contiguous();
  const at::Tensor cos = cos_in.contiguous(), sin = sin_in.contiguous();
  const int64_t B = x.size(0), heads = x.size(1), T = x.size(2), D = x.size(3);
  RotaryLayout l{heads, T, D, x.stride(0), x.stride(1), x.stride(2), cos.size(0) == 1 ? 0 : cos.stride(0), cos.stride(1)};
  at::Tensor out = at::empty({B, heads, T, D}, x.options());
  const float* xp = x.const_data_ptr<float>();
  const float* cp = cos.const_data_ptr<float>();
  const float* sp = sin.const_data_ptr<float>();
  float* op = out.mutable_data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1));
  at::parallel_for(0, B * heads * T, grain, [&](int64_t r0, int64_t r1) {
    rotate_rows(xp, cp, sp, op, l, backward, r0, r1);
  });
  return out;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FusedRotary : torch::autograd::Function<FusedRotary> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    ctx->saved_data["cos"] = cos;
    ctx->saved_data["sin"] = sin;
    return rotate(x, cos, sin, /*backward=*/false);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {rotate(grads[0], ctx->saved_data["cos"].toTensor(), ctx->saved_data["sin"].toTensor(), /*backward=*/true),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool fused_rotary_applies(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  auto cpu_fp32 = [](const at::Tensor& t) {
    return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat;
  };
  return cpu_fp32(x) && cpu_fp32(cos) && cpu_fp32(sin) && x.dim() == 4 && cos.dim() == 3 &&
         cos.sizes() == sin.sizes() && x.size(3) % 2 == 0 && cos.size(2) == x.size(3) &&
         cos.size(1) == x.size(2) && (cos.size(0) == x.size(0) || cos.size(0) == 1) && x.numel() > 0 &&
         !cos.requires_grad() && !sin.requires_grad();
}

at::Tensor fused_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return FusedRotary::apply(x, cos, sin);
}

}  // namespace tlm
