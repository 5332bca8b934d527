// The seam between a test-time method and the tensors it trains: a named list of parameters
// with their TP shard rule. The learner, AdamW, clipping, gradient reduction, collapse guards,
// checkpoints and tlm-ckpt see only this interface; optimiser state is matched to parameters
// by name. Two sets exist: LoRA A/B on projections (engine/learn/lora.h, the default) and
// the RMSNorm weights (engine/learn/norm_affine.h, `trainable: norm-affine`).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "dist/communicator.h"

namespace tlm {

enum class TrainableKind { Lora, NormAffine };

// One state of a set's tensors (parameters() order), immutable once published: a server's
// adapter snapshots.
using StateSnapshot = std::shared_ptr<const std::vector<at::Tensor>>;

// "lora" | "norm-affine"; parse throws naming the value and the choices.
std::string trainable_kind_name(TrainableKind kind);
TrainableKind parse_trainable_kind(const std::string& name);

class TrainableSet {
 public:
  virtual ~TrainableSet() = default;
  virtual TrainableKind kind() const = 0;

  // This rank's tensors in a fixed order, and their names (full-state keys, e.g.
  // "model.layers.0.self_attn.q_proj.lora_A", "model.layers.0.input_layernorm.weight").
  virtual std::vector<at::Tensor> parameters() const = 0;
  virtual std::vector<std::string> parameter_names() const = 0;
  // Whether this rank speaks for parameter i's elements in sums over the full set (each
  // element has one owner rank under TP).
  virtual bool owns(size_t i) const = 0;
  // The full (unsharded) shape of parameter i.
  virtual std::vector<int64_t> full_shape(size_t i) const = 0;
  // The full-size form of a tensor shaped like this rank's parameter i (the parameter itself,
  // or an optimiser moment): collective over TP. And the reverse: this rank's part of it.
  virtual at::Tensor assemble_full(size_t i, const at::Tensor& local) const = 0;
  virtual at::Tensor local_part(size_t i, const at::Tensor& full) const = 0;

  // Full-size tensors by parameter name (collective over TP).
  std::map<std::string, at::Tensor> full_state() const;
  // Replaces every parameter with the given full-size tensors (this rank's part of each).
  // Throws naming `source`, the parameter and both shapes when one does not fit, or the
  // name when one is missing.
  void load_full_state(const std::map<std::string, at::Tensor>& state, const std::string& source);

  // After backward: every rank's gradients become those one process computes over the global
  // batch (summed over TP where a part is shared, then over DP). Collective over both groups.
  virtual void reduce_gradients(const CommunicatorPtr& tp, const CommunicatorPtr& dp) = 0;
  // 2-norm of all gradients over the full set, every element counted once. Collective over TP.
  virtual double gradient_norm(const CommunicatorPtr& tp) const = 0;

  // Off: the model computes the base output (scoring, references, frozen-base terms).
  virtual void set_enabled(bool enabled) = 0;
  // Training-only behaviour (LoRA dropout) is active only while training.
  virtual void set_training(bool training) = 0;
  // Per-row states for batched forwards whose rows belong to different states (a server
  // decoding several sessions in one batch): row i computes with rows[i] (nullptr: the base
  // output), until clear_row_states(). Needs the set enabled. Sets that cannot throw.
  virtual void use_row_states(const std::vector<StateSnapshot>& rows);
  virtual void clear_row_states() {}
  // The set's settings for the method record (checkpoint "method", summary "config").
  virtual nlohmann::json describe() const = 0;
};

}  // namespace tlm
