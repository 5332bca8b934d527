#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"
#include "tests/engine/formats/test_writers.h"

namespace tlm {
namespace {

using test::Bytes;
using test::GgufBuilder;

const char* kPath = "model.gguf";

enum : uint32_t { kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kStr, kArr, kU64, kI64, kF64 };

GgufHeader parse(const Bytes& b) { return parse_gguf(b.data(), b.size(), kPath); }

Bytes f32_bytes(const std::vector<float>& v) {
  Bytes b;
  for (float x : v) test::put_f32(b, x);
  return b;
}

// A Q8_0 block with d = 1 and values j - 16 + shift.
Bytes q8_0_block(int shift) {
  Bytes b;
  test::put_f16(b, 0x3c00);
  for (int j = 0; j < 32; ++j) b.push_back(static_cast<uint8_t>(static_cast<int8_t>(j - 16 + shift)));
  return b;
}

// Metadata of every value type plus three tensors: F32 [3, 2], Q8_0 [32, 2], F16 [2].
GgufBuilder valid_builder() {
  GgufBuilder g;
  g.key("u8", kU8); test::put_u8(g.kv, 200);
  g.key("i8", kI8); test::put_u8(g.kv, 0xff);
  g.key("u16", kU16); test::put_u8(g.kv, 0x34); test::put_u8(g.kv, 0x12);
  g.key("i16", kI16); test::put_u8(g.kv, 0xfe); test::put_u8(g.kv, 0xff);
  g.add_u32("u32", 4000000000u);
  g.key("i32", kI32); test::put_u32(g.kv, static_cast<uint32_t>(-7));
  g.key("f32", kF32); test::put_f32(g.kv, 0.5f);
  g.key("bool", kBool); test::put_u8(g.kv, 1);
  g.add_string("general.name", "tiny");
  g.key("u64", kU64); test::put_u64(g.kv, 1ull << 40);
  g.key("i64", kI64); test::put_u64(g.kv, static_cast<uint64_t>(-5));
  g.key("f64", kF64); test::put_f64(g.kv, 1e-300);
  g.key("arr.str", kArr); test::put_u32(g.kv, kStr); test::put_u64(g.kv, 2);
  test::put_str(g.kv, "a"); test::put_str(g.kv, "");
  g.key("arr.i32", kArr); test::put_u32(g.kv, kI32); test::put_u64(g.kv, 3);
  for (int v : {1, -2, 3}) test::put_u32(g.kv, static_cast<uint32_t>(v));
  g.key("arr.f32", kArr); test::put_u32(g.kv, kF32); test::put_u64(g.kv, 2);
  test::put_f32(g.kv, 1.5f); test::put_f32(g.kv, -0.25f);
  g.key("arr.bool", kArr); test::put_u32(g.kv, kBool); test::put_u64(g.kv, 2);
  test::put_u8(g.kv, 0); test::put_u8(g.kv, 1);
  g.key("arr.empty", kArr); test::put_u32(g.kv, kU8); test::put_u64(g.kv, 0);
  g.add_tensor("w.f32", {3, 2}, 0, f32_bytes({1, 2, 3, 4, 5, 6}));
  Bytes q = q8_0_block(0);
  Bytes q2 = q8_0_block(1);
  q.insert(q.end(), q2.begin(), q2.end());
  g.add_tensor("w.q8", {32, 2}, 8, q);
  Bytes h;
  test::put_f16(h, 0x3c00);
  test::put_f16(h, 0x0001);
  g.add_tensor("w.f16", {2}, 1, h);
  return g;
}

TEST(Gguf, ParsesValidFile) {
  const Bytes file = valid_builder().build();
  const GgufHeader h = parse(file);
  EXPECT_EQ(h.version, 3u);
  EXPECT_EQ(h.alignment, 32u);
  const auto& m = h.metadata;
  EXPECT_EQ(std::get<int64_t>(m.at("u8")), 200);
  EXPECT_EQ(std::get<int64_t>(m.at("i8")), -1);
  EXPECT_EQ(std::get<int64_t>(m.at("u16")), 0x1234);
  EXPECT_EQ(std::get<int64_t>(m.at("i16")), -2);
  EXPECT_EQ(std::get<int64_t>(m.at("u32")), 4000000000);
  EXPECT_EQ(std::get<int64_t>(m.at("i32")), -7);
  EXPECT_EQ(std::get<double>(m.at("f32")), 0.5);
  EXPECT_EQ(std::get<bool>(m.at("bool")), true);
  EXPECT_EQ(std::get<std::string>(m.at("general.name")), "tiny");
  EXPECT_EQ(std::get<int64_t>(m.at("u64")), 1ll << 40);
  EXPECT_EQ(std::get<int64_t>(m.at("i64")), -5);
  EXPECT_EQ(std::get<double>(m.at("f64")), 1e-300);
  EXPECT_EQ(std::get<std::vector<std::string>>(m.at("arr.str")),
            (std::vector<std::string>{"a", ""}));
  EXPECT_EQ(std::get<std::vector<int64_t>>(m.at("arr.i32")), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(std::get<std::vector<double>>(m.at("arr.f32")), (std::vector<double>{1.5, -0.25}));
  EXPECT_EQ(std::get<std::vector<int64_t>>(m.at("arr.bool")), (std::vector<int64_t>{0, 1}));
  EXPECT_TRUE(std::get<std::vector<int64_t>>(m.at("arr.empty")).empty());

  ASSERT_EQ(h.tensors.size(), 3u);
  const GgufTensor& t0 = h.tensors[0];
  EXPECT_EQ(t0.name, "w.f32");
  EXPECT_EQ(t0.ne, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(t0.torch_shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t0.rows(), 2);
  EXPECT_EQ(t0.row_size(), 3);
  EXPECT_EQ(t0.nbytes, 24u);
  EXPECT_EQ(t0.offset % 32, 0u);
  EXPECT_EQ(h.tensors[1].type, GgmlType::Q8_0);
  EXPECT_EQ(h.tensors[1].nbytes, 68u);
  EXPECT_EQ(h.tensors[1].offset, t0.offset + 32);
  EXPECT_EQ(h.tensors[2].offset, t0.offset + 128);
  float first;
  std::memcpy(&first, file.data() + t0.offset, 4);
  EXPECT_EQ(first, 1.0f);
}

TEST(Gguf, Version2AndCustomAlignment) {
  GgufBuilder g = valid_builder();
  g.version = 2;
  g.alignment = 64;
  g.key("general.alignment", kU32);
  test::put_u32(g.kv, 64);
  const Bytes file = g.build();
  const GgufHeader h = parse(file);
  EXPECT_EQ(h.version, 2u);
  EXPECT_EQ(h.alignment, 64u);
  for (const GgufTensor& t : h.tensors) EXPECT_EQ(t.offset % 64, 0u) << t.name;
  EXPECT_EQ(h.tensors[1].offset - h.tensors[0].offset, 64u);
}

TEST(Gguf, EveryTruncationFails) {
  const Bytes file = valid_builder().build();
  for (size_t n = 0; n < file.size(); ++n) {
    Bytes cut(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_TLM_ERROR(parse(cut), kPath);
  }
}

TEST(Gguf, BadMagicAndVersion) {
  Bytes file = valid_builder().build();
  Bytes bad = file;
  bad[0] = 'X';
  EXPECT_TLM_ERROR(parse(bad), kPath, "bad magic");
  EXPECT_TLM_ERROR(parse(Bytes{'G', 'G'}), kPath, "bad magic");
  for (uint32_t v : {0u, 1u, 4u}) {
    GgufBuilder g = valid_builder();
    g.version = v;
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "unsupported GGUF version " + std::to_string(v));
  }
  GgufBuilder be = valid_builder();
  be.version = 0x03000000u;
  EXPECT_TLM_ERROR(parse(be.build()), kPath, "big-endian");
}

TEST(Gguf, AbsurdCountsFailFast) {
  const auto start = std::chrono::steady_clock::now();
  {
    GgufBuilder g = valid_builder();
    g.tensor_count = 1ull << 60;
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "tensor count 1152921504606846976");
  }
  {
    GgufBuilder g = valid_builder();
    g.kv_count = 1ull << 60;
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "metadata count");
  }
  {
    GgufBuilder g;
    g.key("big.str", kStr);
    test::put_u64(g.kv, 1ull << 60);
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "metadata key 'big.str'", "truncated");
  }
  {
    GgufBuilder g;
    g.key("big.arr", kArr);
    test::put_u32(g.kv, kStr);
    test::put_u64(g.kv, 1ull << 60);
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "metadata key 'big.arr'", "cannot fit");
  }
  {
    GgufBuilder g;
    g.key("big.arr", kArr);
    test::put_u32(g.kv, kU64);
    test::put_u64(g.kv, ~0ull);
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "metadata key 'big.arr'", "cannot fit");
  }
  {
    GgufBuilder g;
    g.add_tensor("t", {4}, 0, f32_bytes({1, 2, 3, 4}));
    Bytes file = g.build();
    // The name length field of the first tensor info follows the 24-byte preamble.
    const uint64_t huge = 1ull << 62;
    std::memcpy(file.data() + 24, &huge, 8);
    EXPECT_TLM_ERROR(parse(file), kPath, "name of tensor #0", "truncated");
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(secs, 1.0);
}

