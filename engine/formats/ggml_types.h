// GGML tensor element types as GGUF files store them, and their block geometry.
// Quantised types pack `block_size` values into `block_bytes` bytes; a row of a GGUF
// tensor (ne[0] values) is always a whole number of blocks, so rows dequantise
// independently (what per-rank row slicing relies on).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tlm {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

// "Q4_K", "F32", ... ; "type 77" for an unknown value.
std::string ggml_type_name(GgmlType type);
// True for the types dequantize_ggml() can turn into floats.
bool ggml_type_supported(GgmlType type);
// True for every type id ggml defines (block geometry known, e.g. IQ2_XXS = 16 which has no
// enumerator here); such tensors parse but only the supported ones dequantise.
bool ggml_type_known(GgmlType type);
// Values per block (1 for plain float types). Throws for unknown types.
int64_t ggml_block_size(GgmlType type);
// Bytes per block. Throws for unknown types.
size_t ggml_block_bytes(GgmlType type);
// Bytes of `n` values of `type` (n must be a multiple of the block size; throws otherwise).
size_t ggml_row_bytes(GgmlType type, int64_t n);

// Dequantises `n` consecutive values (a multiple of the block size) from `src` into `dst`.
// Equal to the `gguf` Python package's `gguf.quants.dequantize` bit for bit.
void dequantize_ggml(GgmlType type, const uint8_t* src, float* dst, int64_t n);

}  // namespace tlm
