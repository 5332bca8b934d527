// The MPI back end under mpirun (-np 2 and -np 4): closed-form results of every collective
// for every dtype it takes, the process grid's TP and DP groups, the variable-length
// gathers, and the layout errors.
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dist/gather_objects.h"
#include "dist/process_grid.h"
#include "engine/common/error.h"
#include "tests/dist/mpi_test_main.h"

namespace tlm {
namespace {

const std::vector<at::ScalarType> kReduceTypes = {at::kFloat, at::kBFloat16, at::kDouble, at::kLong,
                                                  at::kInt, at::kByte};

TEST(MpiCommunicator, AllReduceSumEveryDtype) {
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  const int n = g.world->size(), r = g.world->rank();
  for (at::ScalarType t : kReduceTypes) {
    // rank r holds (r + 1) * [0, 1, ..., 9]: the sum is n(n+1)/2 * [0..9].
    at::Tensor x = (at::arange(10, at::kLong) * (r + 1)).to(t);
    g.world->all_reduce(x, ReduceOp::Sum);
    at::Tensor expected = (at::arange(10, at::kLong) * (n * (n + 1) / 2)).to(t);
    EXPECT_TRUE(at::equal(x, expected)) << t << ": " << x;
  }
}

TEST(MpiCommunicator, AllReduceMaxEveryDtype) {
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  const int n = g.world->size(), r = g.world->rank();
  for (at::ScalarType t : kReduceTypes) {
    // element i is r on even i and (n - 1 - r) on odd i: the max is n - 1 everywhere.
    at::Tensor idx = at::arange(8, at::kLong);
    at::Tensor x = at::where(idx.remainder(2) == 0, at::full({8}, r, at::kLong),
                             at::full({8}, n - 1 - r, at::kLong)).to(t);
    g.world->all_reduce(x, ReduceOp::Max);
    EXPECT_TRUE(at::equal(x, at::full({8}, n - 1, at::kLong).to(t))) << t << ": " << x;
  }
  // fp32 values that are not integers survive exactly (no conversion on the way).
  at::Tensor f = at::full({3}, 0.1f * static_cast<float>(r + 1));
  g.world->all_reduce(f, ReduceOp::Max);
  EXPECT_TRUE(at::equal(f, at::full({3}, 0.1f * static_cast<float>(n))));
}

TEST(MpiCommunicator, AllGatherAlongFirstAndLastDim) {
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  const int n = g.world->size(), r = g.world->rank();
  for (at::ScalarType t : {at::kFloat, at::kBFloat16, at::kDouble, at::kLong}) {
    at::Tensor local = at::full({2, 3}, r, at::kLong).to(t);
    at::Tensor rows = g.world->all_gather(local, 0);
    at::Tensor cols = g.world->all_gather(local, -1);
    ASSERT_EQ(rows.sizes(), at::IntArrayRef({2 * n, 3})) << t;
    ASSERT_EQ(cols.sizes(), at::IntArrayRef({2, 3 * n})) << t;
    for (int k = 0; k < n; ++k) {
      EXPECT_TRUE(at::equal(rows.narrow(0, 2 * k, 2), at::full({2, 3}, k, at::kLong).to(t))) << t;
      EXPECT_TRUE(at::equal(cols.narrow(1, 3 * k, 3), at::full({2, 3}, k, at::kLong).to(t))) << t;
    }
  }
}

TEST(MpiCommunicator, BroadcastFromEveryRoot) {
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  const int n = g.world->size(), r = g.world->rank();
  for (int root = 0; root < n; ++root) {
    for (at::ScalarType t : {at::kFloat, at::kBFloat16, at::kLong}) {
      at::Tensor x = r == root ? (at::arange(5, at::kLong) + root).to(t) : at::zeros({5}, t);
      g.world->broadcast(x, root);
      EXPECT_TRUE(at::equal(x, (at::arange(5, at::kLong) + root).to(t))) << "root " << root << " " << t;
    }
  }
  g.world->barrier();
  at::Tensor x = at::zeros({1});
  std::string message;
  try {
    g.world->broadcast(x, n);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("root " + std::to_string(n) + " is not a rank"), std::string::npos) << message;
}

TEST(MpiCommunicator, RefusesTensorsOutsideHostMemory) {
  // Checked before any MPI call, on every rank alike, so no rank is left waiting. (A meta
  // tensor stands in for a CUDA one here; dist.nccl_communicator repeats it with CUDA.)
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  at::Tensor off_host = at::zeros({4}, at::TensorOptions().device(c10::kMeta));
  std::string message;
  try {
    g.world->all_reduce(off_host, ReduceOp::Sum);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("MPI all_reduce on the world group: the MPI back end takes CPU tensors, got a tensor on meta"),
            std::string::npos) << message;
  message.clear();
  try {
    g.world->all_gather(off_host, 0);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("MPI all_gather"), std::string::npos) << message;
  g.world->barrier();  // the group still works afterwards
}

TEST(ProcessGrid, GroupsFollowTheLayout) {
  const int n = test::world_size();
  for (int tp : {1, 2, n}) {
    if (n % tp != 0) continue;
    const int dp = n / tp;
    ProcessGrid g = test::mpi_grid(tp, dp);
    EXPECT_EQ(g.tp_rank, g.world_rank % tp);
    EXPECT_EQ(g.dp_rank, g.world_rank / tp);
    EXPECT_EQ(g.tp->size(), tp);
    EXPECT_EQ(g.dp->size(), dp);
    EXPECT_EQ(g.tp->rank(), g.tp_rank);
    EXPECT_EQ(g.dp->rank(), g.dp_rank);
    // The world ranks in my TP group are dp_rank * tp + [0, tp); in my DP group tp_rank + k * tp.
    at::Tensor me = at::tensor({static_cast<int64_t>(g.world_rank)}, at::kLong);
    at::Tensor tp_members = g.tp->all_gather(me, 0);
    at::Tensor dp_members = g.dp->all_gather(me, 0);
    EXPECT_TRUE(at::equal(tp_members, at::arange(tp, at::kLong) + g.dp_rank * tp));
    EXPECT_TRUE(at::equal(dp_members, at::arange(dp, at::kLong) * tp + g.tp_rank));
  }
}

TEST(ProcessGrid, LayoutThatDoesNotMatchTheRanksIsRefused) {
  const int n = test::world_size();
  GridOptions o;
  o.backend = "mpi";
  o.device = parse_device("cpu");
  o.tp = n;
  o.dp = 2;
  std::string message;
  try {
    make_process_grid(o);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find(std::to_string(n) + " x --dp-size 2 = " + std::to_string(2 * n)), std::string::npos) << message;
  EXPECT_NE(message.find("started " + std::to_string(n)), std::string::npos) << message;
  o.dp = 1;
  o.backend = "single";
  message.clear();
  try {
    make_process_grid(o);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("single-process back end cannot run on " + std::to_string(n)), std::string::npos)
      << message;
}

TEST(GatherObjects, RowsAndStringsOfDifferentLengthsInRankOrder) {
  ProcessGrid g = test::mpi_grid(test::world_size(), 1);
  const int n = g.world->size(), r = g.world->rank();
  // rank r contributes r rows (rank 0 none) of value r.
  at::Tensor rows = all_gather_rows(at::full({r, 2}, static_cast<float>(r)), g.world);
  std::vector<at::Tensor> expected;
  for (int k = 0; k < n; ++k) expected.push_back(at::full({k, 2}, static_cast<float>(k)));
  EXPECT_TRUE(at::equal(rows, at::cat(expected, 0)));

  std::vector<std::string> mine, want;
  for (int k = 0; k < n; ++k)
    for (int j = 0; j < k; ++j) {
      std::string s = "rank " + std::to_string(k) + " / answer " + std::to_string(j) + " \xc3\xa9\xe2\x82\xac";
      if (j == 0) s += std::string(1, '\0') + "after a NUL";
      if (k == r) mine.push_back(s);
      want.push_back(s);
    }
  if (r == 0) mine.push_back("");  // an empty answer survives too
  std::vector<std::string> got = all_gather_strings(mine, g.world);
  want.insert(want.begin(), "");
  EXPECT_EQ(got, want);

  std::vector<double> d = all_gather_doubles(std::vector<double>(r, 0.5 + r), g.world);
  ASSERT_EQ(d.size(), static_cast<size_t>(n * (n - 1) / 2));
}

}  // namespace
}  // namespace tlm
