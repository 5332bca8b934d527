// Tensor-parallel linear layers (Megatron style), the one choke point every projection of
// the model goes through, LoRA included.
//
// ColumnParallelLinear: y = x W^T + b with W [out, in] split along out (dim 0): rank r holds
//   W[r*out/tp : (r+1)*out/tp, :]; the input is replicated, the output stays split.
//   LoRA: A [rank, in] replicated, B [out, rank] split like W (dim 0).
// RowParallelLinear: y = x W^T + b with W [out, in] split along in (dim 1); the input arrives
//   split, partial outputs (base + LoRA) are summed by the one all-reduce, then b is added.
//   LoRA: A [rank, in] split like W (dim 1), B [out, rank] replicated.
// The LoRA branch is scale * (x A^T) B^T computed in fp32 (PEFT casts the input to the
// adapter's dtype) and added to the base output in fp32, the sum rounded once to the base
// dtype (PEFT's result + lora(x) with type promotion, then .to(result dtype)). Replicated LoRA tensors receive only a partial
// gradient on each rank: the learner sums them over the TP group after backward.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dist/communicator.h"
#include "dist/shard.h"
#include "engine/kernels/linear_weight.h"

namespace tlm {

// Which part of a full LoRA tensor this TP rank holds, and how the parts relate.
struct LoraPart {
  int dim = -1;                 // dim split over TP; -1: the whole tensor
  ShardRange range;             // along `dim` (unused when whole)
  std::vector<int64_t> full_shape;
  // Other TP ranks hold the same elements (a replicated tensor, or B of a replicated KV head):
  // each rank's gradient is then a partial sum that must be summed over the group.
  bool shared = false;
  // This rank speaks for its elements when the full tensor is assembled (one owner each).
  bool owner = true;
  at::Tensor slice_of(const at::Tensor& full) const;  // this rank's part of a full tensor
};

// LoRA tensors as one rank holds them (already sliced), and how to rebuild the full ones.
struct LoraSlot {
  at::Tensor A;             // local part of A [rank, in]; requires_grad when training
  at::Tensor B;             // local part of B [out, rank]
  double scale = 1.0;       // alpha / rank
  bool enabled = true;      // false: the layer computes the base output only
  bool merged = false;      // true: delta folded into the base weight, branch skipped
  double dropout = 0.0;     // on the branch input, only while `training`
  bool training = false;
  LoraPart a_part;
  LoraPart b_part;
  // Per-row adapters for one batched forward of rows that belong to different adapters (a
  // server decoding several sessions in one batch): when defined, row i of the input uses
  // rows_A[i] [r, in_local] and rows_B[i] [out_local, r] instead of A and B (zeros: no adapter).
  at::Tensor rows_A;        // [batch, r, in]
  at::Tensor rows_B;        // [batch, out, r]
};

class ColumnParallelLinear {
 public:
  // `weight` [out/tp, in] and `bias` [out/tp] are this rank's slices.
  ColumnParallelLinear(CommunicatorPtr tp, at::Tensor weight, std::optional<at::Tensor> bias,
                       int64_t out_features);
  // An explicit output range held by `replicas` ranks each (replicated KV heads): rank r's
  // copy is the (r % replicas)-th; the first copy owns the range.
  ColumnParallelLinear(CommunicatorPtr tp, at::Tensor weight, std::optional<at::Tensor> bias,
                       int64_t out_features, ShardRange out_shard, int replicas);
  at::Tensor forward(const at::Tensor& x) const;  // [..., in] -> [..., out/tp]

  // Takes full-size A [r, in] and B [out, r] (same on every rank) and keeps this rank's part.
  void attach_lora(const at::Tensor& A_full, const at::Tensor& B_full, double scale);
  LoraSlot* lora() { return lora_ ? &*lora_ : nullptr; }
  const LoraSlot* lora() const { return lora_ ? &*lora_ : nullptr; }
  void merge_lora();
  void unmerge_lora();

