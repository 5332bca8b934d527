// Which device a rank computes on. `--device auto|cpu|cuda|cuda:N` (recipe key `device:`):
//   auto    the rank's GPU when CUDA devices are visible, else the CPU
//   cuda    the GPU of the rank's node-local rank, modulo the visible device count
//   cuda:N  GPU N (the same on every rank of a node: for one-rank jobs)
//   cpu     the CPU
// The node-local rank comes from an MPI shared-memory split of the world (the ranks that
// share a node), so it needs no launcher-specific environment. Every tensor a job makes is
// made on the device resolved here; nothing below asks for a device again.
#pragma once

#include <optional>
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace tlm {

struct DeviceRequest {
  enum class Kind { Auto, Cpu, Cuda } kind = Kind::Auto;
  std::optional<int> index;  // cuda:N
  std::string text = "auto";
};

// "auto" | "cpu" | "cuda" | "cuda:N" -> DeviceRequest; anything else is an error naming it.
DeviceRequest parse_device(const std::string& text);

// CUDA devices this process sees (0 on a machine without a GPU or a driver).
int cuda_device_count();

// The device of a rank with node-local rank `local_rank` among `local_size` ranks of its
// node, given `visible` CUDA devices. Throws with the reason when CUDA is asked for but
// absent, or cuda:N is not a visible device.
c10::Device resolve_device(const DeviceRequest& request, int local_rank, int visible);

// Makes `device` the current device of this thread (CUDA: cudaSetDevice); no-op on CPU.
void make_current(const c10::Device& device);

// "cpu", or "cuda:1 (1 of 8 visible, 139.8 GiB)" for logs.
std::string describe_device(const c10::Device& device);

// "fp32", "bf16", "fp16" (the names --dtype takes), else LibTorch's name.
std::string dtype_name(c10::ScalarType dtype);

}  // namespace tlm
