#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "engine/common/error.h"
#include "engine/formats/safetensors_file.h"
#include "tests/engine/formats/test_writers.h"

namespace tlm {
namespace {

using test::Bytes;

const char* kPath = "weights.safetensors";

SafetensorsHeader parse(const Bytes& b) { return parse_safetensors(b.data(), b.size(), kPath); }

Bytes iota_bytes(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i);
  return b;
}

// A valid two-tensor file: "b" (F32 [2, 3]) at data bytes 0..24, "a" (BF16 [4]) at 24..32,
// an empty I64 tensor and metadata.
Bytes valid_file() {
  const std::string header =
      R"({"__metadata__": {"format": "pt"},)"
      R"( "b": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},)"
      R"( "a": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},)"
      R"( "e": {"dtype": "I64", "shape": [0, 5], "data_offsets": [32, 32]}}   )";
  return test::make_safetensors(header, iota_bytes(32));
}

// One tensor "t" with the given JSON entry, over `data_bytes` bytes of data.
Bytes one_tensor(const std::string& entry, size_t data_bytes = 16) {
  return test::make_safetensors(R"({"t": )" + entry + "}", iota_bytes(data_bytes));
}

TEST(Safetensors, ParsesValidFile) {
  const Bytes file = valid_file();
  const SafetensorsHeader h = parse(file);
  const uint64_t data_start = file.size() - 32;
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.tensors[0].name, "b");
  EXPECT_EQ(h.tensors[0].dtype, StDtype::F32);
  EXPECT_EQ(h.tensors[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(h.tensors[0].begin, data_start);
  EXPECT_EQ(h.tensors[0].end, data_start + 24);
  EXPECT_EQ(h.tensors[1].name, "a");
  EXPECT_EQ(h.tensors[1].dtype, StDtype::BF16);
  EXPECT_EQ(h.tensors[1].begin, data_start + 24);
  EXPECT_EQ(h.tensors[2].name, "e");
  EXPECT_EQ(h.tensors[2].begin, h.tensors[2].end);
  EXPECT_EQ(st_dtype_name(StDtype::BF16), "BF16");
  EXPECT_EQ(st_dtype_bytes(StDtype::F64), 8u);
  EXPECT_EQ(st_dtype_bytes(StDtype::BOOL), 1u);
}

TEST(Safetensors, EveryTruncationFails) {
  const Bytes file = valid_file();
  for (size_t n = 0; n < file.size(); ++n) {
    Bytes cut(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_TLM_ERROR(parse(cut), kPath);
  }
}

TEST(Safetensors, HeaderErrors) {
  EXPECT_TLM_ERROR(parse(Bytes{1, 2, 3}), kPath, "shorter than the 8-byte");
  Bytes long_header;
  test::put_u64(long_header, 1000);
  long_header.push_back('{');
  EXPECT_TLM_ERROR(parse(long_header), kPath, "header length 1000", "past the end");
  Bytes huge;
  test::put_u64(huge, ~0ull);
  EXPECT_TLM_ERROR(parse(huge), kPath, "past the end");
  EXPECT_TLM_ERROR(parse(test::make_safetensors("{\"t\": ", {})), kPath, "not valid JSON");
  EXPECT_TLM_ERROR(parse(test::make_safetensors("[1, 2]", {})), kPath, "not a JSON object");
  EXPECT_TLM_ERROR(parse(test::make_safetensors(R"({"__metadata__": {"a": 1}})", {})), kPath,
                   "__metadata__", "'a'");
  EXPECT_TLM_ERROR(
      parse(test::make_safetensors(
          R"({"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
          R"( "t": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
          iota_bytes(2))),
      kPath, "tensor 't'", "twice");
}

TEST(Safetensors, TensorErrors) {
  EXPECT_TLM_ERROR(parse(one_tensor("[1]")), kPath, "tensor 't'", "not a JSON object");
  EXPECT_TLM_ERROR(parse(one_tensor(R"({"shape": [4], "data_offsets": [0, 16]})")), kPath,
                   "tensor 't'", "missing \"dtype\"");
  EXPECT_TLM_ERROR(parse(one_tensor(R"({"dtype": "F32", "data_offsets": [0, 16]})")), kPath,
                   "tensor 't'", "missing \"shape\"");
  EXPECT_TLM_ERROR(parse(one_tensor(R"({"dtype": "F32", "shape": [4]})")), kPath, "tensor 't'",
                   "missing \"data_offsets\"");
  EXPECT_TLM_ERROR(
      parse(one_tensor(R"({"dtype": "F8_E4M3", "shape": [16], "data_offsets": [0, 16]})")),
      kPath, "tensor 't'", "unsupported dtype 'F8_E4M3'");
  EXPECT_TLM_ERROR(parse(one_tensor(R"({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]})")),
                   kPath, "tensor 't'", "negative dimension -4");
  EXPECT_TLM_ERROR(parse(one_tensor(R"({"dtype": "F32", "shape": [1.5], "data_offsets": [0, 16]})")),
                   kPath, "tensor 't'", "not an integer");
  EXPECT_TLM_ERROR(parse(one_tensor(R"({"dtype": "F32", "shape": [3], "data_offsets": [0, 16]})")),
                   kPath, "tensor 't'", "needs 12");
  EXPECT_TLM_ERROR(parse(one_tensor(R"({"dtype": "F32", "shape": [0], "data_offsets": [8, 4]})")),
                   kPath, "tensor 't'", "begin 8 > end 4");
  EXPECT_TLM_ERROR(parse(one_tensor(R"({"dtype": "F32", "shape": [8], "data_offsets": [0, 32]})")),
                   kPath, "tensor 't'", "end 32", "past the end of the data");
  EXPECT_TLM_ERROR(parse(one_tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": [0]})")),
                   kPath, "tensor 't'", "[begin, end]");
  EXPECT_TLM_ERROR(parse(one_tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": [-1, 15]})")),
                   kPath, "tensor 't'", "non-negative");
  EXPECT_TLM_ERROR(
      parse(one_tensor(R"({"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]})")),
      kPath, "tensor 't'", "overflows");
}

