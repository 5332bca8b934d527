// The process grid (ARCHITECTURE.md section 4): world = tp * dp, rank r has tp_rank = r % tp
// and dp_rank = r / tp, so the ranks of one TP group are neighbours (one node when a node
// holds tp ranks). One communicator per TP group and per DP group, split from the world.
#pragma once

#include <string>

#include "dist/communicator.h"

namespace tlm {

enum class Backend { Single, Mpi, Nccl };

// "single" | "mpi" | "nccl" | "auto" (mpi under a launcher, else single) -> Backend.
Backend parse_backend(const std::string& name, bool under_launcher);

struct GridOptions {
  int tp = 1;
  int dp = 1;
  Backend backend = Backend::Single;
  double timeout_seconds = 300.0;  // every collective; <= 0 = wait forever
};

struct ProcessGrid {
  int world_rank = 0;
  int world_size = 1;
  int tp_rank = 0;
  int dp_rank = 0;
  int tp_size = 1;
  int dp_size = 1;
  CommunicatorPtr world, tp, dp;
  bool is_root() const { return world_rank == 0; }
  std::string describe() const;  // "tp 2 x dp 2 over mpi (4 ranks)"
};

// The one-process grid (tests, single-process tools).
ProcessGrid single_process_grid();

// Validates the layout against the ranks the launcher started, with every factor in the
// message, then builds the groups. Backend::Mpi and Backend::Nccl need an active MpiSession.
ProcessGrid make_process_grid(const GridOptions& options);

}  // namespace tlm
