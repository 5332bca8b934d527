#include "engine/formats/gguf_file.h"

#include "engine/common/error.h"

namespace tlm {

namespace {

const char* variant_type_name(const GgufValue& v) {
  switch (v.index()) {
    case 0: return "bool";
    case 1: return "int";
    case 2: return "float";
    case 3: return "string";
    case 4: return "string array";
    case 5: return "int array";
    case 6: return "float array";
    default: return "unknown";
  }
}

template <typename T>
const char* wanted_name();
template <> const char* wanted_name<bool>() { return "bool"; }
template <> const char* wanted_name<int64_t>() { return "int"; }
template <> const char* wanted_name<double>() { return "float"; }
template <> const char* wanted_name<std::string>() { return "string"; }
template <> const char* wanted_name<std::vector<std::string>>() { return "string array"; }
template <> const char* wanted_name<std::vector<int64_t>>() { return "int array"; }
template <> const char* wanted_name<std::vector<double>>() { return "float array"; }

// nullptr when the key is absent; throws when it holds another type.
template <typename T>
const T* lookup(const std::string& path, const std::map<std::string, GgufValue>& metadata,
                const std::string& key) {
  auto it = metadata.find(key);
  if (it == metadata.end()) {
    return nullptr;
  }
  const T* v = std::get_if<T>(&it->second);
  TLM_CHECK(v != nullptr, path, ": metadata key '", key, "' has type ",
            variant_type_name(it->second), ", expected ", wanted_name<T>());
  return v;
}

template <typename T>
const T& require(const std::string& path, const std::map<std::string, GgufValue>& metadata,
                 const std::string& key) {
  const T* v = lookup<T>(path, metadata, key);
  TLM_CHECK(v != nullptr, path, ": metadata key '", key, "' missing");
  return *v;
}

}  // namespace

GgufFile::GgufFile(const std::string& path)
    : file_(path), header_(parse_gguf(file_.data(), file_.size(), path)) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) {
    index_[header_.tensors[i].name] = i;
  }
}

bool GgufFile::has(const std::string& key) const { return header_.metadata.count(key) != 0; }

std::string GgufFile::get_string(const std::string& key) const {
  return require<std::string>(path(), header_.metadata, key);
}

int64_t GgufFile::get_int(const std::string& key) const {
  return require<int64_t>(path(), header_.metadata, key);
}

double GgufFile::get_float(const std::string& key) const {
  auto it = header_.metadata.find(key);
  if (it != header_.metadata.end() && std::holds_alternative<int64_t>(it->second)) {
    return static_cast<double>(std::get<int64_t>(it->second));
  }
  return require<double>(path(), header_.metadata, key);
}

bool GgufFile::get_bool(const std::string& key) const {
  return require<bool>(path(), header_.metadata, key);
}

const std::vector<std::string>& GgufFile::get_string_array(const std::string& key) const {
  return require<std::vector<std::string>>(path(), header_.metadata, key);
}

const std::vector<int64_t>& GgufFile::get_int_array(const std::string& key) const {
  return require<std::vector<int64_t>>(path(), header_.metadata, key);
}

const std::vector<double>& GgufFile::get_float_array(const std::string& key) const {
  return require<std::vector<double>>(path(), header_.metadata, key);
}

std::string GgufFile::get_string_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

int64_t GgufFile::get_int_or(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}

double GgufFile::get_float_or(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}

bool GgufFile::get_bool_or(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

const GgufTensor* GgufFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

const GgufTensor& GgufFile::tensor(const std::string& name) const {
  const GgufTensor* t = find(name);
  TLM_CHECK(t != nullptr, path(), ": tensor '", name, "' not found");
  return *t;
}

const uint8_t* GgufFile::data(const GgufTensor& tensor) const {
  TLM_CHECK(tensor.offset <= file_.size() && tensor.nbytes <= file_.size() - tensor.offset,
            path(), ": tensor '", tensor.name, "' does not lie inside this file");
  return file_.data() + tensor.offset;
}

void GgufFile::dequantize_rows(const GgufTensor& tensor, int64_t row_begin, int64_t row_end,
                               float* dst) const {
  TLM_CHECK(ggml_type_supported(tensor.type), path(), ": tensor '", tensor.name, "' has type ",
            ggml_type_name(tensor.type), ", which cannot be dequantised");
  TLM_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= tensor.rows(), path(),
            ": tensor '", tensor.name, "': row range [", row_begin, ", ", row_end,
            ") outside its ", tensor.rows(), " rows");
  const size_t row_bytes = ggml_row_bytes(tensor.type, tensor.row_size());
  const uint8_t* src = data(tensor) + static_cast<size_t>(row_begin) * row_bytes;
  dequantize_ggml(tensor.type, src, dst, (row_end - row_begin) * tensor.row_size());
}

}  // namespace tlm
