// Memory figures of this process, for the per-rank memory report: the host resident set
// (and its peak since the last reset) and, on an accelerator, its caching allocator's
// statistics. Read where they are needed; nothing is polled.
#pragma once

#include <c10/core/Device.h>

namespace tlm {

// VmRSS / VmHWM of this process in bytes (0 where /proc is not there).
double host_resident_bytes();
double host_peak_resident_bytes();
// Restarts the VmHWM peak at the current resident set (Linux: /proc/self/clear_refs "5").
// Returns false where the kernel does not support it (the peak then covers the whole run).
bool reset_host_peak_resident();

struct DeviceMemory {
  double allocated = 0;       // bytes held by live tensors now
  double peak_allocated = 0;  // most bytes held at once since the last reset
  double reserved = 0;        // bytes the caching allocator holds from the driver
};

// The caching allocator's figures for `device`; all zero for the CPU and meta devices.
DeviceMemory device_memory(const c10::Device& device);
void reset_device_peak(const c10::Device& device);

}  // namespace tlm
