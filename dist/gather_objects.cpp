#include "dist/gather_objects.h"

#include <cstring>

#include <ATen/ATen.h>

namespace tlm {

at::Tensor all_gather_rows(const at::Tensor& local, const CommunicatorPtr& group) {
  if (group->size() == 1) return local;
  at::Tensor rows = at::tensor({local.size(0)}, at::kLong).to(local.device());
  at::Tensor counts = group->all_gather(rows, 0);  // [size]
  const at::Tensor host_counts = counts.to(at::kCPU);
  const int64_t most = host_counts.max().item<int64_t>();
  std::vector<int64_t> padded_shape = local.sizes().vec();
  padded_shape[0] = most;
  at::Tensor padded = at::zeros(padded_shape, local.options());
  padded.narrow(0, 0, local.size(0)).copy_(local);
  at::Tensor all = group->all_gather(padded, 0);  // [size * most, ...]
  std::vector<at::Tensor> parts;
  for (int r = 0; r < group->size(); ++r)
    parts.push_back(all.narrow(0, r * most, host_counts[r].item<int64_t>()));
  return at::cat(parts, 0);
}

std::vector<double> all_gather_doubles(const std::vector<double>& local, const CommunicatorPtr& group) {
  at::Tensor t = at::tensor(at::ArrayRef<double>(local), at::kDouble);
  at::Tensor all = all_gather_rows(t, group).contiguous();
  return std::vector<double>(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
}

bool any_rank(bool local, Communicator& group) {
  if (group.size() == 1) return local;
  at::Tensor flag = at::tensor({static_cast<int64_t>(local ? 1 : 0)}, at::kLong);
  group.all_reduce(flag, ReduceOp::Max);
  return flag.item<int64_t>() != 0;
}

std::vector<std::string> all_gather_strings(const std::vector<std::string>& local,
                                            const CommunicatorPtr& group) {
  if (group->size() == 1) return local;
  std::vector<int64_t> lengths;
  int64_t total = 0;
  for (const std::string& s : local) {
    lengths.push_back(static_cast<int64_t>(s.size()));
    total += static_cast<int64_t>(s.size());
  }
  at::Tensor bytes = at::empty({total}, at::kByte);
  int64_t offset = 0;
  for (const std::string& s : local) {
    std::memcpy(bytes.data_ptr<uint8_t>() + offset, s.data(), s.size());
    offset += static_cast<int64_t>(s.size());
  }
  at::Tensor all_lengths = all_gather_rows(at::tensor(at::ArrayRef<int64_t>(lengths), at::kLong), group).contiguous();
  at::Tensor all_bytes = all_gather_rows(bytes, group).contiguous();
  std::vector<std::string> out;
  const char* p = reinterpret_cast<const char*>(all_bytes.data_ptr<uint8_t>());
  for (int64_t i = 0; i < all_lengths.numel(); ++i) {
    const int64_t n = all_lengths.data_ptr<int64_t>()[i];
    out.emplace_back(p, static_cast<size_t>(n));
    p += n;
  }
  return out;
}

}  // namespace tlm
