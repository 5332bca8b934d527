// Block decoders. The reference is gguf-py's numpy code (gguf/quants.py), which evaluates
// every product and sum as a separately rounded float32 operation in a fixed order, e.g.
// Q4_K is (d * sc) * q - (dmin * m). The code below keeps exactly those operations and that
// order, and this file is compiled with -ffp-contract=off so that no a*b+c is fused into
// an FMA (which would round once instead of twice and break bit equality).
#include <cstring>

#include "engine/common/error.h"
#include "engine/formats/ggml_types.h"
#include "engine/formats/half.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "GGUF blocks are little-endian and are read in place");

namespace tlm {

namespace {

constexpr int kQK = 32;    // values per block of the legacy quants
constexpr int kQKK = 256;  // values per K-quant super-block

float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return fp16_to_fp32(h);
}

void dequant_f32(const uint8_t* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void dequant_f16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = half_at(src + 2 * i);
  }
}

void dequant_bf16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, src + 2 * i, sizeof(b));
    dst[i] = bf16_to_fp32(b);
  }
}

// Legacy 32-value blocks: byte j of qs holds value j in its low nibble, j + 16 in its high.
void dequant_q4_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 18, dst += kQK) {
    const float d = half_at(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
      dst[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

void dequant_q4_1(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 20, dst += kQK) {
    const float d = half_at(src);
    const float m = half_at(src + 2);
    const uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
      dst[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

// Q5: the fifth bit of value j is bit j of the little-endian 32-bit qh.
void dequant_q5_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 22, dst += kQK) {
    const float d = half_at(src);
    uint32_t qh;
    std::memcpy(&qh, src + 2, sizeof(qh));
    const uint8_t* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      dst[j] = d * static_cast<float>(lo - 16);
      dst[j + 16] = d * static_cast<float>(hi - 16);
    }
  }
}

void dequant_q5_1(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 24, dst += kQK) {
    const float d = half_at(src);
    const float m = half_at(src + 2);
    uint32_t qh;
    std::memcpy(&qh, src + 4, sizeof(qh));
    const uint8_t* qs = src + 8;
    for (int j = 0; j < 16; ++j) {
      const int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      dst[j] = d * static_cast<float>(lo) + m;
      dst[j + 16] = d * static_cast<float>(hi) + m;
    }
  }
}

void dequant_q8_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 34, dst += kQK) {
    const float d = half_at(src);
    const int8_t* qs = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < kQK; ++j) {
      dst[j] = static_cast<float>(qs[j]) * d;
    }
  }
}

// Q2_K: scales[16] (low nibble scale, high nibble min, one pair per 16 values), qs[64]
// (2 bits a value), d, dmin. Value 128*h + 32*s + l sits in bits 2s..2s+1 of qs[32*h + l].
void dequant_q2_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 84, dst += kQKK) {
    const uint8_t* scales = src;
    const uint8_t* qs = src + 16;
    const float d = half_at(src + 80);
    const float dmin = half_at(src + 82);
    for (int v = 0; v < kQKK; ++v) {
      const int h = v / 128, s = (v / 32) % 4, l = v % 32;
      const int q = (qs[32 * h + l] >> (2 * s)) & 3;
      const uint8_t sc = scales[v / 16];
      const float dl = d * static_cast<float>(sc & 0x0F);
      const float ml = dmin * static_cast<float>(sc >> 4);
      dst[v] = dl * static_cast<float>(q) - ml;
    }
  }
}

// Q3_K: hmask[32], qs[64], scales[12] (sixteen 6-bit scales: low nibbles in bytes 0..7,
// high 2-bit pairs in bytes 8..11), d. A clear hmask bit subtracts 4 from the 2-bit value.
void dequant_q3_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 110, dst += kQKK) {
    const uint8_t* hmask = src;
    const uint8_t* qs = src + 32;
    const uint8_t* sc = src + 96;
    const float d = half_at(src + 108);
    float dl[16];
    for (int i = 0; i < 16; ++i) {
      const int lo = i < 8 ? (sc[i] & 0x0F) : (sc[i - 8] >> 4);
      const int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
      dl[i] = d * static_cast<float>((lo | (hi << 4)) - 32);
    }
    for (int v = 0; v < kQKK; ++v) {
      const int h = v / 128, s = (v / 32) % 4, l = v % 32;
      const int ql = (qs[32 * h + l] >> (2 * s)) & 3;
      const int high = ((hmask[l] >> (v / 32)) & 1) ^ 1;
      dst[v] = dl[v / 16] * static_cast<float>(ql - (high << 2));
    }
  }
}

