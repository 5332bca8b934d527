// Test probe: runs the model on token ids given as JSON so the Python parity tests can
// compare against transformers. Loads config + weights only (tiny test models have no
// tokenizer files).
//   model_probe logits   MODEL IN.json OUT.f32 [fp32|bf16] [DEVICE]  IN = {"ids": [[...]], "mask": [[...]]}
//   model_probe loglik   MODEL IN.json OUT.f32 [chunk_rows] [DEVICE] token log-likelihoods [B, T-1]
//   model_probe generate MODEL IN.json OUT.json N [DEVICE]          greedy, N new tokens, no stop ids
// DEVICE: cpu (default), cuda, cuda:N. A trailing --packed holds the weights in oneDNN's
// packed layout (LlamaModel::pack_weights, as tlm's commands do on CPU by default). A mask of all ones is passed as "no padding" (the
// causal fast path), as tlm's own callers do.
#include <fstream>
#include <iostream>
#include <memory>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "dist/device.h"
#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"
#include "engine/generate/generator.h"
#include "engine/model/llama_model.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_source.h"

namespace {

using nlohmann::json;

struct Loaded {
  std::shared_ptr<const tlm::GgufFile> gguf;
  tlm::ModelConfig config;
  std::unique_ptr<tlm::WeightSource> weights;
};

Loaded open(const std::string& path) {
  Loaded l;
  if (path.size() > 5 && path.substr(path.size() - 5) == ".gguf") {
    l.gguf = std::make_shared<const tlm::GgufFile>(path);
    l.config = tlm::ModelConfig::from_gguf(*l.gguf);
    l.weights = tlm::open_gguf_weights(l.gguf, l.config);
  } else {
    l.config = tlm::ModelConfig::from_hf_json(path + "/config.json");
    l.weights = tlm::open_safetensors_weights(path);
  }
  return l;
}

at::Tensor to_tensor(const json& rows) {
  const int64_t B = static_cast<int64_t>(rows.size());
  const int64_t T = static_cast<int64_t>(rows.at(0).size());
  at::Tensor t = at::zeros({B, T}, at::kLong);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < T; ++i) t[b][i] = rows.at(b).at(i).get<int64_t>();
  return t;
}

void write_f32(const std::string& path, const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).to(at::kCPU).contiguous();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(c.data_ptr<float>()),
            static_cast<std::streamsize>(c.numel() * sizeof(float)));
}

}  // namespace

int main(int argc_in, char** argv) {
  try {
    int argc = argc_in;
    const bool packed = argc > 1 && std::string(argv[argc - 1]) == "--packed";
    if (packed) --argc;
    TLM_CHECK(argc >= 5, "usage: model_probe logits|loglik|generate MODEL IN.json OUT [arg]");
    const std::string mode = argv[1];
    Loaded l = open(argv[2]);
    std::ifstream in(argv[3]);
    const json input = json::parse(in);
    const std::string arg = argc > 5 ? argv[5] : "";
    const c10::Device device = tlm::resolve_device(tlm::parse_device(argc > 6 ? argv[6] : "cpu"), 0,
                                                   tlm::cuda_device_count());
    tlm::make_current(device);
    const at::ScalarType dtype = arg == "bf16" ? at::kBFloat16 : at::kFloat;
    tlm::LlamaModel model(l.config, *l.weights, tlm::make_single_process_communicator(),
                          mode == "logits" ? dtype : at::kFloat, device);
    if (packed) model.pack_weights(/*backward=*/false);
    c10::InferenceMode guard;
    at::Tensor ids = to_tensor(input.at("ids")).to(device);
    at::Tensor mask = to_tensor(input.at("mask"));
    mask = mask.all().item<bool>() ? at::Tensor() : mask.to(device);
    if (mode == "logits") {
      write_f32(argv[4], model.logits(ids, mask));
    } else if (mode == "loglik") {
      write_f32(argv[4], model.token_log_likelihoods(ids, mask, arg.empty() ? 256 : std::stoll(arg)));
    } else if (mode == "generate") {
      std::vector<std::vector<int32_t>> prompts;
      for (const json& row : input.at("prompts")) prompts.push_back(row.get<std::vector<int32_t>>());
      tlm::GenerationOptions options;
      options.max_new_tokens = std::stoll(arg);
      json out = json::array();
      for (const auto& g : tlm::generate(model, prompts, options)) out.push_back(g.ids);
      std::ofstream(argv[4]) << out.dump();
    } else {
      TLM_FAIL("unknown mode ", mode);
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "model_probe: " << e.what() << "\n";
    return 1;
  }
}
