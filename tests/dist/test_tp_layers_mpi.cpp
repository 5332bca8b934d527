// The tensor-parallel layers on the MPI back end under mpirun (-np 2 and -np 4): every rank
// builds its slice from the same seeded master weights, and the sharded forward, input
// gradients and (after reduce_lora_gradients) LoRA gradients equal the unsharded layer's.
// Tolerance: 1e-5 absolute in fp32 (sums over ranks reduce in a different order).
#include <algorithm>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dist/lora_parallel.h"
#include "dist/mappings.h"
#include "dist/shard.h"
#include "dist/tp_linear.h"
#include "dist/vocab_parallel.h"
#include "dist/vocab_parallel_entropy.h"
#include "tests/dist/mpi_test_main.h"

namespace tlm {
namespace {

constexpr double kTol = 1e-5;

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.detach().to(at::kDouble) - b.detach().to(at::kDouble)).abs().max().item<double>();
}

struct Reference {
  at::Tensor y, x_grad, A_grad, B_grad;
};

// y = x W^T + b + scale * (x A^T) B^T and the gradients of loss_scale * sum(y * R).
Reference unsharded(const at::Tensor& W, const at::Tensor& b, const at::Tensor& A,
                    const at::Tensor& B, double scale, const at::Tensor& x, const at::Tensor& R,
                    double loss_scale = 1.0) {
  at::Tensor xr = x.clone().requires_grad_(true);
  at::Tensor Ar = A.clone().requires_grad_(true), Br = B.clone().requires_grad_(true);
  at::Tensor y = at::linear(xr, W, b) + at::linear(at::linear(xr, Ar), Br) * scale;
  ((y * R).sum() * loss_scale).backward();
  return {y.detach(), xr.grad(), Ar.grad(), Br.grad()};
}

void expect_lora_grads(LoraSlot* slot, const CommunicatorPtr& tp, const Reference& ref,
                       const std::string& what) {
  reduce_lora_gradients({slot}, tp, make_single_process_communicator());
  at::Tensor gA = assemble_full_lora(slot->A.grad(), slot->a_part, tp);
  at::Tensor gB = assemble_full_lora(slot->B.grad(), slot->b_part, tp);
  EXPECT_LE(max_diff(gA, ref.A_grad), kTol) << what << ": lora_A gradient";
  EXPECT_LE(max_diff(gB, ref.B_grad), kTol) << what << ": lora_B gradient";
  // The gradient norm over the full adapter counts every element once.
  const double norm = lora_gradient_norm({slot}, tp);
  const double want = std::sqrt(ref.A_grad.pow(2).sum().item<double>() + ref.B_grad.pow(2).sum().item<double>());
  EXPECT_NEAR(norm, want, 1e-5 * want) << what;
}

void enable_lora_grads(LoraSlot* slot) {
  slot->A.set_requires_grad(true);
  slot->B.set_requires_grad(true);
}

TEST(TpLayersMpi, ColumnParallelLinearWithLora) {
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  const int n = g.tp->size(), r = g.tp->rank();
  at::manual_seed(7);
  const int64_t in = 8, out = 4 * n, rank = 2;
  const double scale = 2.0;
  at::Tensor W = at::randn({out, in}), b = at::randn({out});
  at::Tensor A = at::randn({rank, in}) * 0.3, B = at::randn({out, rank}) * 0.3;
  at::Tensor x = at::randn({3, 5, in}), R = at::randn({3, 5, out});
  const Reference ref = unsharded(W, b, A, B, scale, x, R);

  const ShardRange s = shard_range(out, r, n, "out");
  ColumnParallelLinear layer(g.tp, W.narrow(0, s.begin, s.size()).clone(),
                             b.narrow(0, s.begin, s.size()).clone(), out);
  layer.attach_lora(A, B, scale);
  enable_lora_grads(layer.lora());
  at::Tensor xs = x.clone().requires_grad_(true);
  at::Tensor y = gather_from_tp_region(layer.forward(xs), g.tp);
  EXPECT_LE(max_diff(y, ref.y), kTol);
  (y * R).sum().backward();
  EXPECT_LE(max_diff(xs.grad(), ref.x_grad), kTol);
  expect_lora_grads(layer.lora(), g.tp, ref, "column");
}

TEST(TpLayersMpi, RowParallelLinearWithLora) {
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  const int n = g.tp->size(), r = g.tp->rank();
  at::manual_seed(8);
  const int64_t in = 4 * n, out = 6, rank = 2;
  const double scale = 2.0;
  at::Tensor W = at::randn({out, in}), b = at::randn({out});
  at::Tensor A = at::randn({rank, in}) * 0.3, B = at::randn({out, rank}) * 0.3;
  at::Tensor x = at::randn({3, 5, in}), R = at::randn({3, 5, out});
  const Reference ref = unsharded(W, b, A, B, scale, x, R);

  const ShardRange s = shard_range(in, r, n, "in");
  RowParallelLinear layer(g.tp, W.narrow(1, s.begin, s.size()).clone(), b, in);
  layer.attach_lora(A, B, scale);
  enable_lora_grads(layer.lora());
  at::Tensor xs = x.clone().requires_grad_(true);
  at::Tensor y = layer.forward(scatter_to_tp_region(xs, g.tp));
  EXPECT_LE(max_diff(y, ref.y), kTol);
  (y * R).sum().backward();
  EXPECT_LE(max_diff(xs.grad(), ref.x_grad), kTol);
  expect_lora_grads(layer.lora(), g.tp, ref, "row");
}

