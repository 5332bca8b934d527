// AdamW against torch.optim.AdamW's single-tensor algorithm, written out by hand in double
// precision (and checked against values torch 2.12 printed for the same inputs), plus
// reset, zero_grad and clip_grad_norm as torch.nn.utils.clip_grad_norm_ defines it.
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/learn/adamw.h"

namespace tlm {
namespace {

struct HandAdamW {
  std::vector<double> p, m, v;
  int t = 0;
  // torch.optim.AdamW: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
  void step(const std::vector<double>& g, double lr, double wd, const AdamWOptions& o) {
    ++t;
    const double bc1 = 1.0 - std::pow(o.beta1, t), bc2 = 1.0 - std::pow(o.beta2, t);
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1.0 - lr * wd;
      m[i] = o.beta1 * m[i] + (1.0 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1.0 - o.beta2) * g[i] * g[i];
      p[i] -= lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + o.eps);
    }
  }
};

const std::vector<double> kP0 = {0.5, -1.0, 2.0, 0.0, 3.0};
const std::vector<double> kG1 = {0.1, -0.2, 0.3, 0.0, 1.0};
const std::vector<double> kG2 = {-0.05, 0.4, 0.3, 0.2, -1.0};

at::Tensor tensor(const std::vector<double>& v, at::ScalarType dtype) {
  return at::tensor(v, at::kDouble).to(dtype);
}

void expect_near(const at::Tensor& got, const std::vector<double>& want, double tol, const char* what) {
  at::Tensor g = got.detach().to(at::kDouble).contiguous();
  ASSERT_EQ(g.numel(), static_cast<int64_t>(want.size())) << what;
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(g.data_ptr<double>()[i], want[i], tol) << what << " [" << i << "]";
}

void check_two_steps(double wd, at::ScalarType dtype, double tol) {
  AdamWOptions o;
  o.weight_decay = wd;
  at::Tensor p = tensor(kP0, dtype).set_requires_grad(true);
  AdamW opt({p}, o);
  HandAdamW ref{kP0, std::vector<double>(5, 0.0), std::vector<double>(5, 0.0), 0};

  p.mutable_grad() = tensor(kG1, dtype);
  opt.step(0.1);
  ref.step(kG1, 0.1, wd, o);
  EXPECT_EQ(opt.step_count(), 1);
  expect_near(p, ref.p, tol, "step 1 param");

  p.mutable_grad() = tensor(kG2, dtype);
  opt.step(0.05);  // the rate may change between steps (schedules)
  ref.step(kG2, 0.05, wd, o);
  EXPECT_EQ(opt.step_count(), 2);
  expect_near(p, ref.p, tol, "step 2 param");
  expect_near(opt.exp_avg()[0], ref.m, tol, "exp_avg");
  expect_near(opt.exp_avg_sq()[0], ref.v, tol, "exp_avg_sq");
  EXPECT_FALSE(opt.exp_avg()[0].requires_grad());
}

TEST(AdamW, TwoStepsMatchTheFormulaFp64) {
  check_two_steps(0.0, at::kDouble, 1e-7);
  check_two_steps(0.01, at::kDouble, 1e-7);
}

TEST(AdamW, TwoStepsMatchTheFormulaFp32) {
  // float32 rounding of parameters of size ~1: 1e-6.
  check_two_steps(0.0, at::kFloat, 1e-6);
  check_two_steps(0.01, at::kFloat, 1e-6);
}

TEST(AdamW, MatchesTorchOptimAdamWValues) {
  // torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8), float64, grads kG1 then kG2
  // with the lr set to 0.05 for the second step.
  const std::vector<double> torch_wd0 = {0.386683159701695, -0.9183051807730183, 1.8500000050000003,
                                         -0.03720683854808613, 2.9026315799210525};
  const std::vector<double> torch_wd001 = {0.385983409696695, -0.9168556807705183,
                                           1.8470510049983337, -0.03720683854808613,
                                           2.8981830799205524};
  for (double wd : {0.0, 0.01}) {
    AdamWOptions o;
    o.weight_decay = wd;
    at::Tensor p = tensor(kP0, at::kDouble).set_requires_grad(true);
    AdamW opt({p}, o);
    p.mutable_grad() = tensor(kG1, at::kDouble);
    opt.step(0.1);
    p.mutable_grad() = tensor(kG2, at::kDouble);
    opt.step(0.05);
    expect_near(p, wd == 0.0 ? torch_wd0 : torch_wd001, 1e-12, "torch values");
  }
}

