// A frozen weight kept in a GGUF file's own quantised blocks, and its product y = x W^T.
//
// The default model's GGUF holds its projections as Q4_1 and its tied output head as Q8_0.
// tlm dequantises them to fp32 at load, so every fp32 product streams 4 bytes per weight from
// memory. Decoding multiplies a few rows by every weight once per token and is bound by that
// stream: on 2 cores at 25 GB/s, the default model's 0.54 GB of fp32 weights alone take 21 ms
// a step. Reading the blocks instead (5 bits per weight for Q4_1, 8.5 for Q8_0) moves about
// a sixth of the bytes.
//
// The weights are the same numbers: a Q4_1 value is d * q + m with d and m fp16 and q a
// 4-bit integer, so d * q is exact in fp32 and one fused multiply-add rounds exactly where the
// fp32 dequantiser's separate add does (engine/formats/ggml_dequant.cpp); a Q8_0 value d * q
// is exact. The products differ from the fp32 ones only in their summation order.
//
// The kernel is AVX2 + FMA + F16C (every x86-64 CPU tlm targets), with a portable C++ loop
// where those are missing and a 16-lane AVX-512 variant where the CPU has it (the summation
// order, so the rounding, differs between the three). It is meant for few rows (decoding):
// see max_block_rows().
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tlm {

enum class BlockFormat {
  q4_1,  // 32 values: fp16 d, fp16 m, 16 bytes of nibbles (value j low, j + 16 high)
  q8_0,  // 32 values: fp16 d, 32 int8
};

struct BlockWeight {
  BlockFormat format = BlockFormat::q8_0;
  at::Tensor bytes;  // uint8 [out, in / 32 * block_bytes(format)] on the CPU; undefined: none
  int64_t in_features = 0;

  bool defined() const { return bytes.defined(); }
  int64_t out_features() const { return bytes.size(0); }
};

// Bytes of one block of 32 values.
int64_t block_bytes(BlockFormat format);

// Products with more rows than this go through the fp32 weight instead: past a few rows the
// product is bound by arithmetic, not by the weight stream, and oneDNN's fp32 GEMM is faster.
// Measured on 2 cores over the default model's weights (fp32 packed / blocks, ms per pass):
// AVX-512 at 8 rows 25 / 12, at 16 rows 30 / 25; AVX2 at 8 rows 26 / 17. So 16 rows where the
// kernel runs 16 lanes wide, 8 where it runs 8.
int64_t max_block_rows();

// The rows [begin, end) of `w` (output features), or its input columns [begin, end) (whole
// blocks only: both multiples of 32), as a new BlockWeight.
BlockWeight block_rows(const BlockWeight& w, int64_t begin, int64_t end);
BlockWeight block_columns(const BlockWeight& w, int64_t begin, int64_t end);
// Output features of several weights with the same input, one after another (a fused group).
BlockWeight concat_block_rows(const std::vector<const BlockWeight*>& parts);

// The kernel variants: each sums in its own order, so results differ between them by rounding.
enum class BlockIsa { portable, avx2, avx512 };
bool block_isa_available(BlockIsa isa);  // this CPU runs it
BlockIsa best_block_isa();               // what block_product uses here

// y [n, out] = x [n, in] W^T, fp32, no bias. x must be contiguous fp32 on the CPU.
at::Tensor block_product(const at::Tensor& x2d, const BlockWeight& w);
// The same with a chosen variant (throws where this CPU cannot run it).
at::Tensor block_product(const at::Tensor& x2d, const BlockWeight& w, BlockIsa isa);

// W as fp32 [out, in] (the same numbers the GGUF dequantiser gives; for tests and checks).
at::Tensor dequantize_blocks(const BlockWeight& w);

}  // namespace tlm
