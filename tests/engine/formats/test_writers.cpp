#include "tests/engine/formats/test_writers.h"

#include "engine/common/error.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace tlm::test {

void put_u8(Bytes& b, uint8_t v) { b.push_back(v); }

void put_u32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put_u64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put_f32(Bytes& b, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_u32(b, bits);
}

void put_f64(Bytes& b, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_u64(b, bits);
}

void put_str(Bytes& b, const std::string& s) {
  put_u64(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

void put_f16(Bytes& b, uint16_t bits) {
  b.push_back(static_cast<uint8_t>(bits));
  b.push_back(static_cast<uint8_t>(bits >> 8));
}

void GgufBuilder::key(const std::string& name, uint32_t value_type) {
  put_str(kv, name);
  put_u32(kv, value_type);
  ++n_kv;
}

void GgufBuilder::add_u32(const std::string& name, uint32_t v) {
  key(name, 4);
  put_u32(kv, v);
}

void GgufBuilder::add_string(const std::string& name, const std::string& v) {
  key(name, 8);
  put_str(kv, v);
}

void GgufBuilder::add_tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                             Bytes data) {
  tensors.push_back({name, std::move(ne), type, std::move(data), std::nullopt});
}

Bytes GgufBuilder::build() const {
  Bytes out = {'G', 'G', 'U', 'F'};
  put_u32(out, version);
  put_u64(out, tensor_count.value_or(tensors.size()));
  put_u64(out, kv_count.value_or(n_kv));
  out.insert(out.end(), kv.begin(), kv.end());
  std::vector<uint64_t> offsets;
  uint64_t next = 0;
  for (const GgufTensorSpec& t : tensors) {
    const uint64_t off = t.offset.value_or(next);
    offsets.push_back(off);
    next = off + t.data.size();
    next = (next + alignment - 1) / alignment * alignment;
    put_str(out, t.name);
    put_u32(out, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t n : t.ne) put_u64(out, n);
    put_u32(out, t.type);
    put_u64(out, off);
  }
  const uint64_t data_start = (out.size() + alignment - 1) / alignment * alignment;
  out.resize(data_start, 0);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].data.empty()) continue;  // lets tests point offsets anywhere
    const uint64_t at = data_start + offsets[i];
    if (out.size() < at + tensors[i].data.size()) out.resize(at + tensors[i].data.size(), 0);
    std::memcpy(out.data() + at, tensors[i].data.data(), tensors[i].data.size());
  }
  return out;
}

Bytes make_safetensors(const std::string& header, const Bytes& data) {
  Bytes out;
  put_u64(out, header.size());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write test file " + path);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base ? base : "/tmp") + "/tlm-formats-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return templ;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const tlm::Error& e) {
    return e.what();
  }
  return "";
}

std::string check_message(const std::string& message, std::initializer_list<std::string> parts) {
  if (message.empty()) return "no tlm::Error was thrown";
  for (const std::string& part : parts) {
    if (message.find(part) == std::string::npos) {
      return "message lacks \"" + part + "\": " + message;
    }
  }
  return "";
}

}  // namespace tlm::test
