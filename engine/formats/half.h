// IEEE half (fp16) and bfloat16 to float32. Both conversions are exact (every half and
// bf16 value is representable as a float), including subnormals, infinities and NaN
// payloads, which is what makes dequantisation match numpy's astype(float32) bit for bit.
#pragma once

#include <cstdint>

namespace tlm {

float fp16_to_fp32(uint16_t h);
float bf16_to_fp32(uint16_t b);

}  // namespace tlm
