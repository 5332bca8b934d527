// The one collective interface tlm's parallel layers talk to. Back ends: single-process
// (size 1, every op an identity), MPI (CPU tensors), NCCL (CUDA tensors). Nothing above
// dist/ knows which one it holds; layers and losses receive their group's communicator.
#pragma once

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

namespace tlm {

enum class ReduceOp { Sum, Max };

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place over the group; `tensor` must be contiguous.
  virtual void all_reduce(at::Tensor& tensor, ReduceOp op) = 0;
  // Concatenation of every rank's `tensor` along `dim`, in rank order.
  virtual at::Tensor all_gather(const at::Tensor& tensor, int64_t dim) = 0;
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;
  // "single", "mpi", "nccl" plus the group's shape, for logs and errors.
  virtual std::string name() const = 0;
};

using CommunicatorPtr = std::shared_ptr<Communicator>;

// The size-1 group: TP=1 and DP=1 run the same layer code through it.
CommunicatorPtr make_single_process_communicator();

}  // namespace tlm
