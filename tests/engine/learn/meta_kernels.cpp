// Shape-only (Meta) kernels for the few ATen ops the model uses whose meta kernels LibTorch
// registers only from Python (torch/_meta_registrations.py), so that the C++ meta-device
// guard (test_meta_device.cpp) can run the model. Each computes the output's shape and dtype,
// as the op's Python meta registration does; none touches data.
#include <ATen/ATen.h>
#include <torch/library.h>

namespace {

at::Tensor index_select_meta(const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  TORCH_CHECK(index.is_meta(), "index_select: index on ", index.device(), ", self on meta");
  std::vector<int64_t> sizes = self.sizes().vec();
  const int64_t d = dim < 0 ? dim + self.dim() : dim;
  if (self.dim() > 0) sizes[static_cast<size_t>(d)] = index.numel();
  return at::empty(sizes, self.options());
}

void check_meta(std::initializer_list<const at::Tensor*> ts, const char* op) {
  for (const at::Tensor* t : ts)
    TORCH_CHECK(t->is_meta() || t->dim() == 0, op, ": a tensor on ", t->device(), " meets meta tensors");
}

at::Tensor where_meta(const at::Tensor& condition, const at::Tensor& self, const at::Tensor& other) {
  check_meta({&condition, &self, &other}, "where");
  const std::vector<int64_t> sizes = at::infer_size(at::infer_size(condition.sizes(), self.sizes()), other.sizes());
  return at::empty(sizes, self.options().dtype(at::result_type(self, other)).device(c10::kMeta));
}

at::Tensor& where_out_meta(const at::Tensor& condition, const at::Tensor& self, const at::Tensor& other,
                           at::Tensor& out) {
  check_meta({&condition, &self, &other, &out}, "where");
  out.resize_(at::infer_size(at::infer_size(condition.sizes(), self.sizes()), other.sizes()));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, Meta, m) {
  m.impl("index_select", index_select_meta);
  m.impl("where.self", where_meta);
  m.impl("where.self_out", where_out_meta);
}
