// libFuzzer target: parse_safetensors on arbitrary bytes. Only tlm::Error may escape the
// parser; for files that parse, every tensor's first and last byte is read to check that
// the validated offsets lie inside the input.
#include <cstddef>
#include <cstdint>

#include "engine/common/error.h"
#include "engine/formats/safetensors_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const tlm::SafetensorsHeader h = tlm::parse_safetensors(data, size, "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const tlm::SafetensorsTensor& t : h.tensors) {
      if (t.end > t.begin) {
        sink = static_cast<uint8_t>(sink + data[t.begin] + data[t.end - 1]);
      }
    }
    (void)sink;
  } catch (const tlm::Error&) {
  }
  return 0;
}
