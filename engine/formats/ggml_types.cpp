#include "engine/formats/ggml_types.h"

#include <limits>

#include "engine/common/error.h"

namespace tlm {

namespace {

struct TypeTraits {
  uint32_t id;
  const char* name;
  int64_t block_size;
  size_t block_bytes;
  bool supported;
};

// Every type ggml assigns an id to, so that files holding e.g. IQ or ternary tensors still
// parse (their tensors are skipped or reported) instead of the whole file being rejected.
// Block geometry as in ggml.c's type_traits / gguf-py's GGML_QUANT_SIZES.
const TypeTraits kTypes[] = {
    {0, "F32", 1, 4, true},          {1, "F16", 1, 2, true},
    {2, "Q4_0", 32, 18, true},       {3, "Q4_1", 32, 20, true},
    {6, "Q5_0", 32, 22, true},       {7, "Q5_1", 32, 24, true},
    {8, "Q8_0", 32, 34, true},       {9, "Q8_1", 32, 40, false},
    {10, "Q2_K", 256, 84, true},     {11, "Q3_K", 256, 110, true},
    {12, "Q4_K", 256, 144, true},    {13, "Q5_K", 256, 176, true},
    {14, "Q6_K", 256, 210, true},    {15, "Q8_K", 256, 292, false},
    {16, "IQ2_XXS", 256, 66, false}, {17, "IQ2_XS", 256, 74, false},
    {18, "IQ3_XXS", 256, 98, false}, {19, "IQ1_S", 256, 50, false},
    {20, "IQ4_NL", 32, 18, false},   {21, "IQ3_S", 256, 110, false},
    {22, "IQ2_S", 256, 82, false},   {23, "IQ4_XS", 256, 136, false},
    {24, "I8", 1, 1, false},         {25, "I16", 1, 2, false},
    {26, "I32", 1, 4, false},        {27, "I64", 1, 8, false},
    {28, "F64", 1, 8, false},        {29, "IQ1_M", 256, 56, false},
    {30, "BF16", 1, 2, true},        {34, "TQ1_0", 256, 54, false},
    {35, "TQ2_0", 256, 66, false},   {39, "MXFP4", 32, 17, false},
};

const TypeTraits* find_traits(GgmlType type) {
  for (const TypeTraits& t : kTypes) {
    if (t.id == static_cast<uint32_t>(type)) {
      return &t;
    }
  }
  return nullptr;
}

const TypeTraits& traits(GgmlType type) {
  const TypeTraits* t = find_traits(type);
  TLM_CHECK(t != nullptr, "unknown ggml type ", static_cast<uint32_t>(type));
  return *t;
}

}  // namespace

std::string ggml_type_name(GgmlType type) {
  const TypeTraits* t = find_traits(type);
  if (t == nullptr) {
    return "type " + std::to_string(static_cast<uint32_t>(type));
  }
  return t->name;
}

bool ggml_type_supported(GgmlType type) {
  const TypeTraits* t = find_traits(type);
  return t != nullptr && t->supported;
}

bool ggml_type_known(GgmlType type) { return find_traits(type) != nullptr; }

int64_t ggml_block_size(GgmlType type) { return traits(type).block_size; }

size_t ggml_block_bytes(GgmlType type) { return traits(type).block_bytes; }

size_t ggml_row_bytes(GgmlType type, int64_t n) {
  const TypeTraits& t = traits(type);
  TLM_CHECK(n >= 0 && n % t.block_size == 0, ggml_type_name(type), ": ", n,
            " values are not a whole number of ", t.block_size, "-value blocks");
  const uint64_t blocks = static_cast<uint64_t>(n / t.block_size);
  TLM_CHECK(blocks <= std::numeric_limits<size_t>::max() / t.block_bytes, ggml_type_name(type),
            ": byte size of ", n, " values overflows");
  return static_cast<size_t>(blocks) * t.block_bytes;
}

}  // namespace tlm
