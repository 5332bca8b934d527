// ScaleNet and its first-order training on a tiny random model written by the test:
//  - g(a) = e^a (a <= 0), 1 + a + a^2/2 (a > 0), values and slopes on both branches;
//  - save / load round trip bitwise, and named errors for a damaged file;
//  - an untrained net (output layer 0) gives multipliers 1: episodic with it is bitwise the
//    fixed-lr episode;
//  - the first-order multiplier gradient -lr <grad L_out(theta_K), g_k> against central finite
//    differences: of the true unrolled loss for the last step (where first order is exact),
//    and of the first-order unrolling (inner gradients held) for the first step;
//  - its chain into the net's weights against finite differences through g(a(f_k)).
// Finite differences in fp32 with step 1e-2 (multipliers) / 1e-2 (weights), central; the
// tolerance 3% of the value + 3e-4 covers fp32 rounding of the ~3.9 loss over 2e-2.
#include <cmath>
#include <filesystem>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "engine/learn/episodic.h"
#include "engine/learn/lora.h"
#include "engine/learn/scalenet.h"
#include "engine/learn/scalenet_training.h"
#include "tests/engine/learn/bitwise.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

using test::error_of;
using test::lacks;
using test::same_bytes;

constexpr double kLr = 0.1;
constexpr int64_t kSteps = 3;

LoraConfig episodic_lora() {
  LoraConfig c;
  c.rank = 4;
  c.alpha = 16;
  return c;
}

// Fixed multipliers [K, M] (tests).
class FixedSizes : public StepSizes {
 public:
  explicit FixedSizes(at::Tensor m) : m_(std::move(m)) {}
  at::Tensor at_step(int64_t k, const at::Tensor&) const override { return m_[k]; }

 private:
  at::Tensor m_;
};

// Non-zero B (the episodes' fresh values) so every inner gradient reaches A and B alike.
LoraAdapters& with_random_b(LoraAdapters& lora) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  for (LoraSlot* s : lora.slots()) s->B.normal_(0.0, 0.05, gen);
  return lora;
}

struct Episode {
  test::TinyLlama tiny = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraAdapters lora{*tiny.model, episodic_lora()};
  EpisodicAdapter episodes{*tiny.model, with_random_b(lora), {kSteps, kLr}};
  ScaleNetExample example;
  Episode() {
    const auto seqs = test::random_token_sequences(2, test::TinyLlamaSpec{}.vocab_size, 77, 10);
    example.prompt = seqs[0];
    example.answer = std::vector<int32_t>(seqs[1].begin(), seqs[1].begin() + 6);
  }
  std::vector<std::string> modules() const {
    std::vector<std::string> out;
    for (const Projection& p : lora.modules()) out.push_back(p.name);
    return out;
  }
  // L_out after a real episode with multipliers m (adapter reset afterwards).
  double outer_after(const at::Tensor& m) {
    FixedSizes sizes(m);
    episodes.adapt(example.prompt, &sizes);
    double l;
    {
      at::NoGradGuard no_grad;
      l = answer_nll(*tiny.model, example).item<double>();
    }
    episodes.reset();
    return l;
  }
  // L_out at theta_0 - lr sum_k m_k[j] g_k[j], the inner gradients g held from `trace`.
  double outer_first_order(const EpisodeTrace& trace, const at::Tensor& m) {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> params = lora.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      at::Tensor theta = episodes.fresh()[i].clone();
      for (size_t k = 0; k < trace.gradients.size(); ++k)
        theta -= kLr * m[static_cast<int64_t>(k)][static_cast<int64_t>(i / 2)] * trace.gradients[k][i];
      params[i].copy_(theta);
    }
    const double l = answer_nll(*tiny.model, example).item<double>();
    episodes.reset();
    return l;
  }
};

