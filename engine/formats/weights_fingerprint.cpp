#include "engine/formats/weights_fingerprint.h"

#include <cstdio>

#include "engine/formats/ggml_types.h"
#include "engine/formats/gguf_file.h"
#include "engine/formats/safetensors_file.h"

namespace tlm {
namespace {

constexpr uint64_t kSample = 64 * 1024;

}  // namespace

void WeightsFingerprint::add(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) hash_ = (hash_ ^ p[i]) * 1099511628211ULL;
}

void WeightsFingerprint::add_tensor(const std::string& name, const std::string& type, const int64_t* shape,
                                    size_t dims, const uint8_t* bytes, uint64_t nbytes) {
  add(name.data(), name.size() + 1);  // with its terminator: "ab"+"c" differs from "a"+"bc"
  add(type.data(), type.size() + 1);
  add(&dims, sizeof dims);
  add(shape, dims * sizeof(int64_t));
  add(&nbytes, sizeof nbytes);
  if (nbytes <= 3 * kSample) {
    add(bytes, nbytes);
  } else {
    add(bytes, kSample);
    add(bytes + (nbytes / 2 - kSample / 2), kSample);
    add(bytes + (nbytes - kSample), kSample);
  }
  ++tensors_;
}

std::string WeightsFingerprint::hex() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "w1:%016llx/%llu", static_cast<unsigned long long>(hash_),
                static_cast<unsigned long long>(tensors_));
  return buf;
}

std::string weights_fingerprint(const GgufFile& gguf) {
  WeightsFingerprint f;
  for (const GgufTensor& t : gguf.tensors())
    f.add_tensor(t.name, ggml_type_name(t.type), t.ne.data(), t.ne.size(), gguf.data(t), t.nbytes);
  return f.hex();
}

std::string weights_fingerprint(const SafetensorsModel& model) {
  WeightsFingerprint f;
  for (const std::string& name : model.tensor_names()) {  // sorted: shards and their order do not matter
    const SafetensorsTensor& t = model.tensor(name);
    f.add_tensor(name, st_dtype_name(t.dtype), t.shape.data(), t.shape.size(), model.file_of(name).data(t),
                 t.end - t.begin);
  }
  return f.hex();
}

}  // namespace tlm
