// Harness for GoogleTest binaries that run under mpirun (CTest label mpi): main() starts
// MPI, every rank runs every test, and a rank whose test fails or hangs takes the job down
// through the collective timeout instead of leaving the others waiting.
#pragma once

#include <utility>
#include <vector>

#include "dist/process_grid.h"

namespace tlm::test {

// A grid over every rank of the job with the MPI back end on CPU ranks (timeout 120 s).
ProcessGrid mpi_grid(int tp, int dp);
int world_size();
int world_rank();
// The (tp, dp) layouts the multi-rank tests run: TP 2 and DP 2 on 2 ranks, TP 4 and
// TP 2 x DP 2 on 4 ranks, TP = world otherwise.
std::vector<std::pair<int, int>> test_layouts(int world);

}  // namespace tlm::test
