// check_collective_tensor, the one device check of every communicator back end: MPI takes
// host tensors only, NCCL the rank's own GPU's only, both refuse non-contiguous ones, and
// the message names the back end, the operation, the group and both devices. Runs without a
// GPU: a "CUDA tensor" here is a meta tensor standing in for any tensor not in host memory
// (the gpu-labelled dist.nccl_communicator test repeats the checks on a real GPU).
#include <string>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dist/collective_checks.h"
#include "engine/common/error.h"

namespace tlm {
namespace {

std::string refusal(const at::Tensor& t, const c10::Device& expected, const char* backend) {
  try {
    check_collective_tensor(t, expected, backend, "all_reduce", "tp");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CollectiveChecks, MpiRefusesTensorsOutsideHostMemory) {
  const std::string m = refusal(at::zeros({4}, at::TensorOptions().device(c10::kMeta)), c10::Device(c10::kCPU), "MPI");
  EXPECT_NE(m.find("MPI all_reduce on the tp group"), std::string::npos) << m;
  EXPECT_NE(m.find("takes CPU tensors, got a tensor on meta"), std::string::npos) << m;
  EXPECT_NE(m.find("CUDA tensors go over NCCL"), std::string::npos) << m;
  EXPECT_EQ(refusal(at::zeros({4}), c10::Device(c10::kCPU), "MPI"), "");
}

TEST(CollectiveChecks, NcclRefusesHostTensorsAndOtherGpus) {
  const c10::Device gpu1(c10::kCUDA, 1);
  const std::string m = refusal(at::zeros({4}), gpu1, "NCCL");
  EXPECT_NE(m.find("NCCL all_reduce on the tp group"), std::string::npos) << m;
  EXPECT_NE(m.find("takes tensors on cuda:1, got a tensor on cpu"), std::string::npos) << m;
  EXPECT_NE(m.find("host values go over the MPI host group"), std::string::npos) << m;
  EXPECT_NE(refusal(at::zeros({4}, at::TensorOptions().device(c10::kMeta)), gpu1, "NCCL"), "");
}

TEST(CollectiveChecks, NonContiguousAndUndefinedAreRefused) {
  const at::Tensor strided = at::zeros({4, 4}).t();
  EXPECT_NE(refusal(strided, c10::Device(c10::kCPU), "MPI").find("must be contiguous"), std::string::npos);
  EXPECT_NE(refusal(at::Tensor(), c10::Device(c10::kCPU), "MPI").find("undefined tensor"), std::string::npos);
}

}  // namespace
}  // namespace tlm
