// libFuzzer target: parse_gguf on arbitrary bytes. The parser may only ever throw
// tlm::Error; anything else (a sanitizer report, another exception type, a huge
// allocation) is a bug. For files that parse, the first row of every supported tensor is
// dequantised straight from the input, checking the promise that tensor bytes lie inside.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const tlm::GgufHeader h = tlm::parse_gguf(data, size, "fuzz.gguf");
    std::vector<float> row;
    for (const tlm::GgufTensor& t : h.tensors) {
      if (!tlm::ggml_type_supported(t.type) || t.row_size() > (1 << 16)) {
        continue;
      }
      row.resize(static_cast<size_t>(t.row_size()));
      tlm::dequantize_ggml(t.type, data + t.offset, row.data(), t.row_size());
    }
  } catch (const tlm::Error&) {
  }
  return 0;
}
