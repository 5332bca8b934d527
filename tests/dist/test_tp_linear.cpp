// ColumnParallelLinear and RowParallelLinear on the single-process communicator: the base
// layer is at::linear (+ bias) forward and backward, the LoRA branch is scale * (x A^T) B^T,
// merging folds it into the weight, and bad shapes throw tlm::Error.
//
// Tolerances: the layer and the reference run the same ATen kernels, so plain forward and
// backward agree to 1e-6 (absolute). Merged vs unmerged output differs only by float32
// rounding of W + scale * B A: 1e-5. Unmerge restores W up to the rounding of adding and
// subtracting the delta: 1e-6.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dist/communicator.h"
#include "dist/tp_linear.h"
#include "engine/common/error.h"
#include "tests/dist/dist_testing.h"

namespace tlm {
namespace {

using test::error_of;
using test::max_diff;

constexpr double kAtol = 1e-6;

TEST(TpLinear, ForwardEqualsLinear) {
  at::manual_seed(1);
  at::Tensor w = at::randn({6, 4}), b = at::randn({6});
  at::Tensor x = at::randn({2, 3, 4});
  CommunicatorPtr comm = make_single_process_communicator();
  ColumnParallelLinear col(comm, w, b, 6);
  RowParallelLinear row(comm, w, b, 4);
  ColumnParallelLinear col_nb(comm, w, std::nullopt, 6);
  RowParallelLinear row_nb(comm, w, std::nullopt, 4);
  const at::Tensor ref = at::linear(x, w, b);
  const at::Tensor ref_nb = at::linear(x, w);
  EXPECT_LE(max_diff(col.forward(x), ref), kAtol);
  EXPECT_LE(max_diff(row.forward(x), ref), kAtol);
  EXPECT_LE(max_diff(col_nb.forward(x), ref_nb), kAtol);
  EXPECT_LE(max_diff(row_nb.forward(x), ref_nb), kAtol);
  EXPECT_EQ(col.forward(x).sizes(), at::IntArrayRef({2, 3, 6}));

  EXPECT_EQ(col.in_features(), 4);
  EXPECT_EQ(col.out_features(), 6);
  EXPECT_EQ(col.out_shard().begin, 0);
  EXPECT_EQ(col.out_shard().end, 6);
  EXPECT_EQ(row.in_features(), 4);
  EXPECT_EQ(row.out_features(), 6);
  EXPECT_EQ(row.in_shard().end, 4);
  EXPECT_EQ(col.lora(), nullptr);
  EXPECT_EQ(row.lora(), nullptr);
}

// Gradients w.r.t. x, W and b through the layer equal those through at::linear.
template <typename Layer>
void check_backward(const char* what, int64_t features_arg) {
  at::manual_seed(2);
  at::Tensor w0 = at::randn({5, 3}), b0 = at::randn({5}), x0 = at::randn({4, 3});
  at::Tensor g = at::randn({4, 5});

  at::Tensor w = w0.clone().set_requires_grad(true);
  at::Tensor b = b0.clone().set_requires_grad(true);
  at::Tensor x = x0.clone().set_requires_grad(true);
  Layer layer(make_single_process_communicator(), w, b, features_arg);
  (layer.forward(x) * g).sum().backward();

  at::Tensor wr = w0.clone().set_requires_grad(true);
  at::Tensor br = b0.clone().set_requires_grad(true);
  at::Tensor xr = x0.clone().set_requires_grad(true);
  (at::linear(xr, wr, br) * g).sum().backward();

  EXPECT_LE(max_diff(x.grad(), xr.grad()), kAtol) << what;
  EXPECT_LE(max_diff(w.grad(), wr.grad()), kAtol) << what;
  EXPECT_LE(max_diff(b.grad(), br.grad()), kAtol) << what;
}

TEST(TpLinear, BackwardEqualsLinear) {
  check_backward<ColumnParallelLinear>("column", 5);
  check_backward<RowParallelLinear>("row", 3);
}

// x A^T B^T * scale, written out independently of the layer.
at::Tensor lora_reference(const at::Tensor& x, const at::Tensor& A, const at::Tensor& B, double scale) {
  return at::matmul(at::matmul(x, A.t()), B.t()) * scale;
}

template <typename Layer>
void check_lora(const char* what, bool row, bool packed = false) {
  at::manual_seed(3);
  const int64_t in = 8, out = 6, r = 2;
  const double scale = 16.0 / 2.0;
  at::Tensor w = at::randn({out, in}), b = at::randn({out});
  at::Tensor A = at::randn({r, in}) * 0.3, B = at::randn({out, r}) * 0.3;
  at::Tensor x0 = at::randn({3, 5, in});
  Layer layer(make_single_process_communicator(), w.clone(), b, row ? in : out);
  layer.attach_lora(A, B, scale);
  if (packed) layer.pack_weight(/*backward=*/true);
  LoraSlot* slot = layer.lora();
  ASSERT_NE(slot, nullptr) << what;
  EXPECT_TRUE(at::equal(slot->A, A)) << what;
  EXPECT_TRUE(at::equal(slot->B, B)) << what;
  EXPECT_DOUBLE_EQ(slot->scale, scale) << what;
  EXPECT_TRUE(slot->enabled) << what;
  EXPECT_FALSE(slot->merged) << what;
  // Which LoRA tensor TP would split: B with the column layer's rows, A with the row layer's
  // columns.
  EXPECT_EQ(slot->a_part.dim, row ? 1 : -1) << what;
  EXPECT_EQ(slot->b_part.dim, row ? -1 : 0) << what;

  const at::Tensor base = at::linear(x0, w, b);
  const at::Tensor expected = base + lora_reference(x0, A, B, scale);
  const at::Tensor unmerged = layer.forward(x0);
  EXPECT_LE(max_diff(unmerged, expected), 1e-5) << what;
  EXPECT_GT(max_diff(unmerged, base), 1e-2) << what << ": the branch must change the output";

  // Gradients reach A and B (and x) as through the reference expression.
  slot->A.set_requires_grad(true);
  slot->B.set_requires_grad(true);
  at::Tensor x = x0.clone().set_requires_grad(true);
  at::Tensor g = at::randn(expected.sizes());
  (layer.forward(x) * g).sum().backward();
  // The layer keeps A and B themselves (no copy): detach before cloning the references.
  at::Tensor Ar = A.detach().clone().set_requires_grad(true);
  at::Tensor Br = B.detach().clone().set_requires_grad(true);
  at::Tensor xr = x0.clone().set_requires_grad(true);
  ((at::linear(xr, w, b) + lora_reference(xr, Ar, Br, scale)) * g).sum().backward();
  EXPECT_LE(max_diff(slot->A.grad(), Ar.grad()), 1e-4) << what;
  EXPECT_LE(max_diff(slot->B.grad(), Br.grad()), 1e-4) << what;
  EXPECT_LE(max_diff(x.grad(), xr.grad()), 1e-5) << what;
  slot->A.mutable_grad() = at::Tensor();
  slot->B.mutable_grad() = at::Tensor();

  // Disabled: the base output, exactly (packed: to the rounding of another summation order).
  slot->enabled = false;
  if (packed) EXPECT_LE(max_diff(layer.forward(x0), at::linear(x0, w, b)), 1e-5) << what;
  else EXPECT_TRUE(at::equal(layer.forward(x0), at::linear(x0, w, b))) << what;
  slot->enabled = true;

  // Merge: same output, branch skipped; merging twice is a no-op; unmerge restores W.
  layer.merge_lora();
  EXPECT_TRUE(slot->merged) << what;
  EXPECT_GT(max_diff(layer.weight(), w), 1e-3) << what;
  EXPECT_LE(max_diff(layer.weight(), w + at::matmul(B.detach(), A.detach()) * scale), 1e-5) << what;
  const at::Tensor merged_out = layer.forward(x0);
  EXPECT_LE(max_diff(merged_out, unmerged), 1e-5) << what;
  const at::Tensor weight_after_merge = layer.weight().clone();
  layer.merge_lora();
  EXPECT_TRUE(at::equal(layer.weight(), weight_after_merge)) << what;
  layer.unmerge_lora();
  EXPECT_FALSE(slot->merged) << what;
  EXPECT_LE(max_diff(layer.weight(), w), 1e-6) << what;
  layer.unmerge_lora();  // no-op when not merged
  EXPECT_LE(max_diff(layer.weight(), w), 1e-6) << what;
  EXPECT_LE(max_diff(layer.forward(x0), unmerged), 1e-5) << what;
}

TEST(TpLinear, ColumnLora) { check_lora<ColumnParallelLinear>("column", false); }
TEST(TpLinear, RowLora) { check_lora<RowParallelLinear>("row", true); }
// With oneDNN's packed weight (forward and input gradient): the same checks, and merging must
// repack (a stale packed copy would give the base output once the branch is skipped).
TEST(TpLinear, ColumnLoraPackedWeight) { check_lora<ColumnParallelLinear>("column packed", false, true); }
TEST(TpLinear, RowLoraPackedWeight) { check_lora<RowParallelLinear>("row packed", true, true); }

TEST(TpLinear, LoraBranchRunsInTheAdapterDtype) {
  // bf16 base, fp32 adapter, PEFT's rule: the branch is computed in fp32 on the input cast to
  // fp32, added to the bf16 base output in fp32 (type promotion), and the sum rounded once.
  at::manual_seed(4);
  at::Tensor w = at::randn({6, 8}).to(at::kBFloat16);
  at::Tensor x = at::randn({4, 8}).to(at::kBFloat16);
  at::Tensor A = at::randn({2, 8}), B = at::randn({6, 2});
  ColumnParallelLinear col(make_single_process_communicator(), w, std::nullopt, 6);
  col.attach_lora(A, B, 0.5);
  at::Tensor y = col.forward(x);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  const at::Tensor branch = at::linear(at::linear(x.to(at::kFloat), A), B) * 0.5;  // fp32
  at::Tensor ref = (at::linear(x, w) + branch).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(y, ref)) << max_diff(y, ref);
  // Rounding the branch to bf16 before the add (two roundings) gives other values here.
  const at::Tensor twice = at::linear(x, w) + branch.to(at::kBFloat16);
  EXPECT_FALSE(at::equal(y, twice));
}

TEST(TpLinear, LoraDropoutOnlyWhileTraining) {
  at::manual_seed(5);
  at::Tensor w = at::randn({6, 8}), x = at::randn({16, 8});
  at::Tensor A = at::randn({2, 8}), B = at::randn({6, 2});
  ColumnParallelLinear col(make_single_process_communicator(), w, std::nullopt, 6);
  col.attach_lora(A, B, 1.0);
  const at::Tensor clean = col.forward(x);
  col.lora()->dropout = 0.5;
  EXPECT_TRUE(at::equal(col.forward(x), clean)) << "dropout must be off outside training";
  col.lora()->training = true;
  EXPECT_GT(max_diff(col.forward(x), clean), 1e-3) << "dropout must act while training";
  // The base path never sees dropout: with B = 0 training output is the base output.
  col.lora()->B.zero_();
  EXPECT_TRUE(at::allclose(col.forward(x), at::linear(x, w), 0.0, kAtol));
}

TEST(TpLinear, ShapeErrorsThrow) {
  CommunicatorPtr comm = make_single_process_communicator();
  at::Tensor w = at::randn({6, 4});
  std::string m = error_of([&] { ColumnParallelLinear(comm, w, std::nullopt, 5); });
  EXPECT_NE(m.find("ColumnParallelLinear"), std::string::npos) << m;
  EXPECT_NE(m.find("[6, 4]"), std::string::npos) << m;
  m = error_of([&] { RowParallelLinear(comm, w, std::nullopt, 6); });
  EXPECT_NE(m.find("RowParallelLinear"), std::string::npos) << m;
  EXPECT_NE(m.find("[6, 4]"), std::string::npos) << m;
  m = error_of([&] { ColumnParallelLinear(comm, at::randn({6}), std::nullopt, 6); });
  EXPECT_FALSE(m.empty()) << "a 1-D weight must be refused";

  ColumnParallelLinear col(comm, w, std::nullopt, 6);
  RowParallelLinear row(comm, w, std::nullopt, 4);
  // A/B not a rank-r pair, or not fitting the [6, 4] weight.
  m = error_of([&] { col.attach_lora(at::randn({2, 4}), at::randn({6, 3}), 1.0); });
  EXPECT_NE(m.find("rank-r pair"), std::string::npos) << m;
  m = error_of([&] { col.attach_lora(at::randn({2, 5}), at::randn({6, 2}), 1.0); });
  EXPECT_NE(m.find("[6, 4]"), std::string::npos) << m;
  m = error_of([&] { row.attach_lora(at::randn({2, 4}), at::randn({7, 2}), 1.0); });
  EXPECT_NE(m.find("RowParallelLinear"), std::string::npos) << m;
  m = error_of([&] { row.attach_lora(at::randn({2, 4, 1}), at::randn({6, 2}), 1.0); });
  EXPECT_FALSE(m.empty());
  EXPECT_EQ(col.lora(), nullptr) << "a refused adapter must not be attached";

  // Merging needs an adapter.
  EXPECT_NE(error_of([&] { col.merge_lora(); }).find("no adapter"), std::string::npos);
  EXPECT_NE(error_of([&] { row.unmerge_lora(); }).find("no adapter"), std::string::npos);
}

// q/k/v (or gate/up) as one product: each member's output as its own forward gives, LoRA
// branch included, input gradients too; merging a member's LoRA rebuilds the fused copy.
TEST(TpLinear, FusedColumnsEqualTheirMembers) {
  if (!can_pack(at::zeros({1, 1}))) GTEST_SKIP() << "LibTorch was built without oneDNN";
  at::manual_seed(5);
  CommunicatorPtr comm = make_single_process_communicator();
  const int64_t in = 16;
  std::vector<std::unique_ptr<ColumnParallelLinear>> layers;
  for (int64_t out : {16, 8, 8})
    layers.push_back(std::make_unique<ColumnParallelLinear>(comm, at::randn({out, in}), at::randn({out}), out));
  layers[0]->attach_lora(at::randn({2, in}) * 0.3, at::randn({16, 2}) * 0.3, 4.0);
  layers[2]->attach_lora(at::randn({2, in}) * 0.3, at::randn({8, 2}) * 0.3, 4.0);
  at::Tensor x0 = at::randn({2, 3, in});
  std::vector<at::Tensor> alone;
  for (const auto& l : layers) alone.push_back(l->forward(x0));
  FusedColumnParallelLinear fused(comm, {layers[0].get(), layers[1].get(), layers[2].get()}, /*backward=*/true);
  std::vector<at::Tensor> together = fused.forward(x0);
  ASSERT_EQ(together.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_LE(max_diff(together[i], alone[i]), 1e-5) << "member " << i;

  // Input gradient through the fused product equals the sum over the members'.
  at::Tensor x = x0.clone().set_requires_grad(true);
  at::Tensor xr = x0.clone().set_requires_grad(true);
  std::vector<at::Tensor> g;
  for (const auto& a : alone) g.push_back(at::randn(a.sizes()));
  at::Tensor loss = at::zeros({});
  at::Tensor loss_ref = at::zeros({});
  std::vector<at::Tensor> y = fused.forward(x);
  for (size_t i = 0; i < 3; ++i) {
    loss = loss + (y[i] * g[i]).sum();
    loss_ref = loss_ref + (layers[i]->forward(xr) * g[i]).sum();
  }
  loss.backward();
  loss_ref.backward();
  EXPECT_LE(max_diff(x.grad(), xr.grad()), 1e-5);

  // Merge q's adapter: the fused copy follows (a stale one would drop q's branch).
  layers[0]->merge_lora();
  EXPECT_LE(max_diff(fused.forward(x0)[0], alone[0]), 1e-5);
  layers[0]->unmerge_lora();
  EXPECT_LE(max_diff(fused.forward(x0)[0], alone[0]), 1e-5);
}

}  // namespace
}  // namespace tlm
