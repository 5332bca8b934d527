// parse_gguf: the GGUF header reader. Every count and length read from the file is checked
// against the bytes that remain before anything is allocated for it, so a hostile count
// (2^60 tensors, a 2^63-byte string) fails at once instead of exhausting memory.
#include <algorithm>
#include <cstring>
#include <set>

#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF is read as little-endian");

namespace tlm {

namespace {

enum GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// Encoded size of a scalar value type; 0 for strings and arrays (variable), -1 for unknown.
int scalar_size(uint32_t type) {
  switch (type) {
    case kUint8: case kInt8: case kBool: return 1;
    case kUint16: case kInt16: return 2;
    case kUint32: case kInt32: case kFloat32: return 4;
    case kUint64: case kInt64: case kFloat64: return 8;
    case kString: case kArray: return 0;
    default: return -1;
  }
}

const char* value_type_name(uint32_t type) {
  switch (type) {
    case kUint8: return "uint8";
    case kInt8: return "int8";
    case kUint16: return "uint16";
    case kInt16: return "int16";
    case kUint32: return "uint32";
    case kInt32: return "int32";
    case kFloat32: return "float32";
    case kBool: return "bool";
    case kString: return "string";
    case kArray: return "array";
    case kUint64: return "uint64";
    case kInt64: return "int64";
    case kFloat64: return "float64";
    default: return "unknown";
  }
}

class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  // `what` names the field being read, for the truncation message.
  void need(uint64_t n, const std::string& what) const {
    TLM_CHECK(n <= remaining(), path_, ": truncated reading ", what, " at offset ", pos_,
              ": needs ", n, " bytes, ", remaining(), " left");
  }

  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& what) {
    const uint64_t len = read<uint64_t>(what + " length");
    need(len, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  const std::string& path_;
  size_t pos_ = 0;
};

int64_t read_int(Reader& r, uint32_t type, const std::string& what, const std::string& path) {
  switch (type) {
    case kUint8: return r.read<uint8_t>(what);
    case kInt8: return r.read<int8_t>(what);
    case kUint16: return r.read<uint16_t>(what);
    case kInt16: return r.read<int16_t>(what);
    case kUint32: return r.read<uint32_t>(what);
    case kInt32: return r.read<int32_t>(what);
    case kInt64: return r.read<int64_t>(what);
    case kUint64: {
      const uint64_t v = r.read<uint64_t>(what);
      TLM_CHECK(v <= static_cast<uint64_t>(INT64_MAX), path, ": ", what, ": uint64 value ", v,
                " does not fit in int64");
      return static_cast<int64_t>(v);
    }
    default: break;
  }
  TLM_FAIL(path, ": ", what, ": not an integer type");
}

double read_float(Reader& r, uint32_t type, const std::string& what) {
  if (type == kFloat32) {
    return r.read<float>(what);
  }
  return r.read<double>(what);
}

bool read_bool(Reader& r, const std::string& what, const std::string& path) {
  const uint8_t b = r.read<uint8_t>(what);
  TLM_CHECK(b <= 1, path, ": ", what, ": bool byte is ", static_cast<int>(b), ", not 0 or 1");
  return b == 1;
}

bool is_float_type(uint32_t type) { return type == kFloat32 || type == kFloat64; }

GgufValue read_value(Reader& r, uint32_t type, const std::string& key, const std::string& path) {
  const std::string what = "value of metadata key '" + key + "'";
  TLM_CHECK(scalar_size(type) >= 0, path, ": metadata key '", key, "' has unknown value type ",
            type);
  if (type == kString) {
    return r.read_string(what);
  }
  if (type == kBool) {
    return read_bool(r, what, path);
  }
  if (is_float_type(type)) {
    return read_float(r, type, what);
  }
  if (type != kArray) {
    return read_int(r, type, what, path);
  }

  const uint32_t elem = r.read<uint32_t>("array type of metadata key '" + key + "'");
  const uint64_t count = r.read<uint64_t>("array length of metadata key '" + key + "'");
  const int elem_size = scalar_size(elem);
  TLM_CHECK(elem_size >= 0, path, ": metadata key '", key, "': array of unknown value type ",
            elem);
  TLM_CHECK(elem != kArray, path, ": metadata key '", key,
            "': nested arrays are not supported");
  // A string costs at least its 8-byte length; checked before reserving anything.
  const uint64_t min_bytes = elem == kString ? 8 : static_cast<uint64_t>(elem_size);
  TLM_CHECK(count <= r.remaining() / min_bytes, path, ": metadata key '", key, "': array of ",
            count, " ", value_type_name(elem), " values cannot fit in the ", r.remaining(),
            " bytes left at offset ", r.pos());
  const size_t n = static_cast<size_t>(count);
  if (elem == kString) {
    std::vector<std::string> v;
    v.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      v.push_back(r.read_string(what + " element " + std::to_string(i)));
    }
    return v;
  }
  if (is_float_type(elem)) {
    std::vector<double> v(n);
    for (size_t i = 0; i < n; ++i) {
      v[i] = read_float(r, elem, what);
    }
    return v;
  }
  // Bool arrays have no variant of their own and are kept as 0/1 integers.
  std::vector<int64_t> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = elem == kBool ? static_cast<int64_t>(read_bool(r, what, path))
                         : read_int(r, elem, what, path);
  }
  return v;
}

