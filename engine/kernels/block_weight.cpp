#include "engine/kernels/block_weight.h"

#include <immintrin.h>

#include <cstring>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "engine/common/error.h"
#include "engine/formats/half.h"

namespace tlm {
namespace {

constexpr int64_t kBlock = 32;

float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return fp16_to_fp32(h);
}

// One block's 32 values, in the order and with the roundings of the GGUF dequantiser.
void dequantize_block(BlockFormat f, const uint8_t* b, float* out) {
  const float d = half_at(b);
  if (f == BlockFormat::q8_0) {
    for (int j = 0; j < 32; ++j) out[j] = d * static_cast<float>(static_cast<int8_t>(b[2 + j]));
    return;
  }
  const float m = half_at(b + 2);
  for (int j = 0; j < 16; ++j) {
    const float lo = d * static_cast<float>(b[4 + j] & 0x0F);
    const float hi = d * static_cast<float>(b[4 + j] >> 4);
    out[j] = lo + m;
    out[j + 16] = hi + m;
  }
}

// Outputs [n0, n1) of R rows, portable: each block dequantised, then R dot products.
void product_portable(const float* x, int64_t R, int64_t K, const BlockWeight& w, int64_t n0, int64_t n1, float* y,
                      int64_t N) {
  const uint8_t* base = w.bytes.data_ptr<uint8_t>();
  const int64_t row_bytes = w.bytes.size(1), bb = block_bytes(w.format);
  float vals[kBlock];
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t r = 0; r < R; ++r) y[r * N + n] = 0.0f;
    for (int64_t blk = 0; blk < K / kBlock; ++blk) {
      dequantize_block(w.format, base + n * row_bytes + blk * bb, vals);
      for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + r * K + blk * kBlock;
        float s = 0.0f;
        for (int j = 0; j < kBlock; ++j) s += xr[j] * vals[j];
        y[r * N + n] += s;
      }
    }
  }
}

#define TLM_AVX2 __attribute__((target("avx2,fma,f16c")))

TLM_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// A block's 32 values as four vectors of 8 (values 0-7, 8-15, 16-23, 24-31).
TLM_AVX2 inline void load_block(BlockFormat f, const uint8_t* b, __m256 v[4]) {
  uint16_t dh;
  std::memcpy(&dh, b, 2);
  const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
  if (f == BlockFormat::q8_0) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18));
    v[0] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0)));
    v[1] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8))));
    v[2] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1)));
    v[3] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8))));
    return;
  }
  uint16_t mh;
  std::memcpy(&mh, b + 2, 2);
  const __m256 m = _mm256_set1_ps(_cvtsh_ss(mh));
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(q, low4);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), low4);
  // d * q is exact (11 + 4 significant bits), so the fused add rounds once, as d * q + m does.
  v[0] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), m);
  v[1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), m);
  v[2] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), m);
  v[3] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), m);
}

// Outputs [n0, n1) of R rows. A accumulators per row keep enough independent FMA chains in
// flight when R is small (the FMA latency is 4 cycles, two issue per cycle).
template <int R, int A>
TLM_AVX2 void product_avx2(const float* x, int64_t K, const BlockWeight& w, int64_t n0, int64_t n1, float* y,
                           int64_t N) {
  const uint8_t* base = w.bytes.data_ptr<uint8_t>();
  const int64_t row_bytes = w.bytes.size(1), bb = block_bytes(w.format), blocks = K / kBlock;
  const BlockFormat f = w.format;
  for (int64_t n = n0; n < n1; ++n) {
    __m256 acc[R][A];
    for (int r = 0; r < R; ++r)
      for (int a = 0; a < A; ++a) acc[r][a] = _mm256_setzero_ps();
    const uint8_t* row = base + n * row_bytes;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      __m256 v[4];
      load_block(f, row + blk * bb, v);
      for (int r = 0; r < R; ++r) {
        const float* xr = x + r * K + blk * kBlock;
        for (int j = 0; j < 4; ++j) acc[r][j % A] = _mm256_fmadd_ps(v[j], _mm256_loadu_ps(xr + 8 * j), acc[r][j % A]);
      }
    }
    for (int r = 0; r < R; ++r) {
      __m256 s = acc[r][0];
      for (int a = 1; a < A; ++a) s = _mm256_add_ps(s, acc[r][a]);
      y[r * N + n] = hsum(s);
    }
  }
}

#define TLM_AVX512 __attribute__((target("avx512f,fma,f16c")))

