#include "dist/nccl_communicator.h"

#include <chrono>
#include <thread>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "dist/collective_checks.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_session.h"
#include "engine/common/error.h"

namespace tlm {

bool nccl_compiled_in() { return true; }

std::string gpu_identity(const c10::Device& device) {
  char bus[64] = {0};
  const cudaError_t code = cudaDeviceGetPCIBusId(bus, sizeof bus, device.index());
  TLM_CHECK(code == cudaSuccess, "CUDA error in cudaDeviceGetPCIBusId for ", device, " on rank ", mpi_world_rank(),
            ": ", cudaGetErrorString(code));
  return bus;
}

namespace {

void check_nccl(ncclResult_t code, const std::string& operation) {
  TLM_CHECK(code == ncclSuccess, "NCCL error in ", operation, " on rank ", mpi_world_rank(), ": ",
            ncclGetErrorString(code));
}

void check_cuda(cudaError_t code, const std::string& operation) {
  TLM_CHECK(code == cudaSuccess, "CUDA error in ", operation, " on rank ", mpi_world_rank(), ": ",
            cudaGetErrorString(code));
}

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kBFloat16: return ncclBfloat16;
    case at::kHalf: return ncclFloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default: TLM_FAIL("NCCL: unsupported dtype ", t.scalar_type());
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm comm, std::string group, const c10::Device& device, double timeout)
      : group_(std::move(group)), timeout_(timeout) {
    MPI_Comm_rank(comm, &rank_);
    MPI_Comm_size(comm, &size_);
    TLM_CHECK(device.is_cuda() && c10::cuda::device_count() > 0, "--backend nccl needs a CUDA GPU, but rank ",
              mpi_world_rank(), " runs on ", device, " and sees ", static_cast<int>(c10::cuda::device_count()),
              " CUDA devices; use --backend mpi to run on CPUs");
    device_ = device.index();
    c10::cuda::set_device(device_);
    ncclUniqueId id;
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    check_mpi(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm), "MPI_Bcast (NCCL unique id)");
    // Non-blocking init so that a missing peer hits the timeout instead of hanging.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    enqueued(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config), "ncclCommInitRank");
  }
  ~NcclCommunicator() override {
    if (!comm_) return;
    // A non-blocking communicator is finalised (its pending work flushed) before it is destroyed.
    ncclResult_t state = ncclCommFinalize(comm_);
    while (state == ncclInProgress) ncclCommGetAsyncError(comm_, &state);
    ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce(at::Tensor& tensor, ReduceOp op) override {
    check_tensor(tensor, "all_reduce");
    if (tensor.numel() == 0) return;
    auto stream = c10::cuda::getCurrentCUDAStream(device_);
    enqueued(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), nccl_type(tensor),
                             op == ReduceOp::Sum ? ncclSum : ncclMax, comm_, stream.stream()),
               "ncclAllReduce");
    wait_stream(stream.stream(), "all_reduce");
  }

  at::Tensor all_gather(const at::Tensor& tensor, int64_t dim) override {
    at::Tensor local = tensor.contiguous();
    check_tensor(local, "all_gather");
    std::vector<int64_t> shape = {size_};
    for (int64_t s : local.sizes()) shape.push_back(s);
    at::Tensor out = at::empty(shape, local.options());
    if (local.numel() > 0) {
      auto stream = c10::cuda::getCurrentCUDAStream(device_);
      enqueued(ncclAllGather(local.data_ptr(), out.data_ptr(), local.numel(), nccl_type(local),
                               comm_, stream.stream()),
                 "ncclAllGather");
      wait_stream(stream.stream(), "all_gather");
    }
    if (local.dim() == 0) return out;
    return at::cat(out.unbind(0), dim);
  }

  void broadcast(at::Tensor& tensor, int root) override {
    check_tensor(tensor, "broadcast");
    if (tensor.numel() == 0) return;
    auto stream = c10::cuda::getCurrentCUDAStream(device_);
    enqueued(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), nccl_type(tensor),
                             root, comm_, stream.stream()),
               "ncclBroadcast");
    wait_stream(stream.stream(), "broadcast");
  }

  void barrier() override {
    at::Tensor one = at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device_));
    all_reduce(one, ReduceOp::Sum);
  }

  std::string name() const override { return str_cat("nccl ", group_, " group (", size_, " ranks)"); }

 private:
  void check_tensor(const at::Tensor& t, const char* op) const {
    check_collective_tensor(t, c10::Device(c10::kCUDA, device_), "NCCL", op, group_);
  }

  void fail_timeout(const char* op) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
    abort_collective_timeout(op, group_, size_, timeout_);
  }

  bool expired(std::chrono::steady_clock::time_point start) const {
    return timeout_ > 0 &&
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_;
  }

  // A call on the non-blocking communicator returns ncclInProgress while NCCL is still setting
  // it up or enqueueing: wait for that (under the timeout) before anything else touches it.
  void enqueued(ncclResult_t code, const char* op) {
    if (code == ncclInProgress) wait_comm(op);
    else check_nccl(code, op);
  }

  // Waits for the communicator's pending (non-blocking) work, checking its async error.
  void wait_comm(const char* op) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t state = ncclInProgress;
      check_nccl(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError");
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) check_nccl(state, op);
      if (expired(start)) fail_timeout(op);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  // Waits until the stream has run the collective, so that a lost peer is seen within the
  // timeout (NCCL would otherwise spin on the GPU forever).
  void wait_stream(cudaStream_t stream, const char* op) {
    cudaEvent_t done;
    check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(done, stream), "cudaEventRecord");
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) check_cuda(q, op);
      ncclResult_t state = ncclSuccess;
      check_nccl(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError");
      if (state != ncclSuccess && state != ncclInProgress) check_nccl(state, op);
      if (expired(start)) fail_timeout(op);
      std::this_thread::yield();
    }
    cudaEventDestroy(done);
  }

  ncclComm_t comm_ = nullptr;
  int rank_ = 0;
  int size_ = 1;
  c10::DeviceIndex device_ = 0;
  std::string group_;
  double timeout_;
};

}  // namespace

CommunicatorPtr make_nccl_communicator(MPI_Comm comm, const std::string& group,
                                       const c10::Device& device, double timeout_seconds) {
  return std::make_shared<NcclCommunicator>(comm, group, device, timeout_seconds);
}

}  // namespace tlm
