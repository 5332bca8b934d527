// Puts weights where the model computes: a freshly loaded fp32 host tensor (a rank's slice,
// read from the mmap) becomes a tensor of the compute dtype on the model's device. On an
// accelerator the bytes pass through one pinned host buffer of bounded size, chunk by chunk,
// so the copies are DMA transfers and no host copy of the model ever accumulates; on the CPU
// it is the dtype conversion alone.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace tlm {

class WeightUploader {
 public:
  // `staging_bytes`: size of the pinned buffer (accelerators only).
  WeightUploader(at::ScalarType dtype, c10::Device device, int64_t staging_bytes = 64 << 20);
  at::Tensor operator()(const at::Tensor& host) const;

 private:
  at::ScalarType dtype_;
  c10::Device device_;
  int64_t staging_bytes_;
  mutable at::Tensor staging_;  // [staging elements] pinned, dtype_; made on first use
};

}  // namespace tlm