TEST(Gguf, MetadataErrors) {
  {
    GgufBuilder g;
    g.key("weird", 99);
    test::put_u32(g.kv, 0);
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "metadata key 'weird'", "unknown value type 99");
  }
  {
    GgufBuilder g;
    g.key("nested", kArr);
    test::put_u32(g.kv, kArr);
    test::put_u64(g.kv, 1);
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "metadata key 'nested'", "nested arrays");
  }
  {
    GgufBuilder g;
    g.key("big", kU64);
    test::put_u64(g.kv, ~0ull);
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "metadata key 'big'", "does not fit in int64");
  }
  {
    GgufBuilder g;
    g.key("flag", kBool);
    test::put_u8(g.kv, 7);
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "metadata key 'flag'", "bool");
  }
  {
    GgufBuilder g;
    g.add_u32("general.alignment", 48);
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "general.alignment 48");
  }
  {
    GgufBuilder g;
    g.add_string("general.alignment", "32");
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "general.alignment", "not an integer");
  }
  {
    GgufBuilder g;
    g.add_u32("dup", 1);
    g.add_u32("dup", 2);
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "metadata key 'dup'", "twice");
  }
}

TEST(Gguf, TensorInfoErrors) {
  auto with_tensor = [](std::vector<uint64_t> ne, uint32_t type, size_t nbytes) {
    GgufBuilder g;
    g.add_tensor("bad.weight", std::move(ne), type, Bytes(nbytes, 0));
    return g.build();
  };
  EXPECT_TLM_ERROR(parse(with_tensor({1, 1, 1, 1, 1}, 0, 4)), kPath, "tensor 'bad.weight'",
                   "5 dimensions");
  EXPECT_TLM_ERROR(parse(with_tensor({4, 0}, 0, 0)), kPath, "tensor 'bad.weight'", "is 0");
  EXPECT_TLM_ERROR(parse(with_tensor({1ull << 32, 1ull << 32, 1ull << 32}, 0, 0)), kPath,
                   "tensor 'bad.weight'", "overflows");
  EXPECT_TLM_ERROR(parse(with_tensor({33}, 2, 18)), kPath, "tensor 'bad.weight'",
                   "not a whole number of Q4_0 blocks");
  EXPECT_TLM_ERROR(parse(with_tensor({4}, 77, 4)), kPath, "tensor 'bad.weight'",
                   "unknown ggml type 77");
  // Data running past the end of the file (the writer is told about fewer bytes).
  EXPECT_TLM_ERROR(parse(with_tensor({64}, 0, 100)), kPath, "tensor 'bad.weight'",
                   "outside the file");
  {
    GgufBuilder g;
    g.add_tensor("t", {4}, 0, f32_bytes({1, 2, 3, 4}));
    g.add_tensor("t", {4}, 0, f32_bytes({1, 2, 3, 4}));
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "tensor 't'", "twice");
  }
  {
    GgufBuilder g;
    g.add_tensor("a", {16}, 0, f32_bytes(std::vector<float>(16, 1.0f)));
    g.add_tensor("b", {4}, 0, f32_bytes({1, 2, 3, 4}));
    g.tensors[1].offset = 32;  // inside a's 64 bytes
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "tensor 'b'", "overlaps", "tensor 'a'");
  }
  {
    GgufBuilder g;
    g.add_tensor("odd", {4}, 0, f32_bytes({1, 2, 3, 4}));
    g.tensors[0].offset = 8;
    EXPECT_TLM_ERROR(parse(g.build()), kPath, "tensor 'odd'", "not a multiple of the alignment");
  }
  {
    GgufBuilder g;
    g.add_tensor("far", {4}, 0, f32_bytes({1, 2, 3, 4}));
    Bytes file = g.build();
    g.tensors[0].offset = 1ull << 40;
    g.tensors[0].data.clear();
    Bytes far = g.build();
    far.resize(file.size());
    EXPECT_TLM_ERROR(parse(far), kPath, "tensor 'far'", "outside the file");
    g.tensors[0].offset = ~0ull - 31;
    far = g.build();
    EXPECT_TLM_ERROR(parse(far), kPath, "tensor 'far'", "outside the file");
  }
}

class GgufDiskTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::make_temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(GgufDiskTest, FileGettersAndDequant) {
  const std::string path = dir_ + "/tiny.gguf";
  test::write_file(path, valid_builder().build());
  GgufFile f(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_TRUE(f.has("u8"));
  EXPECT_FALSE(f.has("zzz"));
  EXPECT_EQ(f.get_string("general.name"), "tiny");
  EXPECT_EQ(f.get_int("i64"), -5);
  EXPECT_EQ(f.get_float("f32"), 0.5);
  EXPECT_EQ(f.get_float("u8"), 200.0);  // integers are accepted as floats
  EXPECT_TRUE(f.get_bool("bool"));
  EXPECT_EQ(f.get_string_array("arr.str").size(), 2u);
  EXPECT_EQ(f.get_int_array("arr.i32")[1], -2);
  EXPECT_EQ(f.get_float_array("arr.f32")[0], 1.5);
  EXPECT_EQ(f.get_string_or("zzz", "fb"), "fb");
  EXPECT_EQ(f.get_int_or("zzz", 9), 9);
  EXPECT_EQ(f.get_int_or("u8", 9), 200);
  EXPECT_EQ(f.get_float_or("zzz", 2.5), 2.5);
  EXPECT_FALSE(f.get_bool_or("zzz", false));
  EXPECT_TLM_ERROR(f.get_string("zzz"), path, "metadata key 'zzz' missing");
  EXPECT_TLM_ERROR(f.get_int("general.name"), path, "metadata key 'general.name'",
                   "has type string, expected int");
  EXPECT_TLM_ERROR(f.get_int_or("f32", 1), path, "metadata key 'f32'", "expected int");
  EXPECT_TLM_ERROR(f.get_string_array("arr.i32"), path, "expected string array");

  const GgufTensor& w = f.tensor("w.f32");
  std::vector<float> out(6);
  f.dequantize_rows(w, 0, 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  f.dequantize_rows(w, 1, 2, out.data());
  EXPECT_EQ(out[0], 4.0f);
  std::vector<float> q(64);
  const GgufTensor& wq = f.tensor("w.q8");
  f.dequantize_rows(wq, 1, 2, q.data());
  for (int j = 0; j < 32; ++j) EXPECT_EQ(q[j], static_cast<float>(j - 15));
  std::vector<float> h(2);
  f.dequantize_rows(f.tensor("w.f16"), 0, 1, h.data());
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], 5.9604644775390625e-08f);
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_TLM_ERROR(f.tensor("nope"), path, "tensor 'nope' not found");
  EXPECT_TLM_ERROR(f.dequantize_rows(w, 1, 3, out.data()), path, "tensor 'w.f32'", "row range");
  EXPECT_TLM_ERROR(f.dequantize_rows(w, -1, 1, out.data()), path, "tensor 'w.f32'");
}

