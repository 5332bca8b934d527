// GGUF (llama.cpp's model format), versions 2 and 3: magic, version, tensor count, metadata
// key/values, tensor infos (name, dims with ne[0] innermost, type, offset), then tensor
// data aligned to `general.alignment` (32 when absent).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "engine/formats/ggml_types.h"
#include "engine/formats/mapped_file.h"

namespace tlm {

// A metadata value. Integers of every width widen to int64_t (uint64 values above INT64_MAX
// are rejected), floats to double; arrays of strings and of numbers are kept as vectors.
using GgufValue = std::variant<bool, int64_t, double, std::string, std::vector<std::string>,
                               std::vector<int64_t>, std::vector<double>>;

struct GgufTensor {
  std::string name;
  std::vector<int64_t> ne;  // ne[0] is the contiguous dimension
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;      // absolute byte offset in the file
  uint64_t nbytes = 0;
  int64_t rows() const;     // product of ne[1..]
  int64_t row_size() const { return ne.empty() ? 1 : ne[0]; }
  // Row-major torch shape: reversed ne.
  std::vector<int64_t> torch_shape() const;
};

struct GgufHeader {
  uint32_t version = 0;
  uint64_t alignment = 32;
  std::map<std::string, GgufValue> metadata;
  std::vector<GgufTensor> tensors;  // in file order
};

// Parses and validates a whole GGUF image. Throws tlm::Error naming `path` (and the key or
// tensor) for: bad magic, unsupported version, truncation anywhere, absurd counts or
// string lengths, unknown value or tensor types, dims whose product overflows, a row not
// a whole number of blocks, tensor data outside the file. Never reads outside the buffer:
// the fuzz target's entry.
GgufHeader parse_gguf(const uint8_t* data, size_t size, const std::string& path);

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  uint32_t version() const { return header_.version; }
  const std::map<std::string, GgufValue>& metadata() const { return header_.metadata; }
  const std::vector<GgufTensor>& tensors() const { return header_.tensors; }

  bool has(const std::string& key) const;
  // Typed getters throw "<path>: metadata key '<key>' missing" / "... has type X, expected Y".
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // accepts integer values too
  bool get_bool(const std::string& key) const;
  const std::vector<std::string>& get_string_array(const std::string& key) const;
  const std::vector<int64_t>& get_int_array(const std::string& key) const;
  const std::vector<double>& get_float_array(const std::string& key) const;
  // Optional forms: the fallback when the key is absent (still throw on a wrong type).
  std::string get_string_or(const std::string& key, const std::string& fallback) const;
  int64_t get_int_or(const std::string& key, int64_t fallback) const;
  double get_float_or(const std::string& key, double fallback) const;
  bool get_bool_or(const std::string& key, bool fallback) const;

  // nullptr when absent.
  const GgufTensor* find(const std::string& name) const;
  // Throws "<path>: tensor '<name>' not found".
  const GgufTensor& tensor(const std::string& name) const;
  const uint8_t* data(const GgufTensor& tensor) const;
  // Dequantises rows [row_begin, row_end) of the tensor viewed as [rows(), ne[0]] into
  // dst (row_end - row_begin) * ne[0] floats. Throws naming the tensor for unsupported types.
  void dequantize_rows(const GgufTensor& tensor, int64_t row_begin, int64_t row_end,
                       float* dst) const;

 private:
  MappedFile file_;
  GgufHeader header_;
  std::map<std::string, size_t> index_;
};

}  // namespace tlm
