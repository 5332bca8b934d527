// Device choice of a rank (dist/device.h) and the back end `--backend auto` picks for it. The
// resolution is a pure function of the request, the node-local rank and the visible device
// count, so every GPU layout is checked here without a GPU.
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "dist/device.h"
#include "dist/process_grid.h"
#include "engine/common/error.h"
#include "tests/dist/dist_testing.h"

namespace tlm {
namespace {

using test::error_of;
using test::max_diff;

TEST(Device, ParsesTheFourForms) {
  EXPECT_EQ(parse_device("auto").kind, DeviceRequest::Kind::Auto);
  EXPECT_EQ(parse_device("cpu").kind, DeviceRequest::Kind::Cpu);
  EXPECT_EQ(parse_device("cuda").kind, DeviceRequest::Kind::Cuda);
  EXPECT_FALSE(parse_device("cuda").index.has_value());
  EXPECT_EQ(parse_device("cuda:3").index.value(), 3);
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", "cuda:123456", ""})
    EXPECT_NE(error_of([&] { parse_device(bad); }).find("--device must be auto, cpu, cuda or cuda:N"),
              std::string::npos)
        << bad;
}

TEST(Device, AutoIsTheNodeLocalGpuOrTheCpu) {
  EXPECT_EQ(resolve_device(parse_device("auto"), 0, 0), c10::Device(c10::kCPU));
  EXPECT_EQ(resolve_device(parse_device("auto"), 3, 0), c10::Device(c10::kCPU));
  EXPECT_EQ(resolve_device(parse_device("auto"), 0, 8), c10::Device(c10::kCUDA, 0));
  EXPECT_EQ(resolve_device(parse_device("auto"), 5, 8), c10::Device(c10::kCUDA, 5));
  // More ranks than GPUs on a node wrap around (the NCCL check then refuses the job).
  EXPECT_EQ(resolve_device(parse_device("cuda"), 9, 8), c10::Device(c10::kCUDA, 1));
  EXPECT_EQ(resolve_device(parse_device("cuda:2"), 0, 4), c10::Device(c10::kCUDA, 2));
  EXPECT_EQ(resolve_device(parse_device("cpu"), 1, 8), c10::Device(c10::kCPU));
}

TEST(Device, CudaWithoutAGpuOrOutOfRangeIsRefused) {
  EXPECT_NE(error_of([] { resolve_device(parse_device("cuda"), 0, 0); }).find("sees no CUDA device"),
            std::string::npos);
  const std::string m = error_of([] { resolve_device(parse_device("cuda:3"), 0, 2); });
  EXPECT_NE(m.find("sees 2 CUDA device(s), numbered 0 to 1"), std::string::npos) << m;
}

TEST(Device, AutoBackendFollowsTheDevice) {
  const c10::Device cpu(c10::kCPU), gpu(c10::kCUDA, 0);
  EXPECT_EQ(parse_backend("auto", /*under_launcher=*/false, gpu), Backend::Single);
  EXPECT_EQ(parse_backend("auto", true, cpu), Backend::Mpi);
  EXPECT_EQ(parse_backend("auto", true, gpu), Backend::Nccl);
  EXPECT_EQ(parse_backend("mpi", true, gpu), Backend::Mpi);  // refused later, with the reason
  EXPECT_NE(error_of([&] { parse_backend("gloo", true, cpu); }).find("--backend must be"), std::string::npos);
}

TEST(Device, OneProcessGridTakesTheDevice) {
  GridOptions o;
  o.device = parse_device("cpu");
  ProcessGrid g = make_process_grid(o);
  EXPECT_EQ(g.device, c10::Device(c10::kCPU));
  EXPECT_EQ(g.backend, Backend::Single);
  EXPECT_EQ(g.host_world.get(), g.world.get());
  if (cuda_device_count() == 0) {
    o.device = parse_device("cuda");
    EXPECT_NE(error_of([&] { make_process_grid(o); }).find("sees no CUDA device"), std::string::npos);
  }
}

}  // namespace
}  // namespace tlm
