// Products that read GGUF blocks (engine/kernels/block_weight.h) against the references they
// replace:
// - the blocks' values are the GGUF dequantiser's (engine/formats, itself equal to gguf-py's)
//   bit for bit, also on random bytes (every nibble, every int8, random fp16 scales);
// - block_product equals at::linear on those values to rounding: |ours - ref| <= 1e-5 *
//   max|ref| (the same fp32 products summed in another order, as for the packed weights);
// - slicing (TP shards) and concatenation (fused groups) pick the same values;
// - linear() reads the blocks only for products of up to max_block_rows() rows that need no
//   gradient, and the fp32 weight otherwise.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <iostream>

#include "engine/common/error.h"
#include "engine/formats/ggml_types.h"
#include "engine/kernels/block_weight.h"
#include "engine/kernels/linear_weight.h"

namespace tlm {
namespace {

constexpr double kRel = 1e-5;

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-30, b.abs().max().item<double>());
}

// Random blocks with finite fp16 scales around 0.01-0.1 (d) and -0.2-0.2 (m).
BlockWeight random_blocks(BlockFormat f, int64_t out, int64_t in) {
  BlockWeight w;
  w.format = f;
  w.in_features = in;
  w.bytes = at::randint(0, 256, {out, in / 32 * block_bytes(f)}, at::kByte);
  auto b = w.bytes.accessor<uint8_t, 2>();
  for (int64_t r = 0; r < out; ++r)
    for (int64_t k = 0; k < in / 32; ++k) {
      const int64_t o = k * block_bytes(f);
      b[r][o + 1] = static_cast<uint8_t>(0x20 + (b[r][o + 1] % 10));  // exponent 8-17: d in [2^-7, 2^2)
      if (f == BlockFormat::q4_1) b[r][o + 3] = static_cast<uint8_t>((b[r][o + 3] & 0x80) | (0x28 + b[r][o + 3] % 8));
    }
  return w;
}

at::Tensor gguf_values(const BlockWeight& w) {
  at::Tensor out = at::empty({w.out_features(), w.in_features}, at::kFloat);
  const GgmlType t = w.format == BlockFormat::q4_1 ? GgmlType::Q4_1 : GgmlType::Q8_0;
  dequantize_ggml(t, w.bytes.data_ptr<uint8_t>(), out.data_ptr<float>(), out.numel());
  return out;
}

class BlockWeightTest : public ::testing::TestWithParam<BlockFormat> {
 protected:
  void SetUp() override { at::manual_seed(11); }
};

TEST_P(BlockWeightTest, ValuesAreTheGgufDequantisersBitForBit) {
  const BlockWeight w = random_blocks(GetParam(), 40, 576);
  const at::Tensor ours = dequantize_blocks(w), ref = gguf_values(w);
  ASSERT_TRUE(at::isfinite(ref).all().item<bool>());
  EXPECT_TRUE(at::equal(ours, ref));
}

TEST_P(BlockWeightTest, ProductEqualsAtLinearOnTheSameValues) {
  for (auto [out, in] : {std::pair<int64_t, int64_t>{576, 576}, {192, 576}, {576, 1536}, {33, 64}}) {
    const BlockWeight w = random_blocks(GetParam(), out, in);
    const at::Tensor W = gguf_values(w);
    for (int64_t rows : {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17}) {
      const at::Tensor x = at::randn({rows, in});
      const at::Tensor ref = at::linear(x, W);
      for (BlockIsa isa : {BlockIsa::portable, BlockIsa::avx2, BlockIsa::avx512}) {
        if (!block_isa_available(isa)) continue;  // the variants this CPU runs; see IsasThisCpuRuns
        EXPECT_LE(rel_diff(block_product(x, w, isa), ref), kRel)
            << out << "x" << in << " rows " << rows << " isa " << static_cast<int>(isa);
      }
    }
  }
}

