#include "engine/formats/safetensors_writer.h"

#include <cstring>

#include <nlohmann/json.hpp>

#include "engine/common/atomic_file.h"
#include "engine/common/error.h"

namespace tlm {

void write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<uint64_t> sizes;
  for (const SafetensorsEntry& t : tensors) {
    uint64_t n = st_dtype_bytes(t.dtype);
    for (int64_t d : t.shape) {
      TLM_CHECK(d >= 0, path, ": tensor '", t.name, "' has a negative dimension");
      n *= static_cast<uint64_t>(d);
    }
    header[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape},
                      {"data_offsets", {offset, offset + n}}};
    sizes.push_back(n);
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  AtomicFile out(path);  // whole or absent: a full disk never leaves a truncated file
  const uint64_t len = text.size();
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>((len >> (8 * i)) & 0xff);
  out.write(len_bytes, 8);
  out.write(text);
  for (size_t i = 0; i < tensors.size(); ++i) out.write(tensors[i].data, sizes[i]);
  out.commit();
}

}  // namespace tlm
