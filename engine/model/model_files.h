// Opens what `--model` points at: an HF model directory (config.json, safetensors,
// tokenizer files) or a single .gguf file, into the config, a weight source, the tokenizer
// and the chat template. The one place that knows both layouts.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/model_config.h"
#include "engine/model/weight_source.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace tlm {

class GgufFile;

struct ModelFiles {
  std::string path;
  std::string format;  // "gguf" or "hf"
  ModelConfig config;
  std::shared_ptr<const GgufFile> gguf;  // set for "gguf"
  std::unique_ptr<WeightSource> weights;  // load_model releases it once the model is built
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<std::string> chat_template_text;  // the model's own Jinja template, if any
  std::vector<int32_t> eos_ids;                   // every id that ends generation
};

// Throws naming the path when it is neither a directory with config.json nor a .gguf file.
ModelFiles open_model_files(const std::string& path);

// The template named `name` ("auto" = recognised from the model's own template text, else
// chatml when the vocabulary has <|im_start|>, else raw).
ChatTemplate resolve_chat_template(const ModelFiles& model, const std::string& name);

}  // namespace tlm
