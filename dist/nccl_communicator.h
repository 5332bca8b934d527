// The NCCL back end of Communicator: CUDA tensors, work enqueued on LibTorch's current CUDA
// stream. The group's unique id is created on its rank 0 and broadcast over the group's MPI
// communicator. Compiled and linked in every build (TLM_WITH_NCCL); without a visible GPU
// creating one fails at start with a message saying so.
#pragma once

#include <string>

#include <c10/core/Device.h>
#include <mpi.h>

#include "dist/communicator.h"

namespace tlm {

// True when this build has the NCCL back end.
bool nccl_compiled_in();

// The physical identity of a CUDA device, the same whatever CUDA_VISIBLE_DEVICES calls it
// (its PCI bus id), so that ranks that each see one GPU as cuda:0 are told apart.
std::string gpu_identity(const c10::Device& device);

// A NCCL communicator over the ranks of `comm` (which must stay valid while it is created)
// on this rank's CUDA `device` (the process grid gives each rank its own). timeout_seconds
// bounds every operation: a peer that stops answering aborts the job with rank, operation
// and group. Tensors must be contiguous CUDA tensors on `device`; anything else is refused.
CommunicatorPtr make_nccl_communicator(MPI_Comm comm, const std::string& group,
                                       const c10::Device& device, double timeout_seconds);

}  // namespace tlm
