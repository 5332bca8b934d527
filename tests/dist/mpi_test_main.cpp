#include "tests/dist/mpi_test_main.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include "dist/mpi_session.h"
#include "engine/common/log.h"

namespace tlm::test {

ProcessGrid mpi_grid(int tp, int dp) {
  GridOptions o;
  o.tp = tp;
  o.dp = dp;
  o.backend = "mpi";
  o.device = parse_device("cpu");
  o.timeout_seconds = 120;
  return make_process_grid(o);
}

int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

std::vector<std::pair<int, int>> test_layouts(int world) {
  if (world == 2) return {{2, 1}, {1, 2}};
  if (world == 4) return {{4, 1}, {2, 2}};
  return {{world, 1}};
}

}  // namespace tlm::test

int main(int argc, char** argv) {
  tlm::MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  // Rank 0 reports everything; the others only their failures.
  if (mpi.world_rank() != 0) GTEST_FLAG_SET(brief, true);
  int failed = RUN_ALL_TESTS();
  // A failure on any rank fails the job on every rank (mpirun reports the first non-zero).
  int any = failed;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any && failed == 0) tlm::log_error("a test failed on another rank");
  return any;
}
