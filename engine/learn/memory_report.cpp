#include "engine/learn/memory_report.h"

#include <algorithm>

#include "dist/device.h"
#include "dist/gather_objects.h"
#include "dist/memory_stats.h"
#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/model/llama_model.h"

namespace tlm {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

double trainable_bytes(const TrainableSet& trainable, AdamW* optimizer) {
  double total = 0;
  for (const at::Tensor& p : trainable.parameters()) total += static_cast<double>(p.nbytes());
  if (!optimizer) return total;
  for (const at::Tensor& m : optimizer->exp_avg()) total += static_cast<double>(m.nbytes());
  for (const at::Tensor& v : optimizer->exp_avg_sq()) total += static_cast<double>(v.nbytes());
  return total;
}

std::string joined(const std::vector<double>& values, int digits) {
  std::string out;
  for (double v : values) out += (out.empty() ? "" : "/") + fixed(v, digits);
  return out;
}

}  // namespace

MemoryMeter::MemoryMeter(const c10::Device& device) : device_(device) {
  reset_device_peak(device_);
  base_allocated_ = device_memory(device_).allocated;
  reset_host_peak_resident();
  base_resident_ = host_resident_bytes();
}

nlohmann::json MemoryMeter::report(const LlamaModel& model, const TrainableSet& set, AdamW* optimizer,
                                   const CommunicatorPtr& host_world) const {
  const double weights = static_cast<double>(model.weight_bytes());
  const double trainable = trainable_bytes(set, optimizer);
  const bool on_host = device_.is_cpu();
  const double peak_total = on_host ? host_peak_resident_bytes() - base_resident_
                                    : device_memory(device_).peak_allocated - base_allocated_;
  const double activations = std::max(0.0, peak_total - trainable);
  const double rss = host_resident_bytes();
  const std::vector<double> all = all_gather_doubles(
      {weights / kMiB, trainable / kMiB, activations / kMiB, rss / kMiB}, host_world);
  std::vector<double> w, t, a, r;
  nlohmann::json per_rank = nlohmann::json::array();
  for (size_t i = 0; i + 3 < all.size(); i += 4) {
    w.push_back(all[i]);
    t.push_back(all[i + 1]);
    a.push_back(all[i + 2]);
    r.push_back(all[i + 3]);
    per_rank.push_back({{"rank", i / 4}, {"weights_mib", all[i]}, {"trainable_mib", all[i + 1]},
                        {"peak_activations_mib", all[i + 2]}, {"host_rss_mib", all[i + 3]}});
  }
  const std::string source = on_host ? "peak resident set" : "caching allocator peak";
  log_info(str_cat("memory per rank on ", describe_device(device_), " (MiB): weights ", joined(w, 0),
                   (set.kind() == TrainableKind::Lora ? " | LoRA" : " | norm weights"), (optimizer ? " + AdamW " : " "), joined(t, 2), " | peak activations ", joined(a, 0), " (", source,
                   ") | host RSS ", joined(r, 0)));
  return {{"device", device_.str()}, {"dtype", dtype_name(model.dtype())},
          {"peak_activations_from", source}, {"per_rank", per_rank}};
}

}  // namespace tlm