// A block's 32 values as two vectors of 16 (values 0-15, 16-31).
TLM_AVX512 inline void load_block16(BlockFormat f, const uint8_t* b, __m512 v[2]) {
  uint16_t dh;
  std::memcpy(&dh, b, 2);
  const __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
  if (f == BlockFormat::q8_0) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18));
    v[0] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)));
    v[1] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)));
    return;
  }
  uint16_t mh;
  std::memcpy(&mh, b + 2, 2);
  const __m512 m = _mm512_set1_ps(_cvtsh_ss(mh));
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
  const __m128i low4 = _mm_set1_epi8(0x0F);
  v[0] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(q, low4))), m);
  v[1] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), low4))), m);
}

// As product_avx2, 16 lanes wide: two vectors a block, the accumulator chains taking turns.
template <int R, int A>
TLM_AVX512 void product_avx512(const float* x, int64_t K, const BlockWeight& w, int64_t n0, int64_t n1, float* y,
                               int64_t N) {
  const uint8_t* base = w.bytes.data_ptr<uint8_t>();
  const int64_t row_bytes = w.bytes.size(1), bb = block_bytes(w.format), blocks = K / kBlock;
  const BlockFormat f = w.format;
  for (int64_t n = n0; n < n1; ++n) {
    __m512 acc[R][A];
    for (int r = 0; r < R; ++r)
      for (int a = 0; a < A; ++a) acc[r][a] = _mm512_setzero_ps();
    const uint8_t* row = base + n * row_bytes;
    int64_t blk = 0;
    // Blocks in pairs when A > 2, so that all A chains take a vector each.
    for (; blk + (A > 2 ? 1 : 0) < blocks; blk += (A > 2 ? 2 : 1)) {
      for (int half = 0; half < (A > 2 ? 2 : 1); ++half) {
        __m512 v[2];
        load_block16(f, row + (blk + half) * bb, v);
        for (int r = 0; r < R; ++r) {
          const float* xr = x + r * K + (blk + half) * kBlock;
          for (int j = 0; j < 2; ++j) {
            const int a = (2 * half + j) % A;
            acc[r][a] = _mm512_fmadd_ps(v[j], _mm512_loadu_ps(xr + 16 * j), acc[r][a]);
          }
        }
      }
    }
    for (; blk < blocks; ++blk) {  // an odd last block
      __m512 v[2];
      load_block16(f, row + blk * bb, v);
      for (int r = 0; r < R; ++r) {
        const float* xr = x + r * K + blk * kBlock;
        for (int j = 0; j < 2; ++j) acc[r][j % A] = _mm512_fmadd_ps(v[j], _mm512_loadu_ps(xr + 16 * j), acc[r][j % A]);
      }
    }
    for (int r = 0; r < R; ++r) {
      __m512 s = acc[r][0];
      for (int a = 1; a < A; ++a) s = _mm512_add_ps(s, acc[r][a]);
      y[r * N + n] = _mm512_reduce_add_ps(s);
    }
  }
}

using Product = void (*)(const float*, int64_t, const BlockWeight&, int64_t, int64_t, float*, int64_t);

// Up to 8 rows per pass here too; 32 registers leave room for more chains at few rows.
Product avx512_product(int64_t rows) {
  switch (rows) {
    case 1: return product_avx512<1, 4>;
    case 2: return product_avx512<2, 4>;
    case 3: return product_avx512<3, 2>;
    case 4: return product_avx512<4, 2>;
    case 5: return product_avx512<5, 2>;
    case 6: return product_avx512<6, 2>;
    case 7: return product_avx512<7, 1>;
    default: return product_avx512<8, 1>;
  }
}

// Up to 8 rows per pass: 8 rows x 1 accumulator + 4 value vectors fit AVX2's 16 registers.
Product avx2_product(int64_t rows) {
  switch (rows) {
    case 1: return product_avx2<1, 4>;
    case 2: return product_avx2<2, 4>;
    case 3: return product_avx2<3, 2>;
    case 4: return product_avx2<4, 2>;
    case 5: return product_avx2<5, 1>;
    case 6: return product_avx2<6, 1>;
    case 7: return product_avx2<7, 1>;
    default: return product_avx2<8, 1>;
  }
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return yes;
}

bool has_avx512() {
  static const bool yes = has_avx2() && __builtin_cpu_supports("avx512f");
  return yes;
}

}  // namespace