TEST(Safetensors, OverlapNamesBothTensors) {
  const Bytes file = test::make_safetensors(
      R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
      R"( "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
      iota_bytes(12));
  EXPECT_TLM_ERROR(parse(file), kPath, "tensor 'y'", "overlaps tensor 'x'");
}

class SafetensorsDiskTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::make_temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(SafetensorsDiskTest, FileLookupAndData) {
  const std::string path = dir_ + "/model.safetensors";
  test::write_file(path, valid_file());
  SafetensorsFile f(path);
  EXPECT_EQ(f.path(), path);
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const SafetensorsTensor* a = f.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(f.data(*a)[0], 24);  // data byte 24 holds the value 24
  EXPECT_EQ(f.data(*f.find("b"))[5], 5);
  EXPECT_EQ(f.find("nope"), nullptr);

  Bytes bad = valid_file();
  bad.resize(bad.size() - 1);
  const std::string bad_path = dir_ + "/bad.safetensors";
  test::write_file(bad_path, bad);
  EXPECT_TLM_ERROR(SafetensorsFile g(bad_path), bad_path, "tensor 'a'");
}

TEST_F(SafetensorsDiskTest, SingleFileModel) {
  test::write_file(dir_ + "/model.safetensors", valid_file());
  SafetensorsModel m(dir_);
  EXPECT_EQ(m.tensor_names(), (std::vector<std::string>{"a", "b", "e"}));
  EXPECT_TRUE(m.has("a"));
  EXPECT_FALSE(m.has("z"));
  EXPECT_EQ(m.tensor("b").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(m.file_of("b").path(), dir_ + "/model.safetensors");
  EXPECT_TLM_ERROR(m.tensor("z"), dir_, "tensor 'z' not found");
}

TEST_F(SafetensorsDiskTest, ShardedModel) {
  test::write_file(dir_ + "/s1.safetensors",
                   one_tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]})"));
  test::write_file(dir_ + "/s2.safetensors",
                   test::make_safetensors(
                       R"({"u": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})",
                       iota_bytes(2)));
  test::write_file(dir_ + "/model.safetensors.index.json",
                   [] {
                     const std::string s =
                         R"({"metadata": {}, "weight_map": {"t": "s1.safetensors", "u": "s2.safetensors"}})";
                     return Bytes(s.begin(), s.end());
                   }());
  SafetensorsModel m(dir_);
  EXPECT_EQ(m.tensor_names(), (std::vector<std::string>{"t", "u"}));
  EXPECT_EQ(m.file_of("u").path(), dir_ + "/s2.safetensors");
  EXPECT_EQ(m.file_of("u").data(m.tensor("u"))[1], 1);
  EXPECT_EQ(m.tensor("t").dtype, StDtype::F32);
}

TEST_F(SafetensorsDiskTest, ShardedModelErrors) {
  const std::string index = dir_ + "/model.safetensors.index.json";
  auto write_index = [&](const std::string& s) { test::write_file(index, Bytes(s.begin(), s.end())); };
  test::write_file(dir_ + "/s1.safetensors",
                   one_tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]})"));

  write_index(R"({"weight_map": {"t": "s1.safetensors", "w": "s9.safetensors"}})");
  EXPECT_TLM_ERROR(SafetensorsModel m(dir_), index, "shard 's9.safetensors'", "tensor 'w'",
                   "missing");
  write_index(R"({"weight_map": {"t": "s1.safetensors", "v": "s1.safetensors"}})");
  EXPECT_TLM_ERROR(SafetensorsModel m(dir_), index, "s1.safetensors", "lacks tensor 'v'");
  write_index(R"({"weight_map": )");
  EXPECT_TLM_ERROR(SafetensorsModel m(dir_), index, "not valid JSON");
  write_index(R"({"metadata": {}})");
  EXPECT_TLM_ERROR(SafetensorsModel m(dir_), index, "weight_map");

  const std::string empty = test::make_temp_dir();
  EXPECT_TLM_ERROR(SafetensorsModel m(empty), empty, "model.safetensors");
  std::filesystem::remove_all(empty);
}

}  // namespace
}  // namespace tlm
