#include "dist/process_grid.h"

#include <mpi.h>

#include "dist/mpi_communicator.h"
#include "dist/mpi_session.h"
#include "dist/nccl_communicator.h"
#include "engine/common/error.h"

namespace tlm {

Backend parse_backend(const std::string& name, bool under_launcher) {
  if (name == "auto") return under_launcher ? Backend::Mpi : Backend::Single;
  if (name == "single") return Backend::Single;
  if (name == "mpi") return Backend::Mpi;
  if (name == "nccl") return Backend::Nccl;
  TLM_FAIL("--backend must be auto, single, mpi or nccl, got '", name, "'");
}

std::string ProcessGrid::describe() const {
  return str_cat("tp ", tp_size, " x dp ", dp_size, " over ", world->name());
}

ProcessGrid single_process_grid() {
  ProcessGrid g;
  g.world = g.tp = g.dp = make_single_process_communicator();
  return g;
}

ProcessGrid make_process_grid(const GridOptions& options) {
  TLM_CHECK(options.tp >= 1 && options.dp >= 1, "--tp-size (", options.tp, ") and --dp-size (",
            options.dp, ") must be at least 1");
  int world_size = 1, world_rank = 0;
  if (mpi_active()) {
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  }
  if (options.backend == Backend::Single) {
    TLM_CHECK(world_size == 1, "the single-process back end cannot run on ", world_size,
              " ranks; use --backend mpi (CPU) or nccl (GPU)");
    TLM_CHECK(options.tp * options.dp == 1, "--tp-size ", options.tp, " x --dp-size ", options.dp,
              " = ", options.tp * options.dp,
              " ranks, but this process was not started by mpirun; launch it with "
              "mpirun -np ", options.tp * options.dp, " launch/tlm-rank ...");
    return single_process_grid();
  }
  TLM_CHECK(mpi_active(), "--backend mpi/nccl needs the process to be started by mpirun or srun");
  TLM_CHECK(options.tp * options.dp == world_size, "--tp-size ", options.tp, " x --dp-size ",
            options.dp, " = ", options.tp * options.dp, " ranks, but the launcher started ",
            world_size, "; make tp x dp equal mpirun's -np");
  ProcessGrid g;
  g.world_rank = world_rank;
  g.world_size = world_size;
  g.tp_size = options.tp;
  g.dp_size = options.dp;
  g.tp_rank = world_rank % options.tp;
  g.dp_rank = world_rank / options.tp;
  MPI_Comm tp_comm, dp_comm;
  check_mpi(MPI_Comm_split(MPI_COMM_WORLD, g.dp_rank, g.tp_rank, &tp_comm), "MPI_Comm_split (tp)");
  check_mpi(MPI_Comm_split(MPI_COMM_WORLD, g.tp_rank, g.dp_rank, &dp_comm), "MPI_Comm_split (dp)");
  const double t = options.timeout_seconds;
  if (options.backend == Backend::Nccl) {
    g.world = make_nccl_communicator(MPI_COMM_WORLD, "world", t);
    g.tp = make_nccl_communicator(tp_comm, "tp", t);
    g.dp = make_nccl_communicator(dp_comm, "dp", t);
  } else {
    g.world = make_mpi_communicator(MPI_COMM_WORLD, "world", t);
    g.tp = make_mpi_communicator(tp_comm, "tp", t);
    g.dp = make_mpi_communicator(dp_comm, "dp", t);
  }
  MPI_Comm_free(&tp_comm);
  MPI_Comm_free(&dp_comm);
  return g;
}

}  // namespace tlm
