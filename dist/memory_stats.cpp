#include "dist/memory_stats.h"

#include <fstream>
#include <string>

#include <ATen/DeviceAccelerator.h>

namespace tlm {
namespace {

double status_field_bytes(const char* field) {
  std::ifstream status("/proc/self/status");
  const std::string key = std::string(field) + ":";
  for (std::string line; std::getline(status, line);)
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size())) * 1024.0;
  return 0.0;
}

bool has_allocator(const c10::Device& device) { return !device.is_cpu() && !device.is_meta(); }

}  // namespace

double host_resident_bytes() { return status_field_bytes("VmRSS"); }
double host_peak_resident_bytes() { return status_field_bytes("VmHWM"); }

bool reset_host_peak_resident() {
  std::ofstream clear("/proc/self/clear_refs");
  if (!clear.good()) return false;
  clear << "5";
  clear.flush();
  return clear.good();
}

DeviceMemory device_memory(const c10::Device& device) {
  DeviceMemory m;
  if (!has_allocator(device)) return m;
  const auto stats = at::accelerator::getDeviceStats(device.index());
  const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  m.allocated = static_cast<double>(stats.allocated_bytes[all].current);
  m.peak_allocated = static_cast<double>(stats.allocated_bytes[all].peak);
  m.reserved = static_cast<double>(stats.reserved_bytes[all].current);
  return m;
}

void reset_device_peak(const c10::Device& device) {
  if (has_allocator(device)) at::accelerator::resetPeakStats(device.index());
}

}  // namespace tlm
