// Tiny GGUF and safetensors writers for the unit tests. They encode exactly what the test
// asks for, including inconsistent headers (wrong counts, offsets, types), so each
// validation path of the parsers can be reached from bytes built at test time.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace tlm::test {

using Bytes = std::vector<uint8_t>;

void put_u8(Bytes& b, uint8_t v);
void put_u32(Bytes& b, uint32_t v);
void put_u64(Bytes& b, uint64_t v);
void put_f32(Bytes& b, float v);
void put_f64(Bytes& b, double v);
void put_str(Bytes& b, const std::string& s);  // GGUF string: u64 length + bytes
void put_f16(Bytes& b, uint16_t bits);

struct GgufTensorSpec {
  std::string name;
  std::vector<uint64_t> ne;
  uint32_t type = 0;
  Bytes data;
  std::optional<uint64_t> offset;  // relative to the data start; computed when absent
};

struct GgufBuilder {
  uint32_t version = 3;
  uint64_t alignment = 32;  // only used for layout; add a general.alignment kv to change it
  std::optional<uint64_t> tensor_count;  // header counts, computed when absent
  std::optional<uint64_t> kv_count;
  Bytes kv;  // encoded key/value pairs
  uint64_t n_kv = 0;
  std::vector<GgufTensorSpec> tensors;

  // Appends a key with its value type; the caller then appends the value bytes to `kv`.
  void key(const std::string& name, uint32_t value_type);
  void add_u32(const std::string& name, uint32_t v);
  void add_string(const std::string& name, const std::string& v);
  void add_tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, Bytes data);
  Bytes build() const;
};

// 8-byte length, the header text as given, then the data bytes.
Bytes make_safetensors(const std::string& header, const Bytes& data);

void write_file(const std::string& path, const Bytes& bytes);
// A fresh directory under the system temp dir.
std::string make_temp_dir();

// The tlm::Error message `fn` throws, or "" when it returns normally. Any other exception
// type propagates (and fails the test): the parsers must only ever throw tlm::Error.
std::string error_of(const std::function<void()>& fn);
// Empty when `message` is non-empty and contains every part; else what is wrong.
std::string check_message(const std::string& message, std::initializer_list<std::string> parts);

}  // namespace tlm::test

// EXPECT_TLM_ERROR(statement, "part", ...): the statement throws tlm::Error and the message
// contains every part (the file path, the tensor or key name, ...).
#define EXPECT_TLM_ERROR(stmt, ...)                                                         \
  do {                                                                                      \
    const std::string tlm_msg_ = ::tlm::test::error_of([&]() { stmt; });                    \
    const std::string tlm_bad_ = ::tlm::test::check_message(tlm_msg_, {__VA_ARGS__});       \
    EXPECT_TRUE(tlm_bad_.empty()) << #stmt << ": " << tlm_bad_;                             \
  } while (0)
