// WeightSource over a safetensors directory: whole tensors and tensor-parallel row / column
// slices read exactly what the file holds (in fp32, whatever the stored float dtype), and
// the errors name the directory or file and the tensor.
#include <map>
#include <string>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/common/error.h"
#include "engine/model/weight_source.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

using test::error_of;
using test::lacks;
using test::TempDir;

// Values whose every element is distinct, so a slice from the wrong offset cannot match.
at::Tensor ramp(std::vector<int64_t> shape, double start) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return (at::arange(n, at::kFloat) * 0.25 + start).view(shape);
}

TEST(SafetensorsWeights, WholeRowsAndColumns) {
  TempDir dir("weights");
  std::map<std::string, at::Tensor> tensors = {
      {"model.embed_tokens.weight", ramp({6, 4}, -3.0)},
      {"model.layers.0.mlp.down_proj.weight", ramp({4, 8}, 1.0)},
      {"model.norm.weight", ramp({4}, 0.5)},
      {"model.layers.0.self_attn.q_proj.weight", ramp({2, 3, 4}, 7.0)}};
  test::write_model_safetensors(dir.path(), tensors);
  auto w = open_safetensors_weights(dir.path());

  EXPECT_EQ(w->path(), dir.path());
  EXPECT_TRUE(w->has("model.norm.weight"));
  EXPECT_FALSE(w->has("lm_head.weight"));
  EXPECT_EQ(w->shape("model.layers.0.mlp.down_proj.weight"), (std::vector<int64_t>{4, 8}));
  EXPECT_FALSE(w->rope_frequency_factors().has_value());

  for (const auto& [name, ref] : tensors) {
    at::Tensor got = w->load(name, WeightSlice::whole());
    EXPECT_EQ(got.scalar_type(), at::kFloat) << name;
    EXPECT_TRUE(got.is_contiguous()) << name;
    EXPECT_TRUE(at::equal(got, ref)) << name;
  }

  const at::Tensor& emb = tensors["model.embed_tokens.weight"];
  at::Tensor rows = w->load("model.embed_tokens.weight", WeightSlice::along(0, 2, 5));
  EXPECT_TRUE(at::equal(rows, emb.narrow(0, 2, 3)));

  const at::Tensor& down = tensors["model.layers.0.mlp.down_proj.weight"];
  at::Tensor cols = w->load("model.layers.0.mlp.down_proj.weight", WeightSlice::along(1, 4, 8));
  EXPECT_TRUE(cols.is_contiguous());
  EXPECT_EQ(cols.sizes(), at::IntArrayRef({4, 4}));
  EXPECT_TRUE(at::equal(cols, down.narrow(1, 4, 4)));

  // Concatenated halves give back the whole tensor (what TP ranks 0 and 1 would hold).
  at::Tensor left = w->load("model.layers.0.mlp.down_proj.weight", WeightSlice::along(1, 0, 4));
  EXPECT_TRUE(at::equal(at::cat({left, cols}, 1), down));

  const at::Tensor& q = tensors["model.layers.0.self_attn.q_proj.weight"];
  EXPECT_TRUE(at::equal(w->load("model.layers.0.self_attn.q_proj.weight", WeightSlice::along(2, 1, 3)),
                        q.narrow(2, 1, 2)));
  EXPECT_TRUE(at::equal(w->load("model.layers.0.self_attn.q_proj.weight", WeightSlice::along(0, 1, 2)),
                        q.narrow(0, 1, 1)));
}

TEST(SafetensorsWeights, LoadNeverAliasesAndConvertsHalfDtypes) {
  TempDir dir("weights");
  at::Tensor f = ramp({3, 4}, 0.0);
  std::map<std::string, at::Tensor> tensors = {{"a.bf16", f.to(at::kBFloat16)},
                                               {"a.f16", f.to(at::kHalf)},
                                               {"a.f64", f.to(at::kDouble)}};
  test::write_model_safetensors(dir.path(), tensors);
  auto w = open_safetensors_weights(dir.path());
  for (const auto& [name, ref] : tensors) {
    at::Tensor got = w->load(name, WeightSlice::along(1, 1, 3));
    EXPECT_EQ(got.scalar_type(), at::kFloat) << name;
    // The ramp's quarter steps are exact in every one of these dtypes.
    EXPECT_TRUE(at::equal(got, f.narrow(1, 1, 2))) << name;
  }
  // Writing into a loaded tensor must not change what the next load returns.
  at::Tensor first = w->load("a.f64", WeightSlice::whole());
  first.fill_(-1.0);
  EXPECT_TRUE(at::equal(w->load("a.f64", WeightSlice::whole()), f));
}

TEST(SafetensorsWeights, MissingTensorNamesDirectoryAndTensor) {
  TempDir dir("weights");
  test::write_model_safetensors(dir.path(), {{"model.norm.weight", ramp({4}, 0.0)}});
  auto w = open_safetensors_weights(dir.path());
  EXPECT_EQ(lacks(error_of([&] { w->load("lm_head.weight", WeightSlice::whole()); }),
                  {dir.path(), "'lm_head.weight'", "not found"}),
            "");
  EXPECT_EQ(lacks(error_of([&] { w->shape("model.layers.9.mlp.up_proj.weight"); }),
                  {dir.path(), "'model.layers.9.mlp.up_proj.weight'", "not found"}),
            "");
}

TEST(SafetensorsWeights, BadDtypeNamesFileAndTensor) {
  TempDir dir("weights");
  test::write_model_safetensors(
      dir.path(), {{"model.embed_tokens.weight", at::arange(12, at::kInt).view({3, 4})}});
  auto w = open_safetensors_weights(dir.path());
  EXPECT_EQ(lacks(error_of([&] { w->load("model.embed_tokens.weight", WeightSlice::whole()); }),
                  {dir.file("model.safetensors"), "'model.embed_tokens.weight'", "I32",
                   "F32, F16, BF16 or F64"}),
            "");
}

TEST(SafetensorsWeights, BadSliceNamesTensor) {
  TempDir dir("weights");
  test::write_model_safetensors(dir.path(), {{"w", ramp({4, 6}, 0.0)}});
  auto w = open_safetensors_weights(dir.path());
  EXPECT_EQ(lacks(error_of([&] { w->load("w", WeightSlice::along(0, 2, 5)); }),
                  {"'w'", "dim 0", "[2, 5)"}),
            "");
  EXPECT_EQ(lacks(error_of([&] { w->load("w", WeightSlice::along(1, 3, 3)); }), {"'w'", "dim 1"}), "");
  EXPECT_EQ(lacks(error_of([&] { w->load("w", WeightSlice::along(2, 0, 1)); }), {"'w'", "dim 2"}), "");
}

TEST(SafetensorsWeights, MissingModelFileNamesDirectory) {
  TempDir dir("weights");
  EXPECT_EQ(lacks(error_of([&] { open_safetensors_weights(dir.path()); }),
                  {dir.path(), "model.safetensors"}),
            "");
}

}  // namespace
}  // namespace tlm
