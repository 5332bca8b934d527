#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/common/error.h"
#include "engine/formats/ggml_types.h"
#include "engine/formats/half.h"
#include "tests/engine/formats/test_writers.h"

namespace tlm {
namespace {

using test::Bytes;

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(GgmlTypes, NamesAndGeometry) {
  EXPECT_EQ(ggml_type_name(GgmlType::Q4_K), "Q4_K");
  EXPECT_EQ(ggml_type_name(GgmlType::BF16), "BF16");
  EXPECT_EQ(ggml_type_name(static_cast<GgmlType>(77)), "type 77");
  EXPECT_EQ(ggml_type_name(static_cast<GgmlType>(16)), "IQ2_XXS");
  EXPECT_EQ(ggml_block_size(GgmlType::F32), 1);
  EXPECT_EQ(ggml_block_bytes(GgmlType::F32), 4u);
  EXPECT_EQ(ggml_block_size(GgmlType::Q4_0), 32);
  EXPECT_EQ(ggml_block_bytes(GgmlType::Q4_0), 18u);
  EXPECT_EQ(ggml_block_bytes(GgmlType::Q4_1), 20u);
  EXPECT_EQ(ggml_block_bytes(GgmlType::Q5_0), 22u);
  EXPECT_EQ(ggml_block_bytes(GgmlType::Q5_1), 24u);
  EXPECT_EQ(ggml_block_bytes(GgmlType::Q8_0), 34u);
  EXPECT_EQ(ggml_block_size(GgmlType::Q6_K), 256);
  EXPECT_EQ(ggml_block_bytes(GgmlType::Q2_K), 84u);
  EXPECT_EQ(ggml_block_bytes(GgmlType::Q3_K), 110u);
  EXPECT_EQ(ggml_block_bytes(GgmlType::Q4_K), 144u);
  EXPECT_EQ(ggml_block_bytes(GgmlType::Q5_K), 176u);
  EXPECT_EQ(ggml_block_bytes(GgmlType::Q6_K), 210u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_1, 576), 18u * 20u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::F16, 7), 14u);
  EXPECT_THROW(ggml_block_size(static_cast<GgmlType>(77)), Error);
  EXPECT_THROW(ggml_row_bytes(GgmlType::Q8_0, 33), Error);
}

TEST(GgmlTypes, Supported) {
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0,
                     GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                     GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                     GgmlType::Q6_K}) {
    EXPECT_TRUE(ggml_type_supported(t)) << ggml_type_name(t);
  }
  for (GgmlType t : {GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::I32, GgmlType::F64,
                     static_cast<GgmlType>(16), static_cast<GgmlType>(77)}) {
    EXPECT_FALSE(ggml_type_supported(t)) << ggml_type_name(t);
  }
  EXPECT_TRUE(ggml_type_known(static_cast<GgmlType>(16)));
  EXPECT_FALSE(ggml_type_known(static_cast<GgmlType>(4)));
}

TEST(Half, KnownValues) {
  EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_fp32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(float_bits(fp16_to_fp32(0x8000)), 0x80000000u);
  EXPECT_EQ(fp16_to_fp32(0x7c00), INFINITY);
  EXPECT_EQ(fp16_to_fp32(0xfc00), -INFINITY);
  EXPECT_EQ(float_bits(fp16_to_fp32(0x7e00)), 0x7fc00000u);
  // A signalling NaN keeps its payload, as numpy's astype(float32) does.
  EXPECT_EQ(float_bits(fp16_to_fp32(0x7c01)), 0x7f802000u);
  EXPECT_EQ(float_bits(bf16_to_fp32(0x3f80)), 0x3f800000u);
  EXPECT_EQ(float_bits(bf16_to_fp32(0xff81)), 0xff810000u);
}

// Every half value against an independent formula (exact in double).
TEST(Half, Exhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const int sign = (h >> 15) ? -1 : 1;
    const int exp = (h >> 10) & 0x1f;
    const int mant = h & 0x3ff;
    const float got = fp16_to_fp32(static_cast<uint16_t>(h));
    if (exp == 31) {
      if (mant == 0) {
        EXPECT_EQ(got, sign * INFINITY) << h;
      } else {
        ASSERT_TRUE(std::isnan(got)) << h;
        EXPECT_EQ(float_bits(got), ((h & 0x8000u) << 16) | 0x7f800000u | (mant << 13)) << h;
      }
      continue;
    }
    const double ref = exp == 0 ? sign * std::ldexp(static_cast<double>(mant), -24)
                                : sign * std::ldexp(static_cast<double>(1024 + mant), exp - 25);
    ASSERT_EQ(got, static_cast<float>(ref)) << h;
    ASSERT_EQ(std::signbit(got), sign < 0) << h;
  }
}

TEST(Dequant, Q4_0NibbleOrder) {
  Bytes block;
  test::put_f16(block, 0x3c00);  // d = 1
  for (int j = 0; j < 16; ++j) block.push_back(static_cast<uint8_t>(j | ((15 - j) << 4)));
  std::vector<float> out(32);
  dequantize_ggml(GgmlType::Q4_0, block.data(), out.data(), 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], static_cast<float>(j - 8)) << j;
    EXPECT_EQ(out[j + 16], static_cast<float>(15 - j - 8)) << j;
  }
}

TEST(Dequant, Q4_1AndQ8_0) {
  Bytes q41;
  test::put_f16(q41, 0x3800);  // d = 0.5
  test::put_f16(q41, 0xbc00);  // m = -1
  for (int j = 0; j < 16; ++j) q41.push_back(static_cast<uint8_t>(j | (j << 4)));
  std::vector<float> out(32);
  dequantize_ggml(GgmlType::Q4_1, q41.data(), out.data(), 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], 0.5f * j - 1.0f);
    EXPECT_EQ(out[j + 16], 0.5f * j - 1.0f);
  }
  Bytes q80;
  test::put_f16(q80, 0x4000);  // d = 2
  for (int j = 0; j < 32; ++j) q80.push_back(static_cast<uint8_t>(static_cast<int8_t>(j - 16)));
  dequantize_ggml(GgmlType::Q8_0, q80.data(), out.data(), 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], 2.0f * (j - 16));
}

TEST(Dequant, Q6_KConstantBlock) {
  // ql = 0x55 (low and high nibble 5), qh = 0 → q = 5 - 32 = -27; scale i = i + 1; d = 1.
  Bytes block(210, 0);
  std::memset(block.data(), 0x55, 128);
  for (int i = 0; i < 16; ++i) block[192 + i] = static_cast<uint8_t>(i + 1);
  block[208] = 0x00;
  block[209] = 0x3c;
  std::vector<float> out(256);
  dequantize_ggml(GgmlType::Q6_K, block.data(), out.data(), 256);
  for (int v = 0; v < 256; ++v) EXPECT_EQ(out[v], -27.0f * (v / 16 + 1)) << v;
}

TEST(Dequant, RejectsUnsupportedAndPartialBlocks) {
  Bytes block(64, 0);
  std::vector<float> out(64);
  try {
    dequantize_ggml(GgmlType::Q8_1, block.data(), out.data(), 32);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q8_1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dequantize_ggml(GgmlType::Q4_0, block.data(), out.data(), 16), Error);
}

}  // namespace
}  // namespace tlm
