#include "engine/learn/peft_adapter.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "engine/common/atomic_file.h"
#include "engine/common/error.h"
#include "engine/formats/safetensors_file.h"
#include "engine/formats/safetensors_writer.h"

namespace tlm {
namespace {

namespace fs = std::filesystem;
const std::string kPrefix = "base_model.model.";
const std::string kWeight = ".weight";
const std::string kLnTuning = ".ln_tuning_layers";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

void write_config(const std::string& directory, const nlohmann::json& cfg) {
  write_file_atomically((fs::path(directory) / "adapter_config.json").string(), cfg.dump(2) + "\n");
}

}  // namespace

void save_peft_adapter(const std::string& directory, const std::map<std::string, at::Tensor>& state,
                       const LoraConfig& config, const std::string& base_model) {
  fs::create_directories(directory);
  std::vector<at::Tensor> keep;
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, tensor] : state) {
    at::Tensor t = tensor.detach().to(at::kCPU, at::kFloat).contiguous();  // from any device
    keep.push_back(t);
    entries.push_back({kPrefix + name + ".weight", StDtype::F32, t.sizes().vec(), t.data_ptr()});
  }
  write_safetensors((fs::path(directory) / "adapter_model.safetensors").string(), entries,
                    {{"format", "pt"}});
  nlohmann::json cfg = {
      {"peft_type", "LORA"}, {"task_type", "CAUSAL_LM"}, {"r", config.rank},
      {"lora_alpha", config.alpha}, {"lora_dropout", config.dropout},
      {"target_modules", config.targets}, {"bias", "none"}, {"fan_in_fan_out", false},
      {"inference_mode", true}, {"init_lora_weights", true}, {"use_rslora", false},
      {"use_dora", false}, {"modules_to_save", nullptr}, {"base_model_name_or_path", base_model}};
  write_config(directory, cfg);
}

void save_peft_ln_tuning(const std::string& directory, const std::map<std::string, at::Tensor>& state,
                         const std::vector<std::string>& targets, const std::string& base_model) {
  fs::create_directories(directory);
  std::vector<at::Tensor> keep;
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, tensor] : state) {
    TLM_CHECK(ends_with(name, kWeight), "save_peft_ln_tuning: '", name, "' is not <module>.weight");
    at::Tensor t = tensor.detach().to(at::kCPU, at::kFloat).contiguous();
    keep.push_back(t);
    const std::string module = name.substr(0, name.size() - kWeight.size());
    entries.push_back({kPrefix + module + kLnTuning + kWeight, StDtype::F32, t.sizes().vec(), t.data_ptr()});
  }
  write_safetensors((fs::path(directory) / "adapter_model.safetensors").string(), entries, {{"format", "pt"}});
  nlohmann::json cfg = {{"peft_type", "LN_TUNING"}, {"task_type", "CAUSAL_LM"}, {"target_modules", targets},
                        {"inference_mode", true}, {"modules_to_save", nullptr}, {"exclude_modules", nullptr},
                        {"base_model_name_or_path", base_model}};
  write_config(directory, cfg);
}

void save_peft(const std::string& directory, const std::map<std::string, at::Tensor>& state,
               const nlohmann::json& description, const std::string& base_model, const std::string& source,
               double lora_dropout) {
  try {
    if (description.value("trainable", "lora") == "norm-affine") {
      save_peft_ln_tuning(directory, state, description.at("norm_targets").get<std::vector<std::string>>(), base_model);
      return;
    }
    LoraConfig config;
    config.rank = description.at("lora_rank").get<int64_t>();
    config.alpha = description.at("lora_alpha").get<double>();
    config.targets = description.at("lora_targets").get<std::vector<std::string>>();
    config.dropout = lora_dropout;
    save_peft_adapter(directory, state, config, base_model);
  } catch (const nlohmann::json::exception& e) {
    TLM_FAIL(source, ": the method record lacks a field of its trainable set (", e.what(), ")");
  }
}

namespace {

// adapter_config.json's numbers, checked before use: nlohmann's get<int64_t>() of a float such
// as 8.9e37 is undefined behaviour (found by fuzz.peft_adapter), and a rank beyond any model
// width would only end in a failed allocation.
int64_t lora_rank_field(const nlohmann::json& cfg, const std::string& path) {
  const nlohmann::json& v = cfg.at("r");
  TLM_CHECK(v.is_number_integer(), path, ": field 'r' (the LoRA rank) must be an integer, got ", v.dump());
  TLM_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= 65536, path, ": field 'r' must be in [1, 65536], got ",
            v.dump());
  const int64_t r = v.get<int64_t>();
  TLM_CHECK(r >= 1 && r <= 65536, path, ": field 'r' must be in [1, 65536], got ", r);
  return r;
}

