// The NCCL back end on a real GPU (label gpu; skipped, visibly, where no GPU is visible):
// under mpirun -np 1 the process grid on `--device cuda` picks NCCL for device tensors and
// MPI for host values; every collective runs through NCCL on the rank's GPU; NCCL refuses a
// CPU tensor and the MPI host group refuses a CUDA tensor, each with the reason.
#include <functional>
#include <string>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dist/device.h"
#include "dist/process_grid.h"
#include "engine/common/error.h"
#include "tests/dist/mpi_test_main.h"
#include "tests/dist/dist_testing.h"

namespace tlm {
namespace {

using test::error_of;
using test::max_diff;

ProcessGrid gpu_grid() {
  GridOptions o;
  o.tp = test::world_size();
  o.device = parse_device("cuda");
  o.timeout_seconds = 60;
  return make_process_grid(o);
}

TEST(NcclCommunicator, CollectivesOnTheRanksGpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU visible";
  ProcessGrid g = gpu_grid();
  ASSERT_EQ(g.backend, Backend::Nccl);
  ASSERT_TRUE(g.device.is_cuda());
  EXPECT_NE(g.world->name().find("nccl"), std::string::npos);
  EXPECT_NE(g.host_world->name().find("mpi"), std::string::npos);
  const int n = g.tp->size(), r = g.tp->rank();
  const at::TensorOptions on_gpu = at::TensorOptions().device(g.device);
  for (at::ScalarType dtype : {at::kFloat, at::kDouble, at::kBFloat16, at::kLong}) {
    at::Tensor t = at::full({5}, r + 1, on_gpu.dtype(dtype));
    g.tp->all_reduce(t, ReduceOp::Sum);
    EXPECT_TRUE(at::equal(t.cpu(), at::full({5}, n * (n + 1) / 2, at::TensorOptions().dtype(dtype)))) << dtype;
    at::Tensor m = at::full({3}, r, on_gpu.dtype(dtype));
    g.tp->all_reduce(m, ReduceOp::Max);
    EXPECT_EQ(m.cpu()[0].item<double>(), n - 1);
  }
  at::Tensor gathered = g.tp->all_gather(at::full({2}, static_cast<float>(r), on_gpu), 0);
  EXPECT_EQ(gathered.device(), g.device);
  EXPECT_EQ(gathered.numel(), 2 * n);
  at::Tensor b = at::full({4}, static_cast<float>(r + 7), on_gpu);
  g.tp->broadcast(b, 0);
  EXPECT_EQ(b.cpu()[0].item<float>(), 7.0f);
  g.tp->barrier();
}

TEST(NcclCommunicator, WrongDeviceTensorsAreRefused) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU visible";
  ProcessGrid g = gpu_grid();
  at::Tensor host = at::zeros({4});
  const std::string nccl = error_of([&] { g.tp->all_reduce(host, ReduceOp::Sum); });
  EXPECT_NE(nccl.find("the NCCL back end takes tensors on " + g.device.str() + ", got a tensor on cpu"),
            std::string::npos) << nccl;
  at::Tensor device = at::zeros({4}, at::TensorOptions().device(g.device));
  const std::string mpi = error_of([&] { g.host_tp->all_reduce(device, ReduceOp::Sum); });
  EXPECT_NE(mpi.find("the MPI back end takes CPU tensors, got a tensor on " + g.device.str()), std::string::npos)
      << mpi;
}

TEST(NcclCommunicator, MpiBackendOnAGpuIsRefused) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU visible";
  GridOptions o;
  o.tp = test::world_size();
  o.device = parse_device("cuda");
  o.backend = "mpi";
  const std::string m = error_of([&] { make_process_grid(o); });
  EXPECT_NE(m.find("--backend mpi carries CPU tensors"), std::string::npos) << m;
}

}  // namespace
}  // namespace tlm
