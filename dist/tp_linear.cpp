#include "dist/tp_linear.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dist/mappings.h"
#include "engine/common/error.h"

namespace tlm {
namespace {

// base + scale * (x A^T) B^T, PEFT's mixed-precision rule: the branch runs in the adapter's
// dtype (fp32) on the input cast to it, the sum is taken in fp32 (type promotion) and rounded
// once to the base output's dtype. For an fp32 base every cast is the identity.
// With per-row adapters (rows_A defined) the two products are batched over rows: x [b, T, in].
at::Tensor add_lora_branch(const at::Tensor& base, const at::Tensor& x, const LoraSlot& lora) {
  at::Tensor in = x.to(lora.A.scalar_type());
  if (lora.training && lora.dropout > 0.0) in = at::dropout(in, lora.dropout, /*train=*/true);
  at::Tensor branch;
  if (lora.rows_A.defined()) {
    TLM_CHECK(in.dim() == 3 && in.size(0) == lora.rows_A.size(0), "per-row LoRA: input ", in.sizes(), " for ",
              lora.rows_A.size(0), " rows of adapters");
    at::Tensor h = at::bmm(in, lora.rows_A.transpose(1, 2));           // [b, T, r]
    branch = at::bmm(h, lora.rows_B.transpose(1, 2)) * lora.scale;     // [b, T, out_local]
  } else {
    at::Tensor h = at::linear(in, lora.A);  // [..., r]
    if (base.scalar_type() == h.scalar_type()) {
      // base + scale * h B^T as one product (the sum and the scaling inside it): two
      // element-wise passes over the output fewer, forward and backward.
      at::Tensor y = at::addmm(base.reshape({-1, base.size(-1)}), h.reshape({-1, h.size(-1)}), lora.B.t(),
                               /*beta=*/1.0, /*alpha=*/lora.scale);
      return y.view(base.sizes());
    }
    branch = at::linear(h, lora.B) * lora.scale;  // [..., out_local] fp32
  }
  return (base + branch).to(base.scalar_type());
}

bool lora_active(const std::optional<LoraSlot>& lora) {
  return lora && lora->enabled && !lora->merged;
}

void check_lora_shapes(const at::Tensor& A, const at::Tensor& B, int64_t in, int64_t out,
                       const char* layer) {
  TLM_CHECK(A.dim() == 2 && B.dim() == 2 && A.size(0) == B.size(1), layer,
            ": LoRA A ", A.sizes(), " and B ", B.sizes(), " do not form a rank-r pair");
  TLM_CHECK(A.size(1) == in && B.size(0) == out, layer, ": LoRA A ", A.sizes(), " / B ",
            B.sizes(), " do not fit a [", out, ", ", in, "] weight");
}

// Folds the adapter into the base weight (W += scale * B A) or takes it out again, in the
// base weight's dtype. Both layers hold their slices so that B A is exactly this rank's
// slice of the full delta.
void set_merged(LinearWeight& weight, std::optional<LoraSlot>& lora, bool merged) {
  TLM_CHECK(lora.has_value(), merged ? "merge_lora" : "unmerge_lora", ": no adapter attached");
  if (lora->merged == merged) return;
  at::NoGradGuard no_grad;
  const double sign = merged ? 1.0 : -1.0;
  at::Tensor delta = at::matmul(lora->B.detach(), lora->A.detach()) * (sign * lora->scale);
  weight.plain.add_(delta.to(weight.plain.scalar_type()));
  weight.blocks = BlockWeight{};  // no longer the file's numbers; products read the fp32 weight
  repack(weight);
  lora->merged = merged;
}

}  // namespace

at::Tensor LoraPart::slice_of(const at::Tensor& full) const {
  if (dim < 0) return full;
  return full.narrow(dim, range.begin, range.size());
}

ColumnParallelLinear::ColumnParallelLinear(CommunicatorPtr tp, at::Tensor weight,
                                           std::optional<at::Tensor> bias,
                                           int64_t out_features)
    : ColumnParallelLinear(tp, std::move(weight), std::move(bias), out_features,
                           shard_range(out_features, tp->rank(), tp->size(), "output features"),
                           1) {}

ColumnParallelLinear::ColumnParallelLinear(CommunicatorPtr tp, at::Tensor weight,
                                           std::optional<at::Tensor> bias, int64_t out_features,
                                           ShardRange out_shard, int replicas)
    : tp_(std::move(tp)),
      weight_(std::move(weight)),
      bias_(std::move(bias)),
      out_features_(out_features),
      out_shard_(out_shard),
      replicas_(replicas) {
  TLM_CHECK(weight_.plain.dim() == 2 && weight_.plain.size(0) == out_shard_.size(),
            "ColumnParallelLinear: local weight ", weight_.plain.sizes(), " is not [",
            out_shard_.size(), ", in]");
  TLM_CHECK(replicas_ >= 1 && tp_->size() % replicas_ == 0, "ColumnParallelLinear: ", replicas_,
            " replicas do not divide the tensor-parallel size ", tp_->size());
}

at::Tensor ColumnParallelLinear::forward(const at::Tensor& x) const {
  at::Tensor x_in = copy_to_tp_region(x, tp_);
  return with_lora(linear(x_in, weight_, bias_), x_in);
}

at::Tensor ColumnParallelLinear::with_lora(const at::Tensor& base, const at::Tensor& x_in) const {
  return lora_active(lora_) ? add_lora_branch(base, x_in, *lora_) : base;
}

FusedColumnParallelLinear::FusedColumnParallelLinear(CommunicatorPtr tp, std::vector<ColumnParallelLinear*> members,
                                                     bool backward)
    : tp_(std::move(tp)), members_(std::move(members)), backward_(backward) {
  TLM_CHECK(!members_.empty(), "FusedColumnParallelLinear: no members");
  for (const ColumnParallelLinear* m : members_) {
    TLM_CHECK(m->in_features() == members_.front()->in_features() &&
                  m->bias().has_value() == members_.front()->bias().has_value(),
              "FusedColumnParallelLinear: members must share the input size and agree on a bias");
    sizes_.push_back(m->out_shard().size());
  }
  rebuild();
}

void FusedColumnParallelLinear::rebuild() const {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> weights, biases;
  std::vector<const BlockWeight*> blocks;
  for (ColumnParallelLinear* m : members_)
    if (m->blocks().defined()) blocks.push_back(&m->blocks());
  // Every member in blocks (none merged since they were set): the group keeps them as one.
  BlockWeight fused_blocks = blocks.size() == members_.size() ? concat_block_rows(blocks) : BlockWeight{};
  versions_.clear();
  for (ColumnParallelLinear* m : members_) {
    weights.push_back(m->weight());
    if (m->bias()) biases.push_back(*m->bias());
    versions_.push_back(m->weight_version());
    m->unpack_weight();
  }
  weight_ = LinearWeight(at::cat(weights, 0));
  pack(weight_, backward_);
  weight_.plain = at::Tensor();  // the members hold the weights; only the packed copies are needed
  weight_.blocks = std::move(fused_blocks);
  bias_ = biases.empty() ? std::nullopt : std::optional<at::Tensor>(at::cat(biases, 0));
}

std::vector<at::Tensor> FusedColumnParallelLinear::forward(const at::Tensor& x) const {
  for (size_t i = 0; i < members_.size(); ++i)
    if (members_[i]->weight_version() != versions_[i]) rebuild();
  at::Tensor x_in = copy_to_tp_region(x, tp_);
  std::vector<at::Tensor> base = linear(x_in, weight_, bias_).split_with_sizes(sizes_, -1);
  for (size_t i = 0; i < members_.size(); ++i) base[i] = members_[i]->with_lora(base[i], x_in);
  return base;
}

void ColumnParallelLinear::attach_lora(const at::Tensor& A_full, const at::Tensor& B_full,
                                       double scale) {
  check_lora_shapes(A_full, B_full, in_features(), out_features_, "ColumnParallelLinear");
  const int tp_rank = tp_->rank(), tp_size = tp_->size();
  LoraSlot slot;
  slot.a_part.full_shape = A_full.sizes().vec();
  slot.a_part.shared = tp_size > 1;
  slot.a_part.owner = tp_rank == 0;
  slot.b_part.full_shape = B_full.sizes().vec();
  slot.b_part.dim = 0;
  slot.b_part.range = out_shard_;
  slot.b_part.shared = replicas_ > 1;
  slot.b_part.owner = tp_rank % replicas_ == 0;
  slot.A = slot.a_part.slice_of(A_full).contiguous();
  slot.B = slot.b_part.slice_of(B_full).contiguous();
  slot.scale = scale;
  lora_ = std::move(slot);
}

int64_t ColumnParallelLinear::weight_bytes() const {
  return static_cast<int64_t>(weight_.plain.nbytes() + (bias_ ? bias_->nbytes() : 0)) + weight_.packed_bytes();
}

void ColumnParallelLinear::merge_lora() {
  set_merged(weight_, lora_, true);
  ++weight_version_;
}
void ColumnParallelLinear::unmerge_lora() {
  set_merged(weight_, lora_, false);
  ++weight_version_;
}

RowParallelLinear::RowParallelLinear(CommunicatorPtr tp, at::Tensor weight,
                                     std::optional<at::Tensor> bias, int64_t in_features)
    : tp_(std::move(tp)),
      weight_(std::move(weight)),
      bias_(std::move(bias)),
      in_features_(in_features),
      in_shard_(shard_range(in_features, tp_->rank(), tp_->size(), "input features")) {
  TLM_CHECK(weight_.plain.dim() == 2 && weight_.plain.size(1) == in_shard_.size(),
            "RowParallelLinear: local weight ", weight_.plain.sizes(), " is not [out, ",
            in_shard_.size(), "]");
}

at::Tensor RowParallelLinear::forward(const at::Tensor& x_local) const {
  at::Tensor partial = linear(x_local, weight_);  // [..., out], partial sum over TP
  if (lora_active(lora_)) partial = add_lora_branch(partial, x_local, *lora_);
  at::Tensor y = reduce_from_tp_region(partial, tp_);
  if (bias_) y = y + *bias_;
  return y;
}

void RowParallelLinear::attach_lora(const at::Tensor& A_full, const at::Tensor& B_full,
                                    double scale) {
  check_lora_shapes(A_full, B_full, in_features_, out_features(), "RowParallelLinear");
  LoraSlot slot;
  slot.a_part.full_shape = A_full.sizes().vec();
  slot.a_part.dim = 1;
  slot.a_part.range = in_shard_;
  slot.b_part.full_shape = B_full.sizes().vec();
  slot.b_part.shared = tp_->size() > 1;
  slot.b_part.owner = tp_->rank() == 0;
  slot.A = slot.a_part.slice_of(A_full).contiguous();
  slot.B = slot.b_part.slice_of(B_full).contiguous();
  slot.scale = scale;
  lora_ = std::move(slot);
}

int64_t RowParallelLinear::weight_bytes() const {
  return static_cast<int64_t>(weight_.plain.nbytes() + (bias_ ? bias_->nbytes() : 0)) + weight_.packed_bytes();
}

void RowParallelLinear::merge_lora() { set_merged(weight_, lora_, true); }
void RowParallelLinear::unmerge_lora() { set_merged(weight_, lora_, false); }

}  // namespace tlm
