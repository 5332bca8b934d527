// Writes a safetensors file (the format HF PEFT and transformers load): header JSON padded
// with spaces to a multiple of 8 bytes, then the tensors' bytes back to back.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/formats/safetensors_file.h"

namespace tlm {

struct SafetensorsEntry {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // shape-product * dtype-size bytes, row-major
};

// Throws naming `path` when it cannot be written. Writes to `path` directly: callers that
// need atomicity write a temporary name and rename.
void write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace tlm
