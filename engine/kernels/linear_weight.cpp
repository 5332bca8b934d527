#include "engine/kernels/linear_weight.h"

#include <string_view>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include "engine/common/error.h"

namespace tlm {
namespace {

// The row count oneDNN is told to expect when it chooses the packed layout. Measured on a
// 2-core EPYC: the layout packed for 8 rows serves 1 to 320 rows as fast as one packed for
// each (tests/bench/run_bench.sh reports the products' speed).
constexpr int64_t kRowsHint = 8;

at::Tensor reorder(const at::Tensor& w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkldnn::_reorder_linear_weight", "")
                       .typed<at::Tensor(const at::Tensor&, std::optional<int64_t>)>();
  return op.call(w.contiguous(), kRowsHint);
}

// x2d [n, in] (contiguous) times a packed W -> [n, out].
at::Tensor packed_product(const at::Tensor& x2d, const at::Tensor& packed,
                          const std::optional<at::Tensor>& bias) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                         std::string_view, c10::List<std::optional<at::Scalar>>,
                                         std::optional<std::string_view>)>();
  return op.call(x2d, packed, bias, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt);
}

// [..., k] through a packed [m, k] weight -> [..., m].
at::Tensor through_packed(const at::Tensor& x, const at::Tensor& packed, const std::optional<at::Tensor>& bias) {
  const int64_t k = x.size(-1);
  std::vector<int64_t> out_shape = x.sizes().vec();
  at::Tensor y = packed_product(x.reshape({-1, k}).contiguous(), packed, bias);
  out_shape.back() = y.size(1);
  return y.view(out_shape);
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// y = x W^T through the packed copy; dx = dy W through the transposed one (or MKL).
struct PackedLinear : torch::autograd::Function<PackedLinear> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const LinearWeight* w,
                            const std::optional<at::Tensor>& bias) {
    LinearWeight for_backward;  // what input_gradient reads: no forward copy
    if (w->packed_t.defined()) for_backward.packed_t = w->packed_t;
    else for_backward.plain = w->plain;
    save_weight(ctx, "w", for_backward);
    return through_packed(x, w->packed, bias);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {input_gradient(grads[0], saved_weight(ctx, "w")), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

void save_weight(AutogradContext* ctx, const std::string& key, const LinearWeight& w) {
  ctx->saved_data[key + ".copies"] =
      static_cast<int64_t>(w.packed.defined()) | (w.packed_t.defined() << 1) | (w.plain.defined() << 2);
  if (w.plain.defined()) ctx->saved_data[key + ".plain"] = w.plain;
  if (w.packed.defined()) ctx->saved_data[key + ".packed"] = w.packed;
  if (w.packed_t.defined()) ctx->saved_data[key + ".packed_t"] = w.packed_t;
}

LinearWeight saved_weight(AutogradContext* ctx, const std::string& key) {
  LinearWeight w;
  const int64_t copies = ctx->saved_data.at(key + ".copies").toInt();
  if (copies & 4) w.plain = ctx->saved_data.at(key + ".plain").toTensor();
  if (copies & 1) w.packed = ctx->saved_data.at(key + ".packed").toTensor();
  if (copies & 2) w.packed_t = ctx->saved_data.at(key + ".packed_t").toTensor();
  return w;
}

int64_t LinearWeight::packed_bytes() const {
  // A packed copy holds the same elements (oneDNN pads blocks a little; not counted).
  int64_t total = 0;
  for (const at::Tensor* t : {&packed, &packed_t})
    if (t->defined()) total += t->numel() * static_cast<int64_t>(t->element_size());
  if (blocks.defined()) total += static_cast<int64_t>(blocks.bytes.nbytes());
  return total;
}

bool can_pack(const at::Tensor& w) {
  return w.defined() && w.device().is_cpu() && w.scalar_type() == at::kFloat && w.dim() == 2 &&
         at::hasMKLDNN();
}

void pack(LinearWeight& w, bool backward) {
  TLM_CHECK(can_pack(w.plain), "packed weights need a 2-D fp32 CPU weight and LibTorch with oneDNN; got ",
            w.plain.defined() ? w.plain.sizes() : at::IntArrayRef{}, " ",
            w.plain.defined() ? toString(w.plain.scalar_type()) : "undefined", " on ",
            w.plain.defined() ? w.plain.device().str() : "no device");
  at::NoGradGuard no_grad;
  w.packed = reorder(w.plain);
  w.packed_t = backward ? reorder(w.plain.t()) : at::Tensor();
}

void repack(LinearWeight& w) {
  if (w.packed.defined() || w.packed_t.defined()) pack(w, w.packed_t.defined());
}

at::Tensor linear(const at::Tensor& x, const LinearWeight& w, const std::optional<at::Tensor>& bias) {
  const bool no_grad = !x.requires_grad() || !at::GradMode::is_enabled();
  const int64_t rows = x.dim() > 0 && x.size(-1) > 0 ? x.numel() / x.size(-1) : 0;
  if (w.blocks.defined() && no_grad && rows <= max_block_rows() && x.scalar_type() == at::kFloat &&
      x.device().is_cpu()) {
    std::vector<int64_t> out_shape = x.sizes().vec();
    out_shape.back() = w.blocks.out_features();
    at::Tensor y = block_product(x.reshape({-1, x.size(-1)}).contiguous(), w.blocks);
    if (bias) y.add_(*bias);
    return y.view(out_shape);
  }
  if (!w.packed.defined()) return bias ? at::linear(x, w.plain, *bias) : at::linear(x, w.plain);
  if (no_grad) return through_packed(x, w.packed, bias);
  return PackedLinear::apply(x, &w, bias);
}

at::Tensor input_gradient(const at::Tensor& dy, const LinearWeight& w) {
  if (w.packed_t.defined()) return through_packed(dy.to(at::kFloat), w.packed_t, std::nullopt);
  TLM_CHECK(w.plain.defined(), "input_gradient: this weight holds neither its plain tensor nor a packed "
            "transposed copy (packed for inference only, used under autograd)");
  return at::matmul(dy.to(w.plain.scalar_type()), w.plain);
}

}  // namespace tlm