bool block_isa_available(BlockIsa isa) {
  return isa == BlockIsa::portable || (isa == BlockIsa::avx2 && has_avx2()) || (isa == BlockIsa::avx512 && has_avx512());
}

BlockIsa best_block_isa() { return has_avx512() ? BlockIsa::avx512 : has_avx2() ? BlockIsa::avx2 : BlockIsa::portable; }

int64_t max_block_rows() { return best_block_isa() == BlockIsa::avx512 ? 16 : 8; }

int64_t block_bytes(BlockFormat format) { return format == BlockFormat::q4_1 ? 20 : 34; }

BlockWeight block_rows(const BlockWeight& w, int64_t begin, int64_t end) {
  TLM_CHECK(w.defined() && 0 <= begin && begin < end && end <= w.out_features(), "block_rows: [", begin, ", ", end,
            ") of ", w.defined() ? w.out_features() : 0, " rows");
  return {w.format, w.bytes.narrow(0, begin, end - begin).clone(), w.in_features};
}

BlockWeight block_columns(const BlockWeight& w, int64_t begin, int64_t end) {
  TLM_CHECK(w.defined() && 0 <= begin && begin < end && end <= w.in_features && begin % kBlock == 0 &&
                end % kBlock == 0,
            "block_columns: [", begin, ", ", end, ") of ", w.in_features, " columns is not a run of whole blocks");
  const int64_t bb = block_bytes(w.format);
  return {w.format, w.bytes.narrow(1, begin / kBlock * bb, (end - begin) / kBlock * bb).contiguous(), end - begin};
}

BlockWeight concat_block_rows(const std::vector<const BlockWeight*>& parts) {
  TLM_CHECK(!parts.empty(), "concat_block_rows: no parts");
  std::vector<at::Tensor> bytes;
  for (const BlockWeight* p : parts) {
    TLM_CHECK(p->defined() && p->format == parts[0]->format && p->in_features == parts[0]->in_features,
              "concat_block_rows: parts of different formats or input sizes");
    bytes.push_back(p->bytes);
  }
  return {parts[0]->format, at::cat(bytes, 0), parts[0]->in_features};
}

at::Tensor block_product(const at::Tensor& x2d, const BlockWeight& w) { return block_product(x2d, w, best_block_isa()); }

at::Tensor block_product(const at::Tensor& x2d, const BlockWeight& w, BlockIsa isa) {
  TLM_CHECK(block_isa_available(isa), "block_product: this CPU cannot run the ",
            isa == BlockIsa::avx512 ? "AVX-512" : "AVX2", " kernel");
  TLM_CHECK(w.defined() && x2d.dim() == 2 && x2d.size(1) == w.in_features && x2d.scalar_type() == at::kFloat &&
                x2d.device().is_cpu() && x2d.is_contiguous(),
            "block_product: x ", x2d.sizes(), " ", toString(x2d.scalar_type()), " does not fit a block weight of ",
            w.in_features, " inputs");
  const int64_t rows = x2d.size(0), K = w.in_features, N = w.out_features();
  at::Tensor y = at::empty({rows, N}, x2d.options());
  const float* x = x2d.data_ptr<float>();
  float* out = y.data_ptr<float>();
  // About 16 KiB of blocks per task: enough work to pay for a thread, enough tasks to share.
  const int64_t grain = std::max<int64_t>(16, 16384 / std::max<int64_t>(1, w.bytes.size(1)));
  for (int64_t r0 = 0; r0 < rows; r0 += 8) {
    const int64_t R = std::min<int64_t>(8, rows - r0);
    const float* xr = x + r0 * K;
    float* yr = out + r0 * N;
    at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
      if (isa == BlockIsa::avx512) avx512_product(R)(xr, K, w, n0, n1, yr, N);
      else if (isa == BlockIsa::avx2) avx2_product(R)(xr, K, w, n0, n1, yr, N);
      else product_portable(xr, R, K, w, n0, n1, yr, N);
    });
  }
  return y;
}

at::Tensor dequantize_blocks(const BlockWeight& w) {
  TLM_CHECK(w.defined(), "dequantize_blocks: no blocks");
  const int64_t N = w.out_features(), K = w.in_features, bb = block_bytes(w.format);
  at::Tensor out = at::empty({N, K}, at::kFloat);
  const uint8_t* base = w.bytes.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t blk = 0; blk < K / kBlock; ++blk)
      dequantize_block(w.format, base + n * w.bytes.size(1) + blk * bb, o + n * K + blk * kBlock);
  return out;
}

}  // namespace tlm