double number_field(const nlohmann::json& cfg, const char* key, double fallback, double lo, double hi,
                    const char* range, const std::string& path) {
  if (!cfg.contains(key) || cfg.at(key).is_null()) return fallback;
  const nlohmann::json& v = cfg.at(key);
  TLM_CHECK(v.is_number(), path, ": field '", key, "' must be a number, got ", v.dump());
  const double x = v.get<double>();
  TLM_CHECK(std::isfinite(x) && x >= lo && x <= hi, path, ": field '", key, "' must be in ", range, ", got ",
            v.dump());
  return x;
}

}  // namespace

PeftAdapter load_peft_adapter(const std::string& directory) {
  const std::string cfg_path = (fs::path(directory) / "adapter_config.json").string();
  std::ifstream in(cfg_path);
  TLM_CHECK(in.good(), cfg_path, ": cannot open (is ", directory, " a PEFT adapter directory?)");
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (a number like 1e999999)
    TLM_FAIL(cfg_path, ": not valid JSON (", e.what(), ")");
  }
  PeftAdapter adapter;
  try {
    const std::string type = cfg.value("peft_type", "");
    TLM_CHECK(type == "LORA" || type == "LN_TUNING", cfg_path, ": field 'peft_type' is '", type,
              "', tlm reads LORA and LN_TUNING adapters");
    const nlohmann::json& targets = cfg.at("target_modules");
    const std::vector<std::string> names =
        targets.is_string() ? std::vector<std::string>{targets.get<std::string>()} : targets.get<std::vector<std::string>>();
    if (type == "LN_TUNING") {
      adapter.kind = TrainableKind::NormAffine;
      adapter.norm_targets = names;
    } else {
      adapter.config.rank = lora_rank_field(cfg, cfg_path);
      TLM_CHECK(cfg.contains("lora_alpha"), cfg_path, ": field 'lora_alpha' is missing");
      adapter.config.alpha = number_field(cfg, "lora_alpha", 0.0, std::numeric_limits<double>::min(),
                                          std::numeric_limits<double>::max(), "(0, inf)", cfg_path);
      adapter.config.dropout = number_field(cfg, "lora_dropout", 0.0, 0.0, 0.999999, "[0, 1)", cfg_path);
      adapter.config.targets = names;
    }
  } catch (const nlohmann::json::exception& e) {
    TLM_FAIL(cfg_path, ": missing or mistyped field (", e.what(), ")");
  }
  SafetensorsFile file((fs::path(directory) / "adapter_model.safetensors").string());
  for (const SafetensorsTensor& t : file.tensors()) {
    std::string name = t.name;
    const bool ln = adapter.kind == TrainableKind::NormAffine;
    const std::string tail = ln ? kLnTuning + kWeight : kWeight;
    TLM_CHECK(name.rfind(kPrefix, 0) == 0 && name.size() > kPrefix.size() + tail.size() && ends_with(name, tail),
              file.path(), ": tensor '", name, "' is not a PEFT ", ln ? "LN-tuning" : "LoRA", " weight name");
    name = name.substr(kPrefix.size(), name.size() - kPrefix.size() - tail.size()) + (ln ? kWeight : "");
    TLM_CHECK(t.dtype == StDtype::F32 || t.dtype == StDtype::F16 || t.dtype == StDtype::BF16,
              file.path(), ": tensor '", t.name, "' has dtype ", st_dtype_name(t.dtype));
    const at::ScalarType dtype = t.dtype == StDtype::F32 ? at::kFloat
                                 : t.dtype == StDtype::F16 ? at::kHalf : at::kBFloat16;
    at::Tensor raw = at::empty(t.shape, dtype);
    std::memcpy(raw.data_ptr(), file.data(t), t.end - t.begin);
    adapter.state[name] = raw.to(at::kFloat);
  }
  return adapter;
}

std::unique_ptr<TrainableSet> attach_peft_adapter(LlamaModel& model, const PeftAdapter& adapter,
                                                  const std::string& source) {
  std::unique_ptr<TrainableSet> set;
  if (adapter.kind == TrainableKind::NormAffine) set = std::make_unique<NormAffine>(model, adapter.norm_targets);
  else set = std::make_unique<LoraAdapters>(model, adapter.config);
  set->load_full_state(adapter.state, source);
  return set;
}

}  // namespace tlm
