// The single-process communicator and the four TP region operations on it: every op is an
// identity in the forward and in the backward pass (a size-1 group has nothing to reduce,
// gather or scatter).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dist/communicator.h"
#include "dist/mappings.h"

namespace tlm {
namespace {

TEST(SingleProcessCommunicator, IsASizeOneGroup) {
  CommunicatorPtr comm = make_single_process_communicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->name(), "single");

  at::Tensor t = at::arange(6, at::kFloat).view({2, 3});
  const at::Tensor before = t.clone();
  comm->all_reduce(t, ReduceOp::Sum);
  EXPECT_TRUE(at::equal(t, before));
  comm->all_reduce(t, ReduceOp::Max);
  EXPECT_TRUE(at::equal(t, before));
  comm->broadcast(t, 0);
  EXPECT_TRUE(at::equal(t, before));
  comm->barrier();
  for (int64_t dim : {0, 1, -1}) EXPECT_TRUE(at::equal(comm->all_gather(t, dim), before)) << dim;
}

using RegionOp = at::Tensor (*)(const at::Tensor&, const CommunicatorPtr&);

struct NamedOp {
  const char* name;
  RegionOp op;
};

const NamedOp kOps[] = {{"copy_to_tp_region", &copy_to_tp_region},
                        {"reduce_from_tp_region", &reduce_from_tp_region},
                        {"scatter_to_tp_region", &scatter_to_tp_region},
                        {"gather_from_tp_region", &gather_from_tp_region}};

TEST(RegionOps, IdentityForwardAndBackward) {
  CommunicatorPtr comm = make_single_process_communicator();
  for (const NamedOp& o : kOps) {
    at::Tensor x = at::randn({3, 4, 6}).set_requires_grad(true);
    at::Tensor y = o.op(x, comm);
    EXPECT_TRUE(at::equal(y, x)) << o.name;
    EXPECT_EQ(y.sizes(), x.sizes()) << o.name;
    // The header promises the input itself back on a size-1 group (no autograd node).
    EXPECT_TRUE(y.is_same(x)) << o.name;

    at::Tensor upstream = at::randn({3, 4, 6});
    (y * upstream).sum().backward();
    ASSERT_TRUE(x.grad().defined()) << o.name;
    EXPECT_TRUE(at::equal(x.grad(), upstream)) << o.name;
  }
}

TEST(RegionOps, GradientsFlowThroughAComposedGraph) {
  // copy -> linear -> gather, as a column-parallel layer uses them: the gradient must equal
  // the one of the plain linear.
  CommunicatorPtr comm = make_single_process_communicator();
  at::Tensor x = at::randn({5, 4}).set_requires_grad(true);
  at::Tensor w = at::randn({3, 4});
  at::Tensor y = gather_from_tp_region(at::linear(copy_to_tp_region(x, comm), w), comm);
  y = reduce_from_tp_region(scatter_to_tp_region(y, comm), comm);
  at::Tensor g = at::randn({5, 3});
  (y * g).sum().backward();

  at::Tensor x_ref = x.detach().clone().set_requires_grad(true);
  (at::linear(x_ref, w) * g).sum().backward();
  EXPECT_TRUE(at::allclose(x.grad(), x_ref.grad(), 0.0, 1e-6));
}

TEST(RegionOps, NonContiguousAndIntegerInputs) {
  CommunicatorPtr comm = make_single_process_communicator();
  at::Tensor t = at::arange(12, at::kLong).view({3, 4}).t();  // non-contiguous
  for (const NamedOp& o : kOps) EXPECT_TRUE(at::equal(o.op(t, comm), t)) << o.name;
}

}  // namespace
}  // namespace tlm