void expect_close(double fd, double analytic, const std::string& what) {
  EXPECT_NEAR(fd, analytic, 0.03 * std::abs(analytic) + 3e-4) << what << ": finite difference " << fd
                                                               << ", first-order gradient " << analytic;
}

TEST(ScaleNet, ActivationValuesAndSlopesOnBothBranches) {
  at::Tensor a = at::tensor({-2.0f, -0.5f, 0.0f, 0.5f, 2.0f}).set_requires_grad(true);
  at::Tensor g = scalenet_activation(a);
  g.sum().backward();
  const std::vector<double> x = {-2.0, -0.5, 0.0, 0.5, 2.0};
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = x[i] <= 0 ? std::exp(x[i]) : 1 + x[i] + x[i] * x[i] / 2;
    const double slope = x[i] <= 0 ? std::exp(x[i]) : 1 + x[i];
    EXPECT_NEAR(g[static_cast<int64_t>(i)].item<double>(), want, 1e-6) << "g(" << x[i] << ")";
    EXPECT_NEAR(a.grad()[static_cast<int64_t>(i)].item<double>(), slope, 1e-6) << "g'(" << x[i] << ")";
  }
}

TEST(ScaleNet, SaveLoadRoundTripAndErrors) {
  Episode s;
  ScaleNet net({32, s.modules(), 16, kSteps, kLr}, 3, s.tiny.model->device());
  {
    at::NoGradGuard no_grad;
    net.parameters()[2].normal_();
  }
  const std::string path = (std::filesystem::temp_directory_path() / "tlm-test-scalenet.safetensors").string();
  net.save(path);
  const ScaleNet back = ScaleNet::load(path, s.tiny.model->device());
  EXPECT_EQ(back.shape().modules, s.modules());
  EXPECT_EQ(back.shape().steps, kSteps);
  for (size_t i = 0; i < net.parameters().size(); ++i)
    EXPECT_TRUE(same_bytes(back.parameters()[i], net.parameters()[i])) << net.parameter_names()[i];
  ScaleNet other({16, s.modules(), 16, kSteps, kLr}, 3, s.tiny.model->device());
  EXPECT_EQ(lacks(error_of([&] { ScaleNet::load(s.tiny.dir->file("model.safetensors"), at::kCPU); }),
                  {"model.safetensors", "'format'"}),
            "");
  std::filesystem::remove(path);
}

TEST(ScaleNet, UntrainedNetIsTheFixedStepBitwise) {
  Episode s;
  ScaleNet net({32, s.modules(), 16, kSteps, kLr}, 5, s.tiny.model->device());
  const ScaleNetStepSizes sizes(net);
  const std::vector<double> fixed = s.episodes.adapt(s.example.prompt);
  const std::vector<at::Tensor> after_fixed = test::snapshot(s.lora.parameters());
  s.episodes.reset();
  EpisodeTrace trace;
  const std::vector<double> scaled = s.episodes.adapt(s.example.prompt, &sizes, &trace);
  EXPECT_EQ(fixed, scaled);
  for (size_t i = 0; i < after_fixed.size(); ++i) EXPECT_TRUE(same_bytes(s.lora.parameters()[i], after_fixed[i]));
  ASSERT_EQ(trace.multipliers.size(), static_cast<size_t>(kSteps));
  EXPECT_TRUE(at::equal(trace.multipliers[0], at::ones_like(trace.multipliers[0])));
  EXPECT_EQ(trace.features[0].size(0), 2 * 32 + 2);
}