// The 12-byte packing of eight 6-bit scales and eight 6-bit mins shared by Q4_K and Q5_K.
void k_scale_min(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 0x3F;
    mn[j] = s[j + 4] & 0x3F;
    sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0x0F) | ((s[j] >> 2) & 0x30));
    mn[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30));
  }
}

// Q4_K: d, dmin, scales[12], qs[128]. Sub-block j (32 values) is the low (j even) or high
// (j odd) nibble of qs[32*(j/2) .. 32*(j/2)+31].
void dequant_q4_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 144, dst += kQKK) {
    const float d = half_at(src);
    const float dmin = half_at(src + 2);
    uint8_t sc[8], mn[8];
    k_scale_min(src + 4, sc, mn);
    const uint8_t* qs = src + 16;
    for (int j = 0; j < 8; ++j) {
      const float dl = d * static_cast<float>(sc[j]);
      const float ml = dmin * static_cast<float>(mn[j]);
      const uint8_t* q = qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        dst[32 * j + l] = dl * static_cast<float>((q[l] >> shift) & 0x0F) - ml;
      }
    }
  }
}

// Q5_K: as Q4_K with qh[32] before qs; bit j of qh[l] is the fifth bit of sub-block j.
void dequant_q5_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 176, dst += kQKK) {
    const float d = half_at(src);
    const float dmin = half_at(src + 2);
    uint8_t sc[8], mn[8];
    k_scale_min(src + 4, sc, mn);
    const uint8_t* qh = src + 16;
    const uint8_t* qs = src + 48;
    for (int j = 0; j < 8; ++j) {
      const float dl = d * static_cast<float>(sc[j]);
      const float ml = dmin * static_cast<float>(mn[j]);
      const uint8_t* q = qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0x0F) | (((qh[l] >> j) & 1) << 4);
        dst[32 * j + l] = dl * static_cast<float>(v) - ml;
      }
    }
  }
}

// Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], d. Value
// 128*h + 64*n + k takes nibble n of ql[64*h + k]; value 128*h + 32*s + l takes bits
// 2s..2s+1 of qh[32*h + l].
void dequant_q6_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 210, dst += kQKK) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const int8_t* scales = reinterpret_cast<const int8_t*>(src + 192);
    const float d = half_at(src + 208);
    float dl[16];
    for (int i = 0; i < 16; ++i) {
      dl[i] = d * static_cast<float>(scales[i]);
    }
    for (int v = 0; v < kQKK; ++v) {
      const int h = v / 128, r = v % 128;
      const int lo = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
      const int hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
      dst[v] = dl[v / 16] * static_cast<float>((lo | (hi << 4)) - 32);
    }
  }
}

}  // namespace

void dequantize_ggml(GgmlType type, const uint8_t* src, float* dst, int64_t n) {
  TLM_CHECK(ggml_type_supported(type), "dequantisation of ggml type ", ggml_type_name(type),
            " is not supported");
  const int64_t bs = ggml_block_size(type);
  TLM_CHECK(n >= 0 && n % bs == 0, "dequantize ", ggml_type_name(type), ": ", n,
            " values are not a whole number of ", bs, "-value blocks");
  const int64_t nb = n / bs;
  switch (type) {
    case GgmlType::F32: dequant_f32(src, dst, n); return;
    case GgmlType::F16: dequant_f16(src, dst, n); return;
    case GgmlType::BF16: dequant_bf16(src, dst, n); return;
    case GgmlType::Q4_0: dequant_q4_0(src, dst, nb); return;
    case GgmlType::Q4_1: dequant_q4_1(src, dst, nb); return;
    case GgmlType::Q5_0: dequant_q5_0(src, dst, nb); return;
    case GgmlType::Q5_1: dequant_q5_1(src, dst, nb); return;
    case GgmlType::Q8_0: dequant_q8_0(src, dst, nb); return;
    case GgmlType::Q2_K: dequant_q2_k(src, dst, nb); return;
    case GgmlType::Q3_K: dequant_q3_k(src, dst, nb); return;
    case GgmlType::Q4_K: dequant_q4_k(src, dst, nb); return;
    case GgmlType::Q5_K: dequant_q5_k(src, dst, nb); return;
    case GgmlType::Q6_K: dequant_q6_k(src, dst, nb); return;
    default: break;
  }
  TLM_FAIL("dequantisation of ggml type ", ggml_type_name(type), " is not supported");
}

}  // namespace tlm
