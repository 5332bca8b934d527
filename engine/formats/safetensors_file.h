// HF safetensors: 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
// Every size and offset is validated against the file before any tensor byte is touched.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/formats/mapped_file.h"

namespace tlm {

enum class StDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

std::string st_dtype_name(StDtype dtype);
size_t st_dtype_bytes(StDtype dtype);

struct SafetensorsTensor {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // absolute byte offset in the file
  uint64_t end = 0;    // one past the last byte
};

struct SafetensorsHeader {
  std::vector<SafetensorsTensor> tensors;  // in file order
  std::map<std::string, std::string> metadata;
};

// Parses and validates a whole safetensors file image (header + data). Throws tlm::Error
// naming `path` (and the tensor) for: short file, header length past the end, malformed
// JSON, unknown dtype, shape/offset inconsistency, offsets outside the data section,
// overlapping tensors. Never reads outside [data, data + size): the fuzz target's entry.
SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& path);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const std::vector<SafetensorsTensor>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // nullptr when absent.
  const SafetensorsTensor* find(const std::string& name) const;
  // Start of the tensor's bytes inside the mapping.
  const uint8_t* data(const SafetensorsTensor& tensor) const;

 private:
  MappedFile file_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

// A model's weights as HF saves them in a directory: `model.safetensors`, or shards listed
// by `model.safetensors.index.json` ({"weight_map": {tensor: shard file}}).
class SafetensorsModel {
 public:
  // Throws naming the directory when neither file exists, or naming the index file and
  // shard when a listed shard is missing or lacks the tensors the index says it holds.
  explicit SafetensorsModel(const std::string& directory);

  std::vector<std::string> tensor_names() const;
  // Throws "<directory>: tensor '<name>' not found" when absent.
  const SafetensorsTensor& tensor(const std::string& name) const;
  const SafetensorsFile& file_of(const std::string& name) const;
  bool has(const std::string& name) const;

 private:
  std::string directory_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> file_of_tensor_;
};

}  // namespace tlm
