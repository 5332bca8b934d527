// The option group every model-running subcommand shares (--model, --dtype, ...), and the
// one function that turns it into a loaded model. Thin on purpose: engine/ never sees argv.
#pragma once

#include <memory>
#include <string>

#include <cxxopts.hpp>

#include "dist/process_grid.h"
#include "engine/generate/prompt_encoder.h"
#include "engine/model/llama_model.h"
#include "engine/model/model_files.h"

namespace tlm {

struct ModelOptions {
  std::string model;           // HF directory or .gguf file
  std::string device = "auto"; // auto | cpu | cuda | cuda:N
  std::string dtype = "auto";  // auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
  std::string chat_template = "auto";
  int64_t cutoff_len = 0;
  int threads = 0;             // 0 = LibTorch's default
  int tp_size = 1;
  int dp_size = 1;
  std::string backend = "auto";     // auto | single | mpi | nccl
  double collective_timeout = 300;  // seconds; <= 0 = forever
  bool data_parallel_ok = false;    // only tlm adapt splits its work over DP replicas
  std::string packed_weights = "auto";  // auto (on for CPU fp32) | on | off
  std::string weights = "fp32";         // fp32 | gguf (also the GGUF's Q4_1/Q8_0 blocks, for decoding)
  bool trains = false;              // the command takes gradients: pack for backward too
};

struct LoadedModel {
  ProcessGrid grid;
  ModelFiles files;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<PromptEncoder> encoder;
};

void add_model_options(cxxopts::Options& options, int64_t default_cutoff_len);
ModelOptions read_model_options(const cxxopts::ParseResult& parsed);
// The compute dtype for `dtype` ("auto": bf16 on CUDA, fp32 elsewhere) on `device`. bf16 on a
// CPU without native bf16 matrix units is allowed but warned about loudly (see the .cpp).
at::ScalarType resolve_dtype(const std::string& dtype, const c10::Device& device);
// Whether a model on `device` in `dtype` holds packed weights under --packed-weights `setting`
// ("on" where it cannot is an error).
// Throws "<origin>: weights must be fp32 or gguf" for anything else.
void check_weights_setting(const std::string& weights, const std::string& origin);
bool wants_packed_weights(const std::string& setting, const c10::Device& device, at::ScalarType dtype);
// Builds the process grid (every rank of a job calls this), then loads this rank's slices.
// Ranks other than 0 print nothing on stdout and log warnings and errors only.
LoadedModel load_model(const ModelOptions& options);

}  // namespace tlm
