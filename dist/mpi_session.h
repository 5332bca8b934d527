// The MPI runtime of a process started by mpirun (or srun): initialised once in main, torn
// down at exit, and the one place that aborts a whole job. A process not started by a
// launcher never touches MPI, so the single-process path has no MPI start-up cost.
#pragma once

#include <string>

namespace tlm {

class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int world_rank() const { return rank_; }
  int world_size() const { return size_; }

 private:
  int rank_ = 0;
  int size_ = 1;
};

// True when a launcher started this process as one of several ranks (mpirun, srun).
bool launched_as_mpi_rank();
// True between MpiSession's construction and destruction.
bool mpi_active();
// World rank when MPI is active, else 0.
int mpi_world_rank();

// Logs `message` and ends the job: every rank when MPI is active (MPI_Abort), else this
// process. Exit status 1. For errors after which peers would otherwise wait forever.
[[noreturn]] void abort_job(const std::string& message);
// abort_job for a collective that outlived its timeout, naming this rank, the operation and
// the group (the one message every back end gives).
[[noreturn]] void abort_collective_timeout(const char* operation, const std::string& group,
                                           int group_size, double timeout_seconds);

}  // namespace tlm
