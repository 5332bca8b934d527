#include "dist/process_grid.h"

#include <algorithm>
#include <sstream>
#include <vector>

#include <mpi.h>

#include "dist/mpi_communicator.h"
#include "dist/mpi_session.h"
#include "dist/nccl_communicator.h"
#include "engine/common/error.h"

namespace tlm {

Backend parse_backend(const std::string& name, bool under_launcher, const c10::Device& device) {
  if (name == "auto") {
    if (!under_launcher) return Backend::Single;
    return device.is_cuda() ? Backend::Nccl : Backend::Mpi;
  }
  if (name == "single") return Backend::Single;
  if (name == "mpi") return Backend::Mpi;
  if (name == "nccl") return Backend::Nccl;
  TLM_FAIL("--backend must be auto, single, mpi or nccl, got '", name, "'");
}

std::string ProcessGrid::describe() const {
  return str_cat("tp ", tp_size, " x dp ", dp_size, " over ", world->name());
}

ProcessGrid single_process_grid(const c10::Device& device) {
  ProcessGrid g;
  g.device = device;
  g.world = g.tp = g.dp = make_single_process_communicator();
  g.host_world = g.host_tp = g.host_dp = g.world;
  return g;
}

namespace {

struct NodePlacement {
  int local_rank = 0;
  int local_size = 1;
  MPI_Comm node = MPI_COMM_NULL;  // the ranks of this node (freed by the caller)
};

NodePlacement place_on_node() {
  NodePlacement p;
  if (!mpi_active()) return p;
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &p.node),
            "MPI_Comm_split_type (ranks of a node)");
  MPI_Comm_rank(p.node, &p.local_rank);
  MPI_Comm_size(p.node, &p.local_size);
  return p;
}

// NCCL cannot run two ranks of one communicator on one GPU: every rank of a node learns the
// GPUs of its node's peers (by PCI bus id: with one visible GPU per task every rank calls its
// GPU cuda:0) and the job stops, naming them, before any NCCL call.
void refuse_shared_gpus(const NodePlacement& node, const c10::Device& device) {
  constexpr int kLength = 64;
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  char mine[kLength] = {0};
  const std::string id = str_cat(world_rank, " ", device.str(), " ", gpu_identity(device));
  std::copy_n(id.begin(), std::min<size_t>(id.size(), kLength - 1), mine);
  std::vector<char> all(static_cast<size_t>(kLength) * static_cast<size_t>(node.local_size));
  check_mpi(MPI_Allgather(mine, kLength, MPI_CHAR, all.data(), kLength, MPI_CHAR, node.node),
            "MPI_Allgather (GPU of each rank)");
  struct Peer { std::string rank, device, bus; };
  std::vector<Peer> peers;
  for (int i = 0; i < node.local_size; ++i) {
    std::istringstream in(std::string(all.data() + static_cast<size_t>(i) * kLength));
    Peer p;
    in >> p.rank >> p.device >> p.bus;
    peers.push_back(p);
  }
  for (size_t i = 0; i < peers.size(); ++i)
    for (size_t j = i + 1; j < peers.size(); ++j)
      TLM_CHECK(peers[i].bus != peers[j].bus, "ranks ", peers[i].rank, " and ", peers[j].rank, " would both use ",
                peers[i].device, " (GPU ", peers[i].bus, "): NCCL needs one GPU per rank (", node.local_size,
                " ranks on this node, ", cuda_device_count(),
                " visible GPUs); start at most one rank per GPU (e.g. srun --gpus-per-task=1) or use --device cpu");
}

void check_backend_fits_device(Backend backend, const c10::Device& device, int world_rank) {
  if (backend == Backend::Nccl)
    TLM_CHECK(device.is_cuda(), "--backend nccl needs a CUDA GPU, but rank ", world_rank, " runs on ", device,
              " (it sees ", cuda_device_count(), " CUDA devices); use --backend mpi to run on CPUs");
  if (backend == Backend::Mpi)
    TLM_CHECK(device.is_cpu(), "--backend mpi carries CPU tensors, but rank ", world_rank, " runs on ", device,
              "; use --backend nccl (or auto) for GPU ranks, or --device cpu");
}

}  // namespace

ProcessGrid make_process_grid(const GridOptions& options) {
  TLM_CHECK(options.tp >= 1 && options.dp >= 1, "--tp-size (", options.tp, ") and --dp-size (",
            options.dp, ") must be at least 1");
  int world_size = 1, world_rank = 0;
  if (mpi_active()) {
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  }
  NodePlacement node = place_on_node();
  const c10::Device device = resolve_device(options.device, node.local_rank, cuda_device_count());
  const Backend backend = parse_backend(options.backend, mpi_active(), device);
  if (backend == Backend::Single) {
    if (node.node != MPI_COMM_NULL) MPI_Comm_free(&node.node);
    TLM_CHECK(world_size == 1, "the single-process back end cannot run on ", world_size,
              " ranks; use --backend mpi (CPU) or nccl (GPU)");
    TLM_CHECK(options.tp * options.dp == 1, "--tp-size ", options.tp, " x --dp-size ", options.dp,
              " = ", options.tp * options.dp,
              " ranks, but this process was not started by mpirun; launch it with "
              "mpirun -np ", options.tp * options.dp, " launch/tlm-rank ...");
    make_current(device);
    return single_process_grid(device);
  }
  TLM_CHECK(mpi_active(), "--backend mpi/nccl needs the process to be started by mpirun or srun");
  check_backend_fits_device(backend, device, world_rank);
  TLM_CHECK(options.tp * options.dp == world_size, "--tp-size ", options.tp, " x --dp-size ",
            options.dp, " = ", options.tp * options.dp, " ranks, but the launcher started ",
            world_size, "; make tp x dp equal mpirun's -np");
  if (backend == Backend::Nccl) refuse_shared_gpus(node, device);
  MPI_Comm_free(&node.node);
  make_current(device);
  ProcessGrid g;
  g.world_rank = world_rank;
  g.world_size = world_size;
  g.tp_size = options.tp;
  g.dp_size = options.dp;
  g.tp_rank = world_rank % options.tp;
  g.dp_rank = world_rank / options.tp;
  g.local_rank = node.local_rank;
  g.local_size = node.local_size;
  g.backend = backend;
  g.device = device;
  MPI_Comm tp_comm, dp_comm;
  check_mpi(MPI_Comm_split(MPI_COMM_WORLD, g.dp_rank, g.tp_rank, &tp_comm), "MPI_Comm_split (tp)");
  check_mpi(MPI_Comm_split(MPI_COMM_WORLD, g.tp_rank, g.dp_rank, &dp_comm), "MPI_Comm_split (dp)");
  const double t = options.timeout_seconds;
  g.host_world = make_mpi_communicator(MPI_COMM_WORLD, "world", t);
  g.host_tp = make_mpi_communicator(tp_comm, "tp", t);
  g.host_dp = make_mpi_communicator(dp_comm, "dp", t);
  if (backend == Backend::Nccl) {
    g.world = make_nccl_communicator(MPI_COMM_WORLD, "world", device, t);
    g.tp = make_nccl_communicator(tp_comm, "tp", device, t);
    g.dp = make_nccl_communicator(dp_comm, "dp", device, t);
  } else {
    g.world = g.host_world;
    g.tp = g.host_tp;
    g.dp = g.host_dp;
  }
  MPI_Comm_free(&tp_comm);
  MPI_Comm_free(&dp_comm);
  return g;
}

}  // namespace tlm
