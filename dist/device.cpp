#include "dist/device.h"

#include <ATen/Context.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include "engine/common/error.h"
#include "engine/common/log.h"

namespace tlm {

DeviceRequest parse_device(const std::string& text) {
  DeviceRequest r;
  r.text = text;
  if (text == "auto") return r;
  if (text == "cpu") {
    r.kind = DeviceRequest::Kind::Cpu;
    return r;
  }
  if (text == "cuda") {
    r.kind = DeviceRequest::Kind::Cuda;
    return r;
  }
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 &&
      text.find_first_not_of("0123456789", 5) == std::string::npos && text.size() <= 8) {
    r.kind = DeviceRequest::Kind::Cuda;
    r.index = std::stoi(text.substr(5));
    return r;
  }
  TLM_FAIL("--device must be auto, cpu, cuda or cuda:N, got '", text, "'");
}

int cuda_device_count() {
  if (!at::globalContext().hasCUDA()) return 0;
  return static_cast<int>(at::detail::getCUDAHooks().deviceCount());
}

c10::Device resolve_device(const DeviceRequest& request, int local_rank, int visible) {
  using Kind = DeviceRequest::Kind;
  if (request.kind == Kind::Cpu || (request.kind == Kind::Auto && visible == 0)) return c10::Device(c10::kCPU);
  TLM_CHECK(visible > 0, "--device ", request.text, ": this process sees no CUDA device (no GPU, no driver, "
            "or CUDA_VISIBLE_DEVICES hides them); use --device cpu");
  int index = local_rank % visible;
  if (request.index) {
    TLM_CHECK(*request.index < visible, "--device ", request.text, ": this process sees ", visible,
              " CUDA device(s), numbered 0 to ", visible - 1);
    index = *request.index;
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void make_current(const c10::Device& device) {
  if (device.is_cuda()) at::accelerator::setDeviceIndex(device.index());
}

std::string describe_device(const c10::Device& device) {
  if (!device.is_cuda()) return device.str();
  const auto [free_bytes, total_bytes] = at::accelerator::getMemoryInfo(device.index());
  (void)free_bytes;
  return str_cat(device.str(), " (", cuda_device_count(), " visible, ",
                 fixed(static_cast<double>(total_bytes) / (1024.0 * 1024.0 * 1024.0), 1), " GiB)");
}

std::string dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat: return "fp32";
    case c10::kBFloat16: return "bf16";
    case c10::kHalf: return "fp16";
    default: return c10::toString(dtype);
  }
}

}  // namespace tlm