TEST_F(GgufDiskTest, UnsupportedTypeParsesButDoesNotDequantise) {
  GgufBuilder g;
  g.add_tensor("ids", {4}, 26, Bytes(16, 0));           // I32
  g.add_tensor("iq", {256}, 16, Bytes(66, 0));          // IQ2_XXS
  g.add_tensor("q81", {32}, 9, Bytes(40, 0));           // Q8_1
  const std::string path = dir_ + "/unsupported.gguf";
  test::write_file(path, g.build());
  GgufFile f(path);
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensor("iq").nbytes, 66u);
  std::vector<float> out(256);
  EXPECT_TLM_ERROR(f.dequantize_rows(f.tensor("ids"), 0, 1, out.data()), path, "tensor 'ids'",
                   "I32");
  EXPECT_TLM_ERROR(f.dequantize_rows(f.tensor("iq"), 0, 1, out.data()), path, "tensor 'iq'",
                   "IQ2_XXS");
  EXPECT_TLM_ERROR(f.dequantize_rows(f.tensor("q81"), 0, 1, out.data()), path, "tensor 'q81'",
                   "Q8_1");
}

TEST_F(GgufDiskTest, FileErrorsNameThePath) {
  const std::string path = dir_ + "/broken.gguf";
  Bytes file = valid_builder().build();
  file.resize(file.size() - 3);
  test::write_file(path, file);
  EXPECT_TLM_ERROR(GgufFile f(path), path, "tensor 'w.f16'", "outside the file");
  const std::string empty = dir_ + "/empty.gguf";
  test::write_file(empty, {});
  EXPECT_TLM_ERROR(GgufFile f(empty), empty, "bad magic");
  EXPECT_TLM_ERROR(GgufFile f(dir_ + "/absent.gguf"), dir_ + "/absent.gguf", "cannot open");
}

}  // namespace
}  // namespace tlm
