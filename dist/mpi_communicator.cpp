#include "dist/mpi_communicator.h"

#include <chrono>
#include <climits>
#include <thread>

#include <ATen/ATen.h>

#include "dist/collective_checks.h"
#include "dist/mpi_session.h"
#include "engine/common/error.h"

namespace tlm {

void check_mpi(int code, const std::string& operation) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  TLM_FAIL("MPI error in ", operation, " on rank ", mpi_world_rank(), ": ", std::string(text, length));
}

namespace {

MPI_Datatype reduce_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    default: TLM_FAIL("MPI all_reduce: unsupported dtype ", t.scalar_type());
  }
}

int count_of(int64_t n, const char* op) {
  TLM_CHECK(n <= INT_MAX, "MPI ", op, ": ", n, " elements exceed one message (", INT_MAX, ")");
  return static_cast<int>(n);
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::string group, double timeout)
      : group_(std::move(group)), timeout_(timeout) {
    check_mpi(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    if (mpi_active()) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce(at::Tensor& tensor, ReduceOp op) override {
    check_tensor(tensor, "all_reduce");
    if (tensor.numel() == 0) return;
    if (tensor.scalar_type() == at::kBFloat16 || tensor.scalar_type() == at::kHalf) {
      // MPI has no 16-bit float types: reduce in fp32, round once at the end.
      at::Tensor wide = tensor.to(at::kFloat);
      all_reduce(wide, op);
      tensor.copy_(wide);
      return;
    }
    MPI_Request request;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, tensor.data_ptr(), count_of(tensor.numel(), "all_reduce"),
                             reduce_type(tensor), op == ReduceOp::Sum ? MPI_SUM : MPI_MAX, comm_,
                             &request),
              "MPI_Iallreduce");
    wait(request, "all_reduce");
  }

  at::Tensor all_gather(const at::Tensor& tensor, int64_t dim) override {
    at::Tensor local = tensor.contiguous();
    check_tensor(local, "all_gather");
    std::vector<int64_t> shape = {size_};
    for (int64_t s : local.sizes()) shape.push_back(s);
    at::Tensor out = at::empty(shape, local.options());
    const int bytes = count_of(local.nbytes(), "all_gather");
    if (bytes > 0) {
      MPI_Request request;
      check_mpi(MPI_Iallgather(local.data_ptr(), bytes, MPI_BYTE, out.data_ptr(), bytes, MPI_BYTE,
                               comm_, &request),
                "MPI_Iallgather");
      wait(request, "all_gather");
    }
    if (local.dim() == 0) return out;
    return at::cat(out.unbind(0), dim);
  }

  void broadcast(at::Tensor& tensor, int root) override {
    check_tensor(tensor, "broadcast");
    TLM_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " is not a rank of the ",
              group_, " group of ", size_);
    if (tensor.numel() == 0) return;
    MPI_Request request;
    check_mpi(MPI_Ibcast(tensor.data_ptr(), count_of(tensor.nbytes(), "broadcast"), MPI_BYTE, root,
                         comm_, &request),
              "MPI_Ibcast");
    wait(request, "broadcast");
  }

  void barrier() override {
    MPI_Request request;
    check_mpi(MPI_Ibarrier(comm_, &request), "MPI_Ibarrier");
    wait(request, "barrier");
  }

  std::string name() const override { return str_cat("mpi ", group_, " group (", size_, " ranks)"); }

 private:
  void check_tensor(const at::Tensor& t, const char* op) const {
    check_collective_tensor(t, c10::Device(c10::kCPU), "MPI", op, group_);
  }

  // Polls the request until it completes or the deadline passes. Spins briefly (the common
  // case: peers are in step), then yields, then sleeps, so oversubscribed ranks leave the
  // cores to the ranks that are computing.
  void wait(MPI_Request& request, const char* op) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    int done = 0;
    for (int spin = 0; spin < 2000 && !done; ++spin)
      check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), std::string("MPI_Test (") + op + ")");
    int64_t polls = 0;
    while (!done) {
      if (polls++ < 1000) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(200));
      check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), std::string("MPI_Test (") + op + ")");
      if (!done && timeout_ > 0 &&
          std::chrono::duration<double>(clock::now() - start).count() > timeout_) {
        abort_collective_timeout(op, group_, size_, timeout_);
      }
    }
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::string group_;
  double timeout_;
};

}  // namespace

CommunicatorPtr make_mpi_communicator(MPI_Comm comm, const std::string& group,
                                      double timeout_seconds) {
  return std::make_shared<MpiCommunicator>(comm, group, timeout_seconds);
}

}  // namespace tlm