// Fewer KV heads than ranks: each head lives on tp/heads ranks, each computing with it for
// its own query heads. Every rank's loss term counts its copy, so the total loss counts each
// head `replicas` times, and the replicated B part must sum the copies' gradients.
TEST(TpLayersMpi, ColumnParallelLinearWithReplicatedHeads) {
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  const int n = g.tp->size(), r = g.tp->rank();
  const int64_t heads = n / 2, head_dim = 3, in = 8, out = heads * head_dim, rank = 2;
  const int replicas = head_replicas(heads, n);
  ASSERT_EQ(replicas, 2);
  const double scale = 2.0;
  at::manual_seed(9);
  at::Tensor W = at::randn({out, in}), b = at::randn({out});
  at::Tensor A = at::randn({rank, in}) * 0.3, B = at::randn({out, rank}) * 0.3;
  at::Tensor x = at::randn({3, 5, in}), R = at::randn({3, 5, out});
  const Reference ref = unsharded(W, b, A, B, scale, x, R, replicas);

  const ShardRange h = head_shard(heads, r, n, "kv heads");
  const ShardRange s{h.begin * head_dim, h.end * head_dim};
  ColumnParallelLinear layer(g.tp, W.narrow(0, s.begin, s.size()).clone(),
                             b.narrow(0, s.begin, s.size()).clone(), out, s, replicas);
  layer.attach_lora(A, B, scale);
  enable_lora_grads(layer.lora());
  EXPECT_EQ(layer.lora()->b_part.owner, r % replicas == 0);
  at::Tensor xs = x.clone().requires_grad_(true);
  at::Tensor y_local = layer.forward(xs);
  EXPECT_LE(max_diff(y_local, ref.y.narrow(-1, s.begin, s.size())), kTol);
  (y_local * R.narrow(-1, s.begin, s.size())).sum().backward();
  EXPECT_LE(max_diff(xs.grad(), ref.x_grad), kTol);
  expect_lora_grads(layer.lora(), g.tp, ref, "replicated heads");
}

TEST(TpLayersMpi, VocabParallelEmbeddingLogitsAndLogLikelihood) {
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  const int n = g.tp->size(), r = g.tp->rank();
  at::manual_seed(10);
  const int64_t V = 6 * n, H = 5, N = 13;
  at::Tensor E = at::randn({V, H});
  at::Tensor ids = at::randint(V, {3, 4}, at::kLong);
  const ShardRange s = shard_range(V, r, n, "vocab");
  VocabParallelEmbedding embed(g.tp, E.narrow(0, s.begin, s.size()).clone(), V);
  EXPECT_LE(max_diff(embed.forward(ids), at::embedding(E, ids)), kTol);

  at::Tensor hidden = at::randn({N, H});
  EXPECT_LE(max_diff(vocab_parallel_logits(hidden, embed.weight(), g.tp), at::linear(hidden, E)), kTol);

  at::Tensor targets = at::randint(V, {N}, at::kLong);
  targets[3] = -100;
  at::Tensor hr = hidden.clone().requires_grad_(true);
  at::Tensor logp_all = at::log_softmax(at::linear(hr, E), -1);
  at::Tensor valid = targets != -100;
  at::Tensor ref = logp_all.gather(1, targets.clamp_min(0).unsqueeze(1)).squeeze(1) * valid.to(at::kFloat);
  ref.sum().backward();

  at::Tensor hs = hidden.clone().requires_grad_(true);
  at::Tensor logp = vocab_parallel_token_log_likelihood(hs, embed.weight(),
                                                        targets, g.tp, /*chunk_rows=*/4);
  EXPECT_LE(max_diff(logp, ref), kTol);
  logp.sum().backward();
  EXPECT_LE(max_diff(hs.grad(), hr.grad()), kTol);
}

TEST(TpLayersMpi, VocabParallelEntropyAndMeanProbs) {
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  const int n = g.tp->size(), r = g.tp->rank();
  at::manual_seed(11);
  const int64_t V = 7 * n, H = 6, N = 11;
  const at::Tensor W = at::randn({V, H}), hidden = at::randn({N, H}) * 2.0, g_out = at::randn({N});
  const ShardRange s = shard_range(V, r, n, "vocab");
  const at::Tensor shard = W.narrow(0, s.begin, s.size()).clone();

  at::Tensor hr = hidden.clone().requires_grad_(true);
  at::Tensor z = at::linear(hr, W);
  at::Tensor ref = -(at::softmax(z, -1) * at::log_softmax(z, -1)).sum(-1);
  (ref * g_out).sum().backward();
  at::Tensor hs = hidden.clone().requires_grad_(true);
  at::Tensor ours = vocab_parallel_entropy(hs, shard, g.tp, /*chunk_rows=*/4);
  EXPECT_LE(max_diff(ours, ref), kTol);
  (ours * g_out).sum().backward();
  EXPECT_LE(max_diff(hs.grad(), hr.grad()), kTol * std::max(1.0, hr.grad().abs().max().item<double>()));

  const at::Tensor group = at::tensor({0, 1, 1, -1, 0, 2, 2, 2, 1, -1, 0}, at::kLong);
  at::Tensor mine = vocab_parallel_mean_probs(hidden, shard, group, 3, g.tp, 4);  // [3, V/tp]
  at::Tensor full = g.tp->all_gather(mine.contiguous(), 1);                      // [3, V]
  const at::Tensor p = at::softmax(at::linear(hidden, W), -1);
  for (int64_t gi = 0; gi < 3; ++gi)
    EXPECT_LE(max_diff(full[gi], p.index_select(0, (group == gi).nonzero().squeeze(1)).mean(0)), 1e-6) << gi;
}

}  // namespace
}  // namespace tlm
