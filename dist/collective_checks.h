// The one check every communicator back end makes on a tensor before a collective: it must
// live where the back end moves data (MPI: host memory; NCCL: this rank's GPU) and be
// contiguous. A CPU tensor never reaches NCCL and a CUDA tensor never reaches MPI: the
// message names the back end, the operation, the group and both devices.
#pragma once

#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace tlm {

void check_collective_tensor(const at::Tensor& tensor, const c10::Device& expected,
                             const char* backend, const char* operation, const std::string& group);

}  // namespace tlm
