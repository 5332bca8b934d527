// written_out_attention (engine/model/attention.h) against at::scaled_dot_product_attention,
// the kernel it stands in for at short sequences: causal, padded and sliding-window masks,
// grouped query heads, one query row over a longer cache; output and the gradients of q, k
// and v. The same sums in another order (and the flash kernel's online softmax): within
// 1e-5 of the largest value, relative.
#include <limits>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/model/attention.h"

namespace tlm {
namespace {

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-30, b.abs().max().item<double>());
}

void check(int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t S, const at::Tensor& mask, const char* what) {
  const int64_t D = 16;
  const double scale = 0.25;
  at::Tensor q = at::randn({B, Hq, T, D}).requires_grad_(true);
  at::Tensor k = at::randn({B, Hkv, S, D}).requires_grad_(true);
  at::Tensor v = at::randn({B, Hkv, S, D}).requires_grad_(true);
  at::Tensor qr = q.detach().clone().requires_grad_(true);
  at::Tensor kr = k.detach().clone().requires_grad_(true);
  at::Tensor vr = v.detach().clone().requires_grad_(true);
  at::Tensor out = written_out_attention(q, k, v, mask, scale);
  at::Tensor ref = mask.defined() ? at::scaled_dot_product_attention(qr, kr, vr, mask, 0.0, false, scale, true)
                                  : at::scaled_dot_product_attention(qr, kr, vr, {}, 0.0, true, scale, true);
  EXPECT_LE(rel_diff(out.detach(), ref.detach()), 1e-5) << what;
  at::Tensor dy = at::randn(ref.sizes());
  out.backward(dy);
  ref.backward(dy);
  EXPECT_LE(rel_diff(q.grad(), qr.grad()), 1e-5) << what << ": dq";
  EXPECT_LE(rel_diff(k.grad(), kr.grad()), 1e-5) << what << ": dk";
  EXPECT_LE(rel_diff(v.grad(), vr.grad()), 1e-5) << what << ": dv";
}

TEST(WrittenOutAttention, EqualsScaledDotProductAttention) {
  at::manual_seed(21);
  check(1, 9, 3, 41, 41, at::Tensor(), "causal, 3 query heads per KV head");
  check(2, 4, 4, 7, 7, at::Tensor(), "causal, one query head per KV head");
  // Right padding: row 1's last 3 keys masked, each padding query still sees itself.
  at::Tensor keys = at::ones({2, 12}, at::kBool);
  keys[1].narrow(0, 9, 3).fill_(false);
  at::Tensor causal = at::ones({12, 12}, at::kBool).tril();
  at::Tensor padded = (keys.view({2, 1, 1, 12}) & causal.view({1, 1, 12, 12})) | at::eye(12, at::kBool).view({1, 1, 12, 12});
  check(2, 6, 2, 12, 12, padded, "padded batch");
  // Sliding window of 4 over 10 positions.
  at::Tensor idx = at::arange(10);
  at::Tensor window = ((idx.view({1, 10}) <= idx.view({10, 1})) & (idx.view({10, 1}) - idx.view({1, 10}) < 4)).view({1, 1, 10, 10});
  check(1, 4, 2, 10, 10, window, "sliding window");
  // Decoding: 3 new queries, then 1, over a cache of 20 slots with 2 empty at the end of row 0.
  at::Tensor cache_keys = at::ones({2, 1, 1, 20}, at::kBool);
  cache_keys[0].narrow(-1, 18, 2).fill_(false);
  check(2, 6, 3, 1, 20, cache_keys, "one query row over a cache");
  at::Tensor q_pos = at::arange(17, 20).view({3, 1}), k_pos = at::arange(20).view({1, 20});
  check(1, 6, 3, 3, 20, (k_pos <= q_pos).view({1, 1, 3, 20}), "three new queries after 17 cached");
}

}  // namespace
}  // namespace tlm
