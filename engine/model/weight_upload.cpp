#include "engine/model/weight_upload.h"

#include <algorithm>

#include <ATen/ATen.h>

namespace tlm {

WeightUploader::WeightUploader(at::ScalarType dtype, c10::Device device, int64_t staging_bytes)
    : dtype_(dtype), device_(device), staging_bytes_(staging_bytes) {}

at::Tensor WeightUploader::operator()(const at::Tensor& host) const {
  if (device_.is_cpu()) return host.to(dtype_);
  // The meta device holds no data: only shapes and dtypes travel.
  if (device_.is_meta()) return at::empty(host.sizes(), host.options().dtype(dtype_).device(device_));
  const int64_t n = host.numel();
  at::Tensor out = at::empty(host.sizes(), at::TensorOptions().dtype(dtype_).device(device_));
  if (n == 0) return out;
  const int64_t chunk = std::max<int64_t>(1, staging_bytes_ / static_cast<int64_t>(at::elementSize(dtype_)));
  if (!staging_.defined())
    staging_ = at::empty({chunk}, at::TensorOptions().dtype(dtype_).pinned_memory(true));
  const at::Tensor src = host.contiguous().view({-1});
  at::Tensor dst = out.view({-1});
  for (int64_t offset = 0; offset < n; offset += chunk) {
    const int64_t c = std::min(chunk, n - offset);
    at::Tensor stage = staging_.narrow(0, 0, c);
    stage.copy_(src.narrow(0, offset, c));                   // dtype conversion on the host
    dst.narrow(0, offset, c).copy_(stage, /*non_blocking=*/false);  // DMA; the buffer is free after
  }
  return out;
}

}  // namespace tlm
