// The build without NCCL (TLM_WITH_NCCL=OFF): choosing the back end fails with the reason.
#include "dist/nccl_communicator.h"

#include "engine/common/error.h"

namespace tlm {

bool nccl_compiled_in() { return false; }

std::string gpu_identity(const c10::Device& device) { return device.str(); }

CommunicatorPtr make_nccl_communicator(MPI_Comm, const std::string&, const c10::Device&, double) {
  TLM_FAIL("--backend nccl: this build of tlm has no NCCL back end (configure with "
           "-DTLM_WITH_NCCL=ON and the CUDA toolkit)");
}

}  // namespace tlm