TEST_P(BlockWeightTest, SlicesAndConcatenationPickTheSameValues) {
  const BlockWeight w = random_blocks(GetParam(), 48, 128);
  const at::Tensor W = gguf_values(w);
  EXPECT_TRUE(at::equal(dequantize_blocks(block_rows(w, 8, 40)), W.narrow(0, 8, 32)));
  EXPECT_TRUE(at::equal(dequantize_blocks(block_columns(w, 32, 96)), W.narrow(1, 32, 64)));
  const BlockWeight a = block_rows(w, 0, 16), b = block_rows(w, 16, 48);
  EXPECT_TRUE(at::equal(dequantize_blocks(concat_block_rows({&a, &b})), W));
  EXPECT_THROW(block_columns(w, 16, 64), Error);  // splits a block
  EXPECT_THROW(block_rows(w, 0, 49), Error);
  const BlockWeight other = random_blocks(GetParam() == BlockFormat::q4_1 ? BlockFormat::q8_0 : BlockFormat::q4_1,
                                          8, 128);
  EXPECT_THROW(concat_block_rows({&a, &other}), Error);
}

TEST_P(BlockWeightTest, LinearReadsBlocksOnlyForFewRowsWithoutGradient) {
  const BlockWeight blocks = random_blocks(GetParam(), 96, 256);
  // The fp32 weight deliberately differs from the blocks, so the result says which was read.
  LinearWeight w(gguf_values(blocks) + 1.0);
  w.blocks = blocks;
  const at::Tensor bias = at::randn({96});
  const int64_t limit = max_block_rows();
  {
    c10::InferenceMode inference;
    const at::Tensor few = at::randn({2, limit / 2, 256});  // [..., in] with `limit` rows in all
    EXPECT_LE(rel_diff(linear(few, w, bias), at::linear(few, gguf_values(blocks), bias)), kRel);
    const at::Tensor many = at::randn({limit + 1, 256});
    EXPECT_LE(rel_diff(linear(many, w, bias), at::linear(many, w.plain, bias)), kRel);
  }
  const at::Tensor x = at::randn({1, 256}).requires_grad_(true);
  const at::Tensor y = linear(x, w);
  EXPECT_LE(rel_diff(y.detach(), at::linear(x.detach(), w.plain)), kRel);
  y.sum().backward();
  EXPECT_LE(rel_diff(x.grad(), w.plain.sum(0, true)), kRel);
}

INSTANTIATE_TEST_SUITE_P(Formats, BlockWeightTest, ::testing::Values(BlockFormat::q4_1, BlockFormat::q8_0),
                         [](const auto& info) { return info.param == BlockFormat::q4_1 ? "Q4_1" : "Q8_0"; });

TEST(BlockWeight, IsasThisCpuRuns) {
  std::cout << "[block kernel] portable yes, AVX2 " << (block_isa_available(BlockIsa::avx2) ? "yes" : "no")
            << ", AVX-512 " << (block_isa_available(BlockIsa::avx512) ? "yes" : "no") << "; products use "
            << (best_block_isa() == BlockIsa::avx512 ? "AVX-512" : best_block_isa() == BlockIsa::avx2 ? "AVX2" : "portable")
            << " for up to " << max_block_rows() << " rows\n";
  EXPECT_TRUE(block_isa_available(best_block_isa()));
  if (!block_isa_available(BlockIsa::avx512)) {
    EXPECT_THROW(block_product(at::randn({1, 64}), random_blocks(BlockFormat::q8_0, 8, 64), BlockIsa::avx512), Error);
  }
}

TEST(BlockWeight, ProductRefusesWhatDoesNotFit) {
  const BlockWeight w = random_blocks(BlockFormat::q8_0, 8, 64);
  EXPECT_THROW(block_product(at::randn({2, 32}), w), Error);
  EXPECT_THROW(block_product(at::randn({2, 64}).to(at::kDouble), w), Error);
  EXPECT_THROW(block_product(at::randn({64, 2}).t(), w), Error);  // not contiguous
}

}  // namespace
}  // namespace tlm
