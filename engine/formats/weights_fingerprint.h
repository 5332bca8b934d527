// A fingerprint of a model's weight bytes, cheap enough to take at every load: each tensor's
// name, stored type and shape, and its stored bytes whole when they are at most 3 x 64 KiB,
// else three 64 KiB samples (start, middle, end), hashed with FNV-1a 64 in file order. A few
// MiB are read for any model, so a checkpoint can refuse a base whose weights changed while
// its config stayed the same (a fine-tuned or requantised file at the same path). Torch-free.
#pragma once

#include <cstdint>
#include <string>

namespace tlm {

class WeightsFingerprint {
 public:
  // One tensor: `type` names the stored element or block type ("F32", "Q4_1", ...).
  void add_tensor(const std::string& name, const std::string& type, const int64_t* shape, size_t dims,
                  const uint8_t* bytes, uint64_t nbytes);
  // "w1:" and 16 hex digits, with the number of tensors seen: "w1:0123...cdef/272".
  std::string hex() const;

 private:
  void add(const void* data, size_t n);
  uint64_t hash_ = 1469598103934665603ULL;
  uint64_t tensors_ = 0;
};

class GgufFile;
class SafetensorsModel;
std::string weights_fingerprint(const GgufFile& gguf);
std::string weights_fingerprint(const SafetensorsModel& model);

}  // namespace tlm
