// A frozen weight W [out, in] of y = x W^T, and the one place its matmuls are computed.
//
// On CPU, fp32, the weight can also be held in oneDNN's prepacked layout (LibTorch's
// mkldnn::_reorder_linear_weight / _linear_pointwise). MKL's sgemm, which at::linear calls,
// repacks W on every call; at the row counts of decoding and of short prompts (1-64 rows)
// that copy costs more than the product itself, and on AMD CPUs with AVX-512 oneDNN uses
// it where MKL keeps to AVX2 (README, "Speed"). The packed copy is made once at load:
// `packed` for the forward (y = x W^T) and, when training, `packed_t` for the input
// gradient (dx = dy W). The arithmetic is the same fp32 dot
// products in another summation order: results differ from at::linear by rounding only
// (tests/engine/kernels state the tolerance).
//
// `plain` stays the weight every other path reads (merging LoRA, export, the embedding
// lookup of a tied head); whoever changes it in place calls repack().
#pragma once

#include <optional>
#include <string>

#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/custom_function.h>

#include "engine/kernels/block_weight.h"

namespace tlm {

struct LinearWeight {
  at::Tensor plain;     // [out, in]; undefined where only the packed copies are kept (fused groups)
  at::Tensor packed;    // oneDNN layout of W, for y = x W^T; undefined: not packed
  at::Tensor packed_t;  // oneDNN layout of W^T, for dx = dy W; undefined: not packed
  // The same W in the GGUF file's quantised blocks (block_weight.h), for products of up to
  // max_block_rows() rows without gradient; undefined: not kept. Whoever changes `plain` in
  // place drops it (it would no longer be the same W).
  BlockWeight blocks;

  LinearWeight() = default;
  LinearWeight(at::Tensor w) : plain(std::move(w)) {}  // NOLINT: an unpacked weight
  int64_t out_features() const { return (plain.defined() ? plain : packed).size(0); }
  int64_t in_features() const { return (plain.defined() ? plain : packed).size(1); }
  // Bytes of the packed copies and the blocks (the plain weight not counted).
  int64_t packed_bytes() const;
};

// Whether `w` can be packed here: a CPU fp32 tensor and LibTorch built with oneDNN.
bool can_pack(const at::Tensor& w);
// Makes the packed forward copy, and the transposed one when `backward`; throws when
// !can_pack(w.plain).
void pack(LinearWeight& w, bool backward);
// Rebuilds whichever packed copies exist from `plain` (after an in-place change).
void repack(LinearWeight& w);

// y = x W^T (+ bias): x [..., in] -> [..., out], differentiable in x (W is frozen; the input
// gradient goes through input_gradient). Packed copies are used where present, the blocks
// for a few rows that need no gradient.
at::Tensor linear(const at::Tensor& x, const LinearWeight& w,
                  const std::optional<at::Tensor>& bias = std::nullopt);
// dx = dy W: dy [..., out] -> [..., in], no autograd (for custom backward passes).
at::Tensor input_gradient(const at::Tensor& dy, const LinearWeight& w);

// For custom autograd functions: keep a weight (all its copies) in ctx->saved_data under
// `key`, and get it back in backward.
void save_weight(torch::autograd::AutogradContext* ctx, const std::string& key, const LinearWeight& w);
LinearWeight saved_weight(torch::autograd::AutogradContext* ctx, const std::string& key);

}  // namespace tlm