TEST(ScaleNet, MultiplierGradientMatchesFiniteDifferences) {
  Episode s;
  const int64_t M = static_cast<int64_t>(s.modules().size());
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const at::Tensor m = at::empty({kSteps, M}).uniform_(0.5, 1.5, gen);
  const EpisodeGradient ep = scalenet_episode(*s.tiny.model, s.episodes, FixedSizes(m), s.example);
  EXPECT_TRUE(std::isfinite(ep.outer_nll));
  EXPECT_GT(ep.multiplier_grad.abs().max().item<double>(), 1e-3) << "a vanishing gradient would test nothing";
  const double eps = 1e-2;
  for (int64_t j = 0; j < M; ++j) {
    // Last step: the true unrolled loss (first order is exact there).
    at::Tensor up = m.clone(), down = m.clone();
    up[kSteps - 1][j] += eps;
    down[kSteps - 1][j] -= eps;
    expect_close((s.outer_after(up) - s.outer_after(down)) / (2 * eps), ep.multiplier_grad[kSteps - 1][j].item<double>(),
                 "last step, module " + std::to_string(j));
    // First step: the first-order unrolling, inner gradients held.
    up = m.clone();
    down = m.clone();
    up[0][j] += eps;
    down[0][j] -= eps;
    expect_close((s.outer_first_order(ep.trace, up) - s.outer_first_order(ep.trace, down)) / (2 * eps),
                 ep.multiplier_grad[0][j].item<double>(), "first step (first order), module " + std::to_string(j));
  }
}

TEST(ScaleNet, ChainIntoTheNetMatchesFiniteDifferences) {
  Episode s;
  ScaleNet net({32, s.modules(), 16, kSteps, kLr}, 7, s.tiny.model->device());
  {
    at::NoGradGuard no_grad;
    net.parameters()[2].normal_(0.0, 0.05);  // raw outputs of both signs: both branches of g
    net.parameters()[3].normal_(0.0, 0.3);
  }
  const EpisodeGradient ep = scalenet_episode(*s.tiny.model, s.episodes, ScaleNetStepSizes(net), s.example);
  for (const at::Tensor& p : net.parameters()) p.mutable_grad() = at::Tensor();
  accumulate_scalenet_gradient(net, ep);
  // L(W) through m_k = g(a(f_k; W)), the features and inner gradients held.
  auto loss_at = [&]() {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> ms;
    for (const at::Tensor& f : ep.trace.features) ms.push_back(net.multipliers(f));
    return s.outer_first_order(ep.trace, at::stack(ms));
  };
  const double eps = 1e-2;
  // fc1 entries are chosen away from ReLU's kink: the unit's pre-activation stays on one side
  // for every step's features under the perturbation (else the difference quotient straddles it).
  at::Tensor margin, reach;
  {
    at::NoGradGuard no_grad;
    const at::Tensor f = at::stack(ep.trace.features);  // [K, 2H + 2]
    margin = at::linear(f, net.parameters()[0], net.parameters()[1]).abs().amin(0);  // [width]
    reach = f.abs().amax(0);                                                          // [2H + 2]
  }
  for (size_t p = 0; p < net.parameters().size(); ++p) {
    at::Tensor w = net.parameters()[p];
    at::Tensor candidates = w.grad().abs();
    if (p == 0) candidates = candidates * (margin.unsqueeze(1) > 2 * eps * reach.unsqueeze(0));
    if (p == 1) candidates = candidates * (margin > 2 * eps);
    const at::Tensor flat_grad = w.grad().reshape({-1});
    const int64_t i = candidates.reshape({-1}).argmax().item<int64_t>();  // the entry that matters most
    ASSERT_GT(candidates.reshape({-1})[i].item<double>(), 0.0) << net.parameter_names()[p] << ": no entry to test";
    at::Tensor flat = w.detach().view({-1});
    const float orig = flat[i].item<float>();
    {
      at::NoGradGuard no_grad;
      flat[i] = orig + eps;
    }
    const double up = loss_at();
    {
      at::NoGradGuard no_grad;
      flat[i] = orig - eps;
    }
    const double down = loss_at();
    {
      at::NoGradGuard no_grad;
      flat[i] = orig;
    }
    expect_close((up - down) / (2 * eps), flat_grad[i].item<double>(), net.parameter_names()[p]);
  }
}

}  // namespace
}  // namespace tlm
