// Gathers of things that are not equal-shaped tensors: per-rank blocks of different lengths
// (a DP replica's share of a stream chunk) and strings (its generated answers). Results are
// in rank order on every rank, which is stream order for balanced_range blocks. Doubles and
// strings are host values: pass a host (MPI) group. Rows travel on their tensor's device.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dist/communicator.h"

namespace tlm {

// Concatenation along dim 0 of every rank's `local` (same trailing shape and dtype, any
// number of rows, zero included).
at::Tensor all_gather_rows(const at::Tensor& local, const CommunicatorPtr& group);

std::vector<double> all_gather_doubles(const std::vector<double>& local, const CommunicatorPtr& group);
std::vector<std::string> all_gather_strings(const std::vector<std::string>& local,
                                            const CommunicatorPtr& group);

// True on every rank of `group` when `local` is true on any of them (a host value: pass a host
// group; no collective for a group of one).
bool any_rank(bool local, Communicator& group);

}  // namespace tlm