uint64_t align_up(uint64_t x, uint64_t alignment, bool* overflow) {
  const uint64_t rem = x % alignment;
  if (rem == 0) {
    return x;
  }
  uint64_t out = 0;
  *overflow = __builtin_add_overflow(x, alignment - rem, &out);
  return out;
}

GgufTensor read_tensor_info(Reader& r, size_t index, const std::string& path) {
  GgufTensor t;
  t.name = r.read_string("name of tensor #" + std::to_string(index));
  const std::string what = "tensor '" + t.name + "'";
  const uint32_t n_dims = r.read<uint32_t>("dimension count of " + what);
  TLM_CHECK(n_dims <= 4, path, ": ", what, " has ", n_dims, " dimensions (at most 4)");
  uint64_t numel = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const uint64_t ne = r.read<uint64_t>("dimensions of " + what);
    TLM_CHECK(ne > 0, path, ": ", what, ": dimension ", d, " is 0");
    TLM_CHECK(ne <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(numel, ne, &numel)
                  && numel <= static_cast<uint64_t>(INT64_MAX),
              path, ": ", what, ": element count overflows at dimension ", d);
    t.ne.push_back(static_cast<int64_t>(ne));
  }
  const uint32_t type = r.read<uint32_t>("type of " + what);
  t.type = static_cast<GgmlType>(type);
  TLM_CHECK(ggml_type_known(t.type), path, ": ", what, " has unknown ggml type ", type);
  const int64_t block = ggml_block_size(t.type);
  TLM_CHECK(t.row_size() % block == 0, path, ": ", what, ": row of ", t.row_size(),
            " values is not a whole number of ", ggml_type_name(t.type), " blocks (",
            block, " values)");
  const uint64_t blocks = numel / static_cast<uint64_t>(block);
  TLM_CHECK(!__builtin_mul_overflow(blocks, static_cast<uint64_t>(ggml_block_bytes(t.type)),
                                    &t.nbytes),
            path, ": ", what, ": byte size overflows");
  t.offset = r.read<uint64_t>("data offset of " + what);
  return t;
}

}  // namespace

int64_t GgufTensor::rows() const {
  int64_t n = 1;
  for (size_t i = 1; i < ne.size(); ++i) {
    n *= ne[i];
  }
  return n;
}

std::vector<int64_t> GgufTensor::torch_shape() const {
  return std::vector<int64_t>(ne.rbegin(), ne.rend());
}

