#include "dist/mpi_session.h"

#include <cstdlib>

#include <mpi.h>

#include "engine/common/error.h"
#include "engine/common/log.h"

namespace tlm {
namespace {
bool g_active = false;
int g_rank = 0;
}  // namespace

bool launched_as_mpi_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_NUM_TASKS"})
    if (std::getenv(var)) return true;
  return false;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  TLM_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS,
            "MPI_Init_thread failed");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  g_active = true;
  g_rank = rank_;
  if (size_ > 1) set_log_prefix(str_cat("[rank ", rank_, "/", size_, "] "));
}

MpiSession::~MpiSession() {
  g_active = false;
  MPI_Finalize();
}

bool mpi_active() { return g_active; }
int mpi_world_rank() { return g_rank; }

void abort_job(const std::string& message) {
  log_error(message);
  if (g_active) MPI_Abort(MPI_COMM_WORLD, 1);
  std::exit(1);
}

void abort_collective_timeout(const char* operation, const std::string& group, int group_size,
                              double timeout_seconds) {
  abort_job(str_cat("rank ", g_rank, ": ", operation, " on the ", group, " group (", group_size,
                    " ranks) did not complete within ", timeout_seconds,
                    " s: a peer rank died or stopped answering; aborting all ranks"));
}

}  // namespace tlm
