#include "dist/collective_checks.h"

#include "engine/common/error.h"

namespace tlm {

void check_collective_tensor(const at::Tensor& tensor, const c10::Device& expected,
                             const char* backend, const char* operation, const std::string& group) {
  TLM_CHECK(tensor.defined(), backend, " ", operation, " on the ", group, " group: undefined tensor");
  const c10::Device got = tensor.device();
  const bool same = got.type() == expected.type() && (!expected.has_index() || got.index() == expected.index());
  TLM_CHECK(same, backend, " ", operation, " on the ", group, " group: the ", backend, " back end takes ",
            expected.is_cpu() ? "CPU tensors" : str_cat("tensors on ", expected), ", got a tensor on ", got,
            expected.is_cpu() ? " (CUDA tensors go over NCCL)" : " (host values go over the MPI host group)");
  TLM_CHECK(tensor.is_contiguous(), backend, " ", operation, " on the ", group, " group: tensor must be contiguous");
}

}  // namespace tlm