GgufHeader parse_gguf(const uint8_t* data, size_t size, const std::string& path) {
  Reader r(data, size, path);
  GgufHeader h;
  TLM_CHECK(size >= 4 && std::memcmp(data, "GGUF", 4) == 0, path,
            ": not a GGUF file (bad magic; expected \"GGUF\")");
  r.read<uint32_t>("magic");
  h.version = r.read<uint32_t>("version");
  TLM_CHECK(h.version != 0x02000000u && h.version != 0x03000000u, path,
            ": big-endian GGUF files are not supported");
  TLM_CHECK(h.version == 2 || h.version == 3, path, ": unsupported GGUF version ", h.version,
            " (supported: 2, 3)");
  const uint64_t n_tensors = r.read<uint64_t>("tensor count");
  const uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Smallest encodings: a key/value is an 8-byte key length, a 4-byte type and a 1-byte
  // value; a tensor info is an 8-byte name length, n_dims, type and offset (24 bytes).
  TLM_CHECK(n_kv <= r.remaining() / 13, path, ": metadata count ", n_kv,
            " cannot fit in the ", r.remaining(), " bytes left");
  TLM_CHECK(n_tensors <= r.remaining() / 24, path, ": tensor count ", n_tensors,
            " cannot fit in the ", r.remaining(), " bytes left");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.read_string("key of metadata entry #" + std::to_string(i));
    const uint32_t type = r.read<uint32_t>("value type of metadata key '" + key + "'");
    GgufValue value = read_value(r, type, key, path);
    if (key == "general.alignment") {
      TLM_CHECK(std::holds_alternative<int64_t>(value), path,
                ": general.alignment is not an integer");
      const int64_t a = std::get<int64_t>(value);
      TLM_CHECK(a > 0 && (a & (a - 1)) == 0, path, ": general.alignment ", a,
                " is not a power of two");
      h.alignment = static_cast<uint64_t>(a);
    }
    TLM_CHECK(h.metadata.emplace(key, std::move(value)).second, path, ": metadata key '", key,
              "' appears twice");
  }

  // Re-checked against what the metadata left over.
  TLM_CHECK(n_tensors <= r.remaining() / 24, path, ": tensor count ", n_tensors,
            " cannot fit in the ", r.remaining(), " bytes left");
  h.tensors.reserve(static_cast<size_t>(n_tensors));
  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    h.tensors.push_back(read_tensor_info(r, static_cast<size_t>(i), path));
    TLM_CHECK(names.insert(h.tensors.back().name).second, path, ": tensor '",
              h.tensors.back().name, "' appears twice");
  }

  bool overflow = false;
  const uint64_t data_start = align_up(r.pos(), h.alignment, &overflow);
  for (GgufTensor& t : h.tensors) {
    TLM_CHECK(t.offset % h.alignment == 0, path, ": tensor '", t.name, "': data offset ",
              t.offset, " is not a multiple of the alignment ", h.alignment);
    uint64_t begin = 0, end = 0;
    const bool bad = overflow || __builtin_add_overflow(data_start, t.offset, &begin) ||
                     __builtin_add_overflow(begin, t.nbytes, &end);
    TLM_CHECK(!bad && end <= size, path, ": tensor '", t.name, "': data (offset ", t.offset,
              " + ", t.nbytes, " bytes after the data start ", data_start,
              ") lies outside the file (", size, " bytes); truncated file?");
    t.offset = begin;
  }

  std::vector<const GgufTensor*> by_offset;
  by_offset.reserve(h.tensors.size());
  for (const GgufTensor& t : h.tensors) {
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const GgufTensor* a, const GgufTensor* b) {
    return a->offset < b->offset;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensor* a = by_offset[i - 1];
    const GgufTensor* b = by_offset[i];
    TLM_CHECK(b->offset >= a->offset + a->nbytes, path, ": tensor '", b->name,
              "' overlaps the data of tensor '", a->name, "'");
  }
  return h;
}

}  // namespace tlm