  int64_t in_features() const { return weight_.in_features(); }
  int64_t out_features() const { return out_features_; }
  ShardRange out_shard() const { return out_shard_; }
  const at::Tensor& weight() const { return weight_.plain; }
  int64_t weight_bytes() const;  // this rank's weight and bias slices (packed copies too)
  // oneDNN's prepacked copies of the weight (engine/kernels/linear_weight.h); `backward`
  // packs the transposed one for input gradients too. Merging LoRA repacks.
  void pack_weight(bool backward) { pack(weight_, backward); }
  // The weight's GGUF blocks too (block_weight.h), for products of a few rows. Merging LoRA
  // drops them (the merged weight is no longer those numbers).
  void set_blocks(BlockWeight blocks) { weight_.blocks = std::move(blocks); }
  const BlockWeight& blocks() const { return weight_.blocks; }
  // Drops the packed copies and the blocks (a fused group holds them instead).
  void unpack_weight() {
    weight_.packed = weight_.packed_t = at::Tensor();
    weight_.blocks = BlockWeight{};
  }
  // Counts changes of the weight in place (merge / unmerge), so a fused copy knows it is stale.
  int64_t weight_version() const { return weight_version_; }
  const std::optional<at::Tensor>& bias() const { return bias_; }
  // `base` (this layer's base output for the input x_in, already in the TP region) plus the
  // LoRA branch when active: what forward() returns after its base product.
  at::Tensor with_lora(const at::Tensor& base, const at::Tensor& x_in) const;

 private:
  CommunicatorPtr tp_;
  LinearWeight weight_;
  std::optional<at::Tensor> bias_;
  int64_t out_features_;
  ShardRange out_shard_;
  int replicas_ = 1;
  std::optional<LoraSlot> lora_;
  int64_t weight_version_ = 0;
};

// Column-parallel layers that read the same input (q, k, v; gate, up), their base products
// computed as one GEMM over the concatenated local weights, each member's LoRA branch added
// to its slice: fewer, larger products (at 8 rows, one GEMM for q/k/v instead of three takes
// 2/3 of the time). The members keep their own weights, which LoRA, merging and export see;
// the fused copy (oneDNN-packed, the members' packed copies dropped) is rebuilt when a
// member's weight changes. Members must agree on having a bias.
class FusedColumnParallelLinear {
 public:
  FusedColumnParallelLinear(CommunicatorPtr tp, std::vector<ColumnParallelLinear*> members, bool backward);
  // [..., in] -> each member's output [..., out_m/tp], as the members' forward() would give.
  std::vector<at::Tensor> forward(const at::Tensor& x) const;
  int64_t packed_bytes() const { return weight_.packed_bytes(); }

 private:
  void rebuild() const;

  CommunicatorPtr tp_;
  std::vector<ColumnParallelLinear*> members_;
  std::vector<int64_t> sizes_;  // local output features of each member
  bool backward_;
  mutable LinearWeight weight_;
  mutable std::optional<at::Tensor> bias_;
  mutable std::vector<int64_t> versions_;
};

class RowParallelLinear {
 public:
  // `weight` [out, in/tp] is this rank's slice; `bias` [out] is replicated.
  RowParallelLinear(CommunicatorPtr tp, at::Tensor weight, std::optional<at::Tensor> bias,
                    int64_t in_features);
  at::Tensor forward(const at::Tensor& x_local) const;  // [..., in/tp] -> [..., out]

  void attach_lora(const at::Tensor& A_full, const at::Tensor& B_full, double scale);
  LoraSlot* lora() { return lora_ ? &*lora_ : nullptr; }
  const LoraSlot* lora() const { return lora_ ? &*lora_ : nullptr; }
  void merge_lora();
  void unmerge_lora();

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return weight_.out_features(); }
  ShardRange in_shard() const { return in_shard_; }
  const at::Tensor& weight() const { return weight_.plain; }
  int64_t weight_bytes() const;  // this rank's weight slice and the bias (packed copies too)
  void pack_weight(bool backward) { pack(weight_, backward); }  // as ColumnParallelLinear's
  void set_blocks(BlockWeight blocks) { weight_.blocks = std::move(blocks); }  // as ColumnParallelLinear's

 private:
  CommunicatorPtr tp_;
  LinearWeight weight_;
  std::optional<at::Tensor> bias_;
  int64_t in_features_;
  ShardRange in_shard_;
  std::optional<LoraSlot> lora_;
};

}  // namespace tlm
