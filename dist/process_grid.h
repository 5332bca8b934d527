// The process grid (ARCHITECTURE.md section 4): world = tp * dp, rank r has tp_rank = r % tp
// and dp_rank = r / tp, so the ranks of one TP group are neighbours (one node when a node
// holds tp ranks). One communicator per TP group and per DP group, split from the world,
// twice over: `world`/`tp`/`dp` carry the job's tensors on its device (NCCL for CUDA
// tensors, MPI for CPU ones), `host_world`/`host_tp`/`host_dp` carry host values (counts,
// strings, flags, gathered predictions) over MPI. On CPU ranks both are the same MPI groups;
// on one process every group is the size-1 identity.
#pragma once

#include <string>

#include <c10/core/Device.h>

#include "dist/communicator.h"
#include "dist/device.h"

namespace tlm {

enum class Backend { Single, Mpi, Nccl };

// "single" | "mpi" | "nccl" | "auto" -> Backend. auto: single for one process not started by
// a launcher, else nccl for CUDA ranks and mpi for CPU ranks.
Backend parse_backend(const std::string& name, bool under_launcher, const c10::Device& device);

struct GridOptions {
  int tp = 1;
  int dp = 1;
  std::string backend = "auto";
  DeviceRequest device;            // --device
  double timeout_seconds = 300.0;  // every collective; <= 0 = wait forever
};

struct ProcessGrid {
  int world_rank = 0;
  int world_size = 1;
  int tp_rank = 0;
  int dp_rank = 0;
  int tp_size = 1;
  int dp_size = 1;
  int local_rank = 0;  // among the ranks of this node
  int local_size = 1;
  Backend backend = Backend::Single;
  c10::Device device = c10::Device(c10::kCPU);  // where this rank's tensors live
  CommunicatorPtr world, tp, dp;                 // device tensors
  CommunicatorPtr host_world, host_tp, host_dp;  // host values (CPU tensors, MPI)
  bool is_root() const { return world_rank == 0; }
  std::string describe() const;  // "tp 2 x dp 2 over mpi world group (4 ranks)"
};

// The one-process grid on `device` (tests, single-process tools).
ProcessGrid single_process_grid(const c10::Device& device = c10::Device(c10::kCPU));

// Validates the layout against the ranks the launcher started, with every factor in the
// message; gives the rank its device (the GPU of its node-local rank for cuda/auto) and makes
// it current; refuses CUDA ranks over MPI, CPU ranks over NCCL and two NCCL ranks on one GPU;
// then builds the groups. Backend::Mpi and Backend::Nccl need an active MpiSession.
ProcessGrid make_process_grid(const GridOptions& options);

}  // namespace tlm
