// WeightSource over an HF safetensors directory (single file or sharded).
#include <cstring>

#include <ATen/ATen.h>

#include "engine/common/error.h"
#include "engine/formats/safetensors_file.h"
#include "engine/formats/weights_fingerprint.h"
#include "engine/model/weight_source.h"

namespace tlm {
namespace {

at::ScalarType torch_dtype(StDtype dtype, const std::string& path, const std::string& name) {
  switch (dtype) {
    case StDtype::F32: return at::kFloat;
    case StDtype::F16: return at::kHalf;
    case StDtype::BF16: return at::kBFloat16;
    case StDtype::F64: return at::kDouble;
    default:
      TLM_FAIL(path, ": tensor '", name, "' has dtype ", st_dtype_name(dtype),
               "; weights must be F32, F16, BF16 or F64");
  }
}

class SafetensorsWeights final : public WeightSource {
 public:
  explicit SafetensorsWeights(const std::string& directory) : model_(directory), path_(directory) {}

  const std::string& path() const override { return path_; }
  bool has(const std::string& name) const override { return model_.has(name); }
  std::string fingerprint() const override { return weights_fingerprint(model_); }
  std::vector<int64_t> shape(const std::string& name) const override {
    return model_.tensor(name).shape;
  }

  at::Tensor load(const std::string& name, const WeightSlice& slice) const override {
    const SafetensorsTensor& t = model_.tensor(name);
    const SafetensorsFile& file = model_.file_of(name);
    const at::ScalarType dtype = torch_dtype(t.dtype, file.path(), name);
    const size_t itemsize = st_dtype_bytes(t.dtype);
    const uint8_t* base = file.data(t);
    std::vector<int64_t> shape = t.shape;
    int64_t row_offset_bytes = 0;
    if (slice.dim == 0) {
      // Rows of a row-major tensor are contiguous: map only those bytes.
      check_slice(t, slice, name, file.path());
      int64_t row_elems = 1;
      for (size_t d = 1; d < shape.size(); ++d) row_elems *= shape[d];
      row_offset_bytes = slice.begin * row_elems * static_cast<int64_t>(itemsize);
      shape[0] = slice.end - slice.begin;
    }
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    // Copy out of the (read-only, possibly unaligned) mapping before any compute touches it.
    at::Tensor raw = at::empty(shape, at::TensorOptions().dtype(dtype));
    std::memcpy(raw.data_ptr(), base + row_offset_bytes, static_cast<size_t>(numel) * itemsize);
    at::Tensor out = raw;
    if (slice.dim > 0) {
      check_slice(t, slice, name, file.path());
      out = out.narrow(slice.dim, slice.begin, slice.end - slice.begin);
    }
    return out.to(at::kFloat).contiguous();
  }

 private:
  static void check_slice(const SafetensorsTensor& t, const WeightSlice& s,
                          const std::string& name, const std::string& path) {
    TLM_CHECK(s.dim >= 0 && s.dim < static_cast<int>(t.shape.size()) && s.begin >= 0 &&
                  s.end <= t.shape[s.dim] && s.begin < s.end,
              path, ": cannot slice tensor '", name, "' along dim ", s.dim, " as [", s.begin,
              ", ", s.end, ")");
  }

  SafetensorsModel model_;
  std::string path_;
};

}  // namespace

std::unique_ptr<WeightSource> open_safetensors_weights(const std::string& directory) {
  return std::make_unique<SafetensorsWeights>(directory);
}

}  // namespace tlm