TEST(AdamW, ResetZeroGradAndMissingGradients) {
  at::Tensor a = tensor(kP0, at::kDouble).set_requires_grad(true);
  at::Tensor b = at::ones({3}, at::kDouble).set_requires_grad(true);
  AdamW opt({a, b}, AdamWOptions{});
  a.mutable_grad() = tensor(kG1, at::kDouble);
  opt.step(0.1);
  // b had no gradient: untouched, its moments still zero.
  EXPECT_TRUE(at::equal(b, at::ones({3}, at::kDouble)));
  EXPECT_TRUE(at::equal(opt.exp_avg()[1], at::zeros({3}, at::kDouble)));
  EXPECT_GT(opt.exp_avg()[0].abs().sum().item<double>(), 0.0);

  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());

  // After reset the next step is a first step again: equal to a fresh optimiser's.
  opt.reset();
  EXPECT_EQ(opt.step_count(), 0);
  EXPECT_TRUE(at::equal(opt.exp_avg()[0], at::zeros({5}, at::kDouble)));
  EXPECT_TRUE(at::equal(opt.exp_avg_sq()[0], at::zeros({5}, at::kDouble)));
  at::Tensor fresh = a.detach().clone().set_requires_grad(true);
  AdamW fresh_opt({fresh}, AdamWOptions{});
  a.mutable_grad() = tensor(kG2, at::kDouble);
  fresh.mutable_grad() = tensor(kG2, at::kDouble);
  opt.step(0.1);
  fresh_opt.step(0.1);
  EXPECT_TRUE(at::equal(a, fresh));
  EXPECT_EQ(opt.step_count(), 1);

  // Checkpoints restore the step count.
  opt.set_step_count(41);
  EXPECT_EQ(opt.step_count(), 41);
  EXPECT_EQ(opt.params().size(), 2u);
}

TEST(ClipGradNorm, ScalesLikeTorch) {
  // torch.nn.utils.clip_grad_norm_([p1, p2], 1.0) with grads [3, 4] and [12]: returns 13,
  // grads scaled by 1 / (13 + 1e-6).
  at::Tensor p1 = at::zeros({2}).set_requires_grad(true);
  at::Tensor p2 = at::zeros({1}).set_requires_grad(true);
  at::Tensor p3 = at::zeros({4}).set_requires_grad(true);  // no gradient: ignored
  p1.mutable_grad() = at::tensor({3.0f, 4.0f});
  p2.mutable_grad() = at::tensor({12.0f});
  EXPECT_NEAR(clip_grad_norm({p1, p2, p3}, 1.0), 13.0, 1e-5);
  const double coef = 1.0 / (13.0 + 1e-6);
  expect_near(p1.grad(), {3.0 * coef, 4.0 * coef}, 1e-7, "p1");
  expect_near(p2.grad(), {12.0 * coef}, 1e-7, "p2");
  // Values torch printed: [0.23076921701431274, 0.307692289352417], [0.923076868057251].
  expect_near(p1.grad(), {0.23076921701431274, 0.307692289352417}, 1e-7, "p1 torch");
  expect_near(p2.grad(), {0.923076868057251}, 1e-7, "p2 torch");

  // The 1e-6 in the denominator matters for tiny norms: [3e-7, 4e-7] has norm 5e-7, and
  // max_norm 1e-7 scales it by 1e-7 / (5e-7 + 1e-6) = 1/15, not by 1/5.
  at::Tensor tiny = at::zeros({2}, at::kDouble).set_requires_grad(true);
  tiny.mutable_grad() = at::tensor({3e-7, 4e-7}, at::kDouble);
  EXPECT_NEAR(clip_grad_norm({tiny}, 1e-7), 5e-7, 1e-18);
  expect_near(tiny.grad(), {3e-7 / 15.0, 4e-7 / 15.0}, 1e-18, "tiny");

  // Under the limit, or max_norm <= 0: untouched, norm still returned.
  p1.mutable_grad() = at::tensor({3.0f, 4.0f});
  EXPECT_NEAR(clip_grad_norm({p1}, 10.0), 5.0, 1e-6);
  EXPECT_TRUE(at::equal(p1.grad(), at::tensor({3.0f, 4.0f})));
  EXPECT_NEAR(clip_grad_norm({p1}, 0.0), 5.0, 1e-6);
  EXPECT_TRUE(at::equal(p1.grad(), at::tensor({3.0f, 4.0f})));

  // Non-finite: reported, gradients left as they are.
  p2.mutable_grad() = at::tensor({std::numeric_limits<float>::quiet_NaN()});
  EXPECT_TRUE(std::isnan(clip_grad_norm({p1, p2}, 1.0)));
  EXPECT_TRUE(at::equal(p1.grad(), at::tensor({3.0f, 4.0f})));
  p2.mutable_grad() = at::tensor({std::numeric_limits<float>::infinity()});
  EXPECT_TRUE(std::isinf(clip_grad_norm({p1, p2}, 1.0)));
  EXPECT_TRUE(at::equal(p1.grad(), at::tensor({3.0f, 4.0f})));

  EXPECT_EQ(clip_grad_norm({p3}, 1.0), 0.0);
}

}  // namespace
}  // namespace tlm
