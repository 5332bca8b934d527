// Sampler: greedy is argmax; temperature / top-p sampling follows the softmax it claims to,
// repeats exactly for a seed and differs across seeds.
#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/common/error.h"
#include "engine/generate/sampler.h"

namespace tlm {
namespace {

std::vector<int64_t> to_vector(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// Counts of each id over `draws` calls on the same [1, V] logits.
std::vector<double> frequencies(Sampler& s, const at::Tensor& logits, int draws) {
  std::vector<double> f(static_cast<size_t>(logits.size(-1)), 0.0);
  for (int i = 0; i < draws; ++i) f[static_cast<size_t>(s.next(logits)[0].item<int64_t>())] += 1.0 / draws;
  return f;
}

TEST(Sampler, GreedyIsArgmax) {
  at::manual_seed(1);
  at::Tensor logits = at::randn({6, 50});
  for (double top_p : {1.0, 0.3}) {
    SamplingOptions o;
    o.temperature = 0.0;
    o.top_p = top_p;
    Sampler s(o);
    at::Tensor next = s.next(logits);
    EXPECT_EQ(next.scalar_type(), at::kLong);
    EXPECT_EQ(next.sizes(), at::IntArrayRef({6}));
    EXPECT_TRUE(at::equal(next, logits.argmax(-1)));
  }
  // The default options are greedy.
  Sampler d{SamplingOptions{}};
  EXPECT_TRUE(at::equal(d.next(logits), logits.argmax(-1)));
}

TEST(Sampler, SeededSamplingRepeatsAndSeedsDiffer) {
  at::manual_seed(2);
  at::Tensor logits = at::randn({8, 40}) * 0.5;  // flat: every draw is far from certain
  auto run = [&](uint64_t seed) {
    SamplingOptions o;
    o.temperature = 1.0;
    o.seed = seed;
    Sampler s(o);
    std::vector<int64_t> all;
    for (int step = 0; step < 10; ++step) {
      std::vector<int64_t> v = to_vector(s.next(logits));
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  const std::vector<int64_t> a = run(7);
  EXPECT_EQ(a, run(7));
  EXPECT_NE(a, run(8));
  // Successive calls of one sampler advance its generator.
  std::vector<int64_t> first(a.begin(), a.begin() + 8), second(a.begin() + 8, a.begin() + 16);
  EXPECT_NE(first, second);
  // The global torch seed plays no part.
  at::manual_seed(99);
  EXPECT_EQ(a, run(7));
}

TEST(Sampler, TemperatureFollowsTheSoftmax) {
  // 4000 draws: each frequency is within 0.035 of its probability (> 4 standard deviations).
  const at::Tensor logits = at::tensor({1.0f, 0.0f, -0.5f, 0.5f}).view({1, 4});
  for (double temperature : {0.5, 2.0}) {
    SamplingOptions o;
    o.temperature = temperature;
    o.seed = 11;
    Sampler s(o);
    std::vector<double> f = frequencies(s, logits, 4000);
    at::Tensor p = at::softmax(logits[0] / temperature, -1);
    for (int64_t i = 0; i < 4; ++i)
      EXPECT_NEAR(f[static_cast<size_t>(i)], p[i].item<double>(), 0.035)
          << "temperature " << temperature << " id " << i;
  }
}

TEST(Sampler, TinyTopPKeepsOnlyTheArgmax) {
  at::manual_seed(3);
  at::Tensor logits = at::randn({5, 30}) * 0.3;  // nearly flat: sampling would wander
  SamplingOptions o;
  o.temperature = 1.0;
  o.top_p = 1e-6;
  o.seed = 5;
  Sampler s(o);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(at::equal(s.next(logits), logits.argmax(-1))) << i;
}

TEST(Sampler, TopPKeepsTheNucleus) {
  // p = [0.4, 0.3, 0.2, 0.1], top_p 0.5: the mass before id 1 is 0.4 < 0.5, before id 2 it
  // is 0.7, so the nucleus is {0, 1} renormalised to [4/7, 3/7].
  const at::Tensor logits = at::log(at::tensor({0.3f, 0.1f, 0.4f, 0.2f})).view({1, 4});
  SamplingOptions o;
  o.temperature = 1.0;
  o.top_p = 0.5;
  o.seed = 13;
  Sampler s(o);
  std::vector<double> f = frequencies(s, logits, 4000);
  EXPECT_EQ(f[1], 0.0);
  EXPECT_EQ(f[3], 0.0);
  EXPECT_NEAR(f[2], 4.0 / 7.0, 0.035);
  EXPECT_NEAR(f[0], 3.0 / 7.0, 0.035);
}

TEST(Sampler, InvalidOptionsThrow) {
  auto throws = [](double temperature, double top_p) {
    SamplingOptions o;
    o.temperature = temperature;
    o.top_p = top_p;
    try {
      Sampler s(o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(throws(-0.1, 1.0).find("temperature"), std::string::npos);
  EXPECT_NE(throws(1.0, 0.0).find("top_p"), std::string::npos);
  EXPECT_NE(throws(1.0, 1.5).find("top_p"), std::string::npos);
  EXPECT_EQ(throws(0.7, 0.9), "");
}

}  // namespace
}  // namespace tlm

namespace tlm {
namespace {

// The sampler on each device (cases /cpu here, /cuda on a GPU: CTest generate.sampler.cuda):
// the ids stay on the logits' device, a seed repeats exactly on the device, nucleus sampling
// never leaves the top-p set, and greedy equals argmax.
class SamplerOnDevice : public ::testing::TestWithParam<std::string> {};

TEST_P(SamplerOnDevice, SeededNucleusSamplingOnTheDevice) {
  if (GetParam() == "cuda" && !at::hasCUDA()) GTEST_SKIP() << "no CUDA GPU visible";
  const c10::Device dev = GetParam() == "cuda" ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  at::manual_seed(3);
  const at::Tensor logits = (at::randn({4, 64}) * 2.0).to(dev);
  SamplingOptions o;
  o.temperature = 0.8;
  o.top_p = 0.5;
  o.seed = 11;
  auto draws = [&] {
    Sampler s(o, dev);
    std::vector<at::Tensor> out;
    for (int i = 0; i < 20; ++i) out.push_back(s.next(logits));
    return at::stack(out);  // [20, 4]
  };
  const at::Tensor a = draws(), b = draws();
  EXPECT_EQ(a.device(), dev);
  EXPECT_TRUE(at::equal(a.cpu(), b.cpu()));
  // Every draw lies in its row's nucleus: the smallest set of most likely ids with mass >= 0.5.
  const at::Tensor probs = at::softmax(logits.cpu() / o.temperature, -1);
  const auto [sorted, order] = probs.sort(-1, /*descending=*/true);
  const at::Tensor keep = (sorted.cumsum(-1) - sorted) < o.top_p;  // [4, 64] in sorted order
  const at::Tensor host = a.cpu();
  for (int64_t row = 0; row < 4; ++row) {
    const at::Tensor allowed = order[row].masked_select(keep[row]);
    for (int64_t i = 0; i < host.size(0); ++i)
      EXPECT_TRUE(allowed.eq(host[i][row]).any().item<bool>()) << "row " << row << " drew " << host[i][row];
  }
  Sampler greedy(SamplingOptions{}, dev);
  EXPECT_TRUE(at::equal(greedy.next(logits).cpu(), logits.argmax(-1).cpu()));
}

INSTANTIATE_TEST_SUITE_P(Devices, SamplerOnDevice, ::testing::Values("cpu", "cuda"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace tlm
