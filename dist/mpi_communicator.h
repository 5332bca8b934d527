// The MPI back end of Communicator: CPU tensors (fp32, fp64, bf16, fp16, int64, int32,
// uint8; sum and max). Every operation is a non-blocking MPI collective polled against a
// deadline: a peer that died or stopped answering makes the job abort with the rank, the
// operation and the group in the message instead of hanging forever.
#pragma once

#include <string>

#include <mpi.h>

#include "dist/communicator.h"

namespace tlm {

// Wraps `comm` (duplicated; the communicator frees its copy). `group` names it in messages
// ("world", "tp", "dp"). timeout_seconds <= 0 waits forever.
CommunicatorPtr make_mpi_communicator(MPI_Comm comm, const std::string& group,
                                      double timeout_seconds);

// Fails with MPI's own error text, naming `operation`, when `code` is not MPI_SUCCESS.
void check_mpi(int code, const std::string& operation);

}  // namespace tlm
