// TLM_ROW_KERNEL: a plain C++ loop over rows compiled twice, for x86-64-v3 (AVX2 + FMA) and for
// the baseline, the one that runs chosen when the library loads (GCC's target_clones). Files
// using it are compiled with -ffp-contract=off (a product and a sum stay two roundings, as in
// ATen's element-wise kernels) and -fopenmp-simd (their reductions are `omp simd`).
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TLM_ROW_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TLM_ROW_KERNEL
#endif
