// tlm-ckpt: inspect the HDF5 checkpoints `tlm adapt --checkpoint-dir` writes.
//   tlm-ckpt ls DIR                 checkpoints with step, samples, time, size, verified or not
//   tlm-ckpt show FILE              identity, method, per-module norms, selection statistics
//   tlm-ckpt diff A B               per-module change between two checkpoints
//   tlm-ckpt verify FILE|DIR        checksums and structure; exit 0 good, 1 bad
//   tlm-ckpt export-peft FILE OUT   adapter_model.safetensors + adapter_config.json for HF PEFT
//   tlm-ckpt merge FILE --base DIR|GGUF OUT   the base model with the adapter folded in (HF directory)
//   tlm-ckpt convert BASE.gguf OUT            a GGUF base as an HF directory
//   tlm-ckpt plot RUN_OR_CKPT OUT.png   a picture of the job (launch/tlm_plot.py, matplotlib)
// Tables for people by default; --json for scripts.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include <ATen/ATen.h>
#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "checkpoints/adapter_checkpoint.h"
#include "engine/common/error.h"
#include "engine/common/atomic_file.h"
#include "engine/common/log.h"
#include "engine/formats/safetensors_writer.h"
#include "engine/learn/job_checkpoints.h"
#include "engine/learn/peft_adapter.h"
#include "engine/model/hf_export.h"
#include "engine/model/model_files.h"
#include "engine/model/weight_source.h"

namespace tlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

double frobenius(const at::Tensor& t) { return t.defined() ? at::linalg_vector_norm(t.to(at::kDouble), 2).item<double>() : 0.0; }

double lora_scale(const CheckpointState& s) {
  const json m = json::parse(s.identity.method_json, nullptr, false);
  if (m.is_discarded() || !m.contains("lora_rank") || !m.contains("lora_alpha")) return 1.0;
  return m["lora_alpha"].get<double>() / m["lora_rank"].get<double>();
}

// Checkpoints of norm-affine tuning hold "<norm>.weight" tensors instead of LoRA A/B.
bool is_norm_affine(const CheckpointState& s) {
  const json m = json::parse(s.identity.method_json, nullptr, false);
  return !m.is_discarded() && m.value("trainable", "lora") == "norm-affine";
}

// "model.layers.10.x" after "model.layers.9.x": digit runs compare as numbers.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const long long x = std::stoll(a.substr(i, ie - i)), y = std::stoll(b.substr(j, je - j));
      if (x != y) return x < y;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// The adapted modules in model order.
std::vector<std::string> modules_of(const CheckpointState& s) {
  std::vector<std::string> out;
  for (const auto& [name, t] : s.adapter) {
    const std::string module = name.substr(0, name.rfind('.'));
    if (std::find(out.begin(), out.end(), module) == out.end()) out.push_back(module);
  }
  std::sort(out.begin(), out.end(), natural_less);
  return out;
}

// Per module: |A|, |B| and |scale * B A| (the weight change the adapter makes).
// Norm-affine: per norm, |w| and mean(w) of the trained weight.
json module_norms(const CheckpointState& s) {
  json rows = json::array();
  const double scale = lora_scale(s);
  for (const std::string& m : modules_of(s)) {
    if (is_norm_affine(s)) {
      const at::Tensor& w = s.adapter.at(m + ".weight");
      rows.push_back({{"module", m}, {"norm_weight", frobenius(w)}, {"mean_weight", w.mean().item<double>()}});
      continue;
    }
    const at::Tensor& A = s.adapter.at(m + ".lora_A");
    const at::Tensor& B = s.adapter.at(m + ".lora_B");
    rows.push_back({{"module", m}, {"norm_A", frobenius(A)}, {"norm_B", frobenius(B)},
                    {"norm_delta", frobenius(at::matmul(B, A) * scale)}});
  }
  return rows;
}

json stats_summary(const CheckpointState& s) {
  json out = {{"steps_recorded", 0}};
  auto get = [&](const char* k) -> const std::vector<double>* {
    auto it = s.stats.find(k);
    return it == s.stats.end() ? nullptr : &it->second;
  };
  const auto* samples = get("samples");
  const auto* selected = get("selected");
  const auto* loss = get("loss");
  const auto* ce = get("ce_mean");
  if (samples) out["steps_recorded"] = samples->size();
  if (samples && selected && !samples->empty()) {
    double n = 0, k = 0;
    for (size_t i = 0; i < samples->size(); ++i) {
      n += (*samples)[i];
      k += (*selected)[i];
    }
    out["samples"] = n;
    out["selected"] = k;
    out["selected_fraction"] = n > 0 ? k / n : 0.0;
  }
  if (loss && !loss->empty()) out["last_loss"] = loss->back();
  if (ce && !ce->empty()) {
    out["first_ce_mean"] = ce->front();
    out["last_ce_mean"] = ce->back();
  }
  return out;
}

// The method's own state (e.g. EATA's moving average): name, shape, norm.
json method_state_summary(const CheckpointState& s) {
  json out = json::array();
  for (const auto& [name, t] : s.method_state)
    out.push_back({{"name", name}, {"shape", t.sizes().vec()}, {"norm", frobenius(t)}});
  return out;
}

json describe(const std::string& path, const CheckpointState& s) {
  const CheckpointIdentity& id = s.identity;
  return {{"file", path}, {"format_version", kCheckpointFormatVersion},
          {"engine_version", id.engine_version}, {"created_utc", id.created_utc},
          {"base_model", {{"path", id.base_model_path}, {"config_hash", id.base_config_hash},
                          {"weights_hash", id.base_weights_hash}}},
          {"layout_at_save", {{"tp", id.tp_at_save}, {"dp", id.dp_at_save}}},
          {"method", json::parse(id.method_json, nullptr, false)},
          {"state", {{"global_step", s.global_step}, {"samples_consumed", s.samples_consumed},
                     {"stream", s.stream_identity}, {"stream_offset", s.stream_offset},
                     {"optimizer_step", s.optimizer_step}}},
          {"modules", module_norms(s)}, {"stats", stats_summary(s)}, {"method_state", method_state_summary(s)}};
}

std::string num(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

int cmd_show(const std::string& file, bool as_json) {
  const CheckpointState s = AdapterCheckpoint::load(file);
  const json d = describe(file, s);
  if (as_json) {
    std::cout << d.dump(2) << "\n";
    return 0;
  }
  std::cout << file << "\n"
            << "  created      " << s.identity.created_utc << " by " << s.identity.engine_version << "\n"
            << "  base model   " << s.identity.base_model_path << " (config " << s.identity.base_config_hash
            << ", weights " << (s.identity.base_weights_hash.empty() ? "not recorded" : s.identity.base_weights_hash) << ")\n"
            << "  layout       tp " << s.identity.tp_at_save << " x dp " << s.identity.dp_at_save << " at save\n"
            << "  state        step " << s.global_step << ", " << s.samples_consumed << " samples consumed of "
            << s.stream_identity << ", optimizer step " << s.optimizer_step << "\n"
            << "  method       " << s.identity.method_json << "\n";
  const json st = d["stats"];
  if (st.contains("selected_fraction"))
    std::cout << "  selection    " << st["selected"].get<double>() << " of " << st["samples"].get<double>()
              << " samples selected (" << num(100 * st["selected_fraction"].get<double>(), 3) << "%) over "
              << st["steps_recorded"] << " steps; mean ce " << num(st["first_ce_mean"].get<double>()) << " (first step) -> "
              << num(st["last_ce_mean"].get<double>()) << " (last); last loss " << num(st["last_loss"].get<double>()) << "\n";
  for (const json& m : d["method_state"])
    std::cout << "  state of the method  " << m["name"].get<std::string>() << " " << m["shape"].dump() << ", norm "
              << num(m["norm"].get<double>()) << "\n";
  if (is_norm_affine(s)) {
    std::cout << "  norm (trained weight)                         |w|        mean(w)\n";
    for (const json& m : d["modules"]) {
      char line[256];
      std::snprintf(line, sizeof line, "  %-44s %-10s %s\n", m["module"].get<std::string>().c_str(),
                    num(m["norm_weight"].get<double>()).c_str(), num(m["mean_weight"].get<double>()).c_str());
      std::cout << line;
    }
    return 0;
  }
  std::cout << "  module                                        |A|        |B|        |scale*B*A|\n";
  for (const json& m : d["modules"]) {
    char line[256];
    std::snprintf(line, sizeof line, "  %-44s %-10s %-10s %s\n", m["module"].get<std::string>().c_str(),
                  num(m["norm_A"].get<double>()).c_str(), num(m["norm_B"].get<double>()).c_str(),
                  num(m["norm_delta"].get<double>()).c_str());
    std::cout << line;
  }
  return 0;
}

int cmd_verify_one(const std::string& file, bool as_json, double timeout) {
  const VerifyReport r = AdapterCheckpoint::verify(file, timeout);
  if (as_json) {
    std::cout << json{{"file", file}, {"ok", r.ok}, {"problems", r.problems}}.dump(2) << "\n";
  } else if (r.ok) {
    std::cout << file << ": OK (structure, Fletcher32 and crc32 of every tensor)\n";
  } else {
    std::cout << file << ": BAD\n";
    for (const std::string& p : r.problems) std::cout << "  " << p << "\n";
  }
  return r.ok ? 0 : 1;
}

// A file, or every checkpoint (step-N.h5) of a folder: exit 0 only when all verify.
int cmd_verify(const std::string& path, bool as_json, double timeout) {
  if (!fs::is_directory(path)) return cmd_verify_one(path, as_json, timeout);
  const auto found = list_checkpoints(path);
  TLM_CHECK(!found.empty(), path, ": a folder without checkpoints (step-N.h5); verify takes a checkpoint file or ",
            "a checkpoint folder");
  int bad = 0;
  for (const auto& [step, file] : found) bad += cmd_verify_one(file, as_json, timeout);
  if (!as_json) std::cout << path << ": " << found.size() - static_cast<size_t>(bad) << " of " << found.size()
                          << " checkpoints verify\n";
  return bad == 0 ? 0 : 1;
}

int cmd_ls(const std::string& dir, bool as_json) {
  TLM_CHECK(fs::is_directory(dir), dir, ": not a directory");
  struct Row { int64_t step; json j; };
  std::vector<Row> rows;
  int64_t temporary = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (is_temporary_checkpoint_name(name)) {
      ++temporary;
      continue;
    }
    if (e.path().extension() != ".h5") continue;
    const std::string path = e.path().string();
    const VerifyReport r = AdapterCheckpoint::verify(path);
    json j = {{"file", name}, {"bytes", fs::file_size(e.path())}, {"verified", r.ok}};
    int64_t step = -1;
    if (r.ok) {
      const CheckpointState s = AdapterCheckpoint::load(path);
      step = s.global_step;
      j["step"] = s.global_step;
      j["samples"] = s.samples_consumed;
      j["created_utc"] = s.identity.created_utc;
    } else {
      j["problem"] = r.problems.empty() ? "" : r.problems.front();
    }
    rows.push_back({step, j});
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.step < b.step; });
  if (as_json) {
    json out = json::array();
    for (const Row& r : rows) out.push_back(r.j);
    std::cout << json{{"directory", dir}, {"checkpoints", out}, {"temporary_files", temporary}}.dump(2) << "\n";
    return 0;
  }
  std::cout << "step    samples  created               size       verified  file\n";
  for (const Row& r : rows) {
    char line[512];
    const json& j = r.j;
    std::snprintf(line, sizeof line, "%-7s %-8s %-21s %-10s %-9s %s\n",
                  j.contains("step") ? std::to_string(j["step"].get<int64_t>()).c_str() : "?",
                  j.contains("samples") ? std::to_string(j["samples"].get<int64_t>()).c_str() : "?",
                  j.value("created_utc", std::string("?")).c_str(),
                  (num(j["bytes"].get<double>() / (1024.0 * 1024.0), 3) + " MiB").c_str(),
                  j["verified"].get<bool>() ? "yes" : "NO", j["file"].get<std::string>().c_str());
    std::cout << line;
    if (!j["verified"].get<bool>()) std::cout << "        " << j["problem"].get<std::string>() << "\n";
  }
  if (temporary) std::cout << temporary << " temporary file(s) of interrupted saves (not checkpoints)\n";
  return 0;
}

int cmd_diff(const std::string& a_path, const std::string& b_path, bool as_json) {
  const CheckpointState a = AdapterCheckpoint::load(a_path), b = AdapterCheckpoint::load(b_path);
  TLM_CHECK(modules_of(a) == modules_of(b), a_path, " and ", b_path, " adapt different modules");
  TLM_CHECK(is_norm_affine(a) == is_norm_affine(b), a_path, " and ", b_path, " train different sets (LoRA, norm-affine)");
  json rows = json::array();
  const double sa = lora_scale(a), sb = lora_scale(b);
  for (const std::string& m : modules_of(a)) {
    if (is_norm_affine(a)) {
      const at::Tensor &w1 = a.adapter.at(m + ".weight"), &w2 = b.adapter.at(m + ".weight");
      TLM_CHECK(w1.sizes() == w2.sizes(), "norm ", m, ": shapes differ: ", w1.sizes(), " vs ", w2.sizes());
      const double change = frobenius(w2 - w1);
      rows.push_back({{"module", m}, {"change_A", change}, {"change_B", 0.0}, {"change_delta", change}});
      continue;
    }
    const at::Tensor &A1 = a.adapter.at(m + ".lora_A"), &B1 = a.adapter.at(m + ".lora_B");
    const at::Tensor &A2 = b.adapter.at(m + ".lora_A"), &B2 = b.adapter.at(m + ".lora_B");
    TLM_CHECK(A1.sizes() == A2.sizes() && B1.sizes() == B2.sizes(), "module ", m, ": shapes differ: A ",
              A1.sizes(), " vs ", A2.sizes(), ", B ", B1.sizes(), " vs ", B2.sizes());
    rows.push_back({{"module", m}, {"change_A", frobenius(A2 - A1)}, {"change_B", frobenius(B2 - B1)},
                    {"change_delta", frobenius(at::matmul(B2, A2) * sb - at::matmul(B1, A1) * sa)}});
  }
  if (as_json) {
    std::cout << json{{"a", a_path}, {"b", b_path}, {"steps", {a.global_step, b.global_step}}, {"modules", rows}}.dump(2) << "\n";
    return 0;
  }
  std::cout << a_path << " (step " << a.global_step << ") -> " << b_path << " (step " << b.global_step << ")\n";
  std::cout << "  module                                        |dA|       |dB|       |d(scale*B*A)|\n";
  for (const json& r : rows) {
    char line[256];
    std::snprintf(line, sizeof line, "  %-44s %-10s %-10s %s\n", r["module"].get<std::string>().c_str(),
                  num(r["change_A"].get<double>()).c_str(), num(r["change_B"].get<double>()).c_str(),
                  num(r["change_delta"].get<double>()).c_str());
    std::cout << line;
  }
  return 0;
}

// `base_name`: what adapter_config.json names as the base (default: the run's --model). PEFT
// cannot load a .gguf path: name the directory `tlm-ckpt convert` wrote from it.
int cmd_export_peft(const std::string& file, const std::string& out, const std::string& base_name, bool as_json) {
  const CheckpointState s = AdapterCheckpoint::load(file);
  const json m = json::parse(s.identity.method_json, nullptr, false);
  TLM_CHECK(!m.is_discarded(), file, ": the method attribute is not JSON");
  const std::string base = base_name.empty() ? s.identity.base_model_path : base_name;
  save_peft(out, s.adapter, m, base, file);
  if (base.size() > 5 && base.substr(base.size() - 5) == ".gguf")
    log_warn(str_cat(out, "/adapter_config.json names the GGUF base ", base, ", which PEFT cannot load: run `tlm-ckpt ",
                     "convert ", base, " DIR` and export with --base DIR"));
  const bool ln = is_norm_affine(s);
  if (as_json) std::cout << json{{"file", file}, {"peft_adapter", out}, {"peft_type", ln ? "LN_TUNING" : "LORA"},
                                 {"tensors", s.adapter.size()}}.dump(2) << "\n";
  else if (ln) std::cout << file << " -> " << out << " (" << s.adapter.size() << " norm weights, LN tuning)\n";
  else std::cout << file << " -> " << out << " (" << s.adapter.size() << " tensors, r=" << m.value("lora_rank", 0)
                 << ", alpha=" << m.value("lora_alpha", 0.0) << ")\n";
  return 0;
}

// The HF directory of `base` in OUT: W + scale * B A for every projection `adapter` adapts (a
// norm-affine checkpoint's tuned norms replace the base ones; no checkpoint: the base as it is),
// every other tensor as it is, in fp32 as OUT/model.safetensors. An HF base's config and
// tokenizer files are copied beside it; a GGUF base's are written from its metadata
// (config.json, generation_config.json, and for a byte-level BPE vocabulary tokenizer.json +
// tokenizer_config.json), its weights dequantised with q/k rows in HF order: transformers loads
// OUT as a plain model. Returns the modules changed.
int64_t write_hf_model(const std::string& base, ModelFiles& files, const CheckpointState* ckpt,
                       const std::string& file, const std::string& out) {
  const bool gguf = files.format == "gguf";
  const std::map<std::string, at::Tensor> none;
  const std::map<std::string, at::Tensor>& adapter = ckpt ? ckpt->adapter : none;
  const double scale = ckpt && !is_norm_affine(*ckpt) ? lora_scale(*ckpt) : 1.0;
  std::vector<std::string> names;
  GgufTokenizerFiles tokenizer_files;  // a GGUF base: built first, so an unsupported vocabulary fails early
  if (gguf) {
    tokenizer_files = hf_tokenizer_files_from_gguf(*files.gguf);
    for (const std::string& n : hf_tensor_names(files.config))
      if (files.weights->has(n)) names.push_back(n);
  } else {
    names = SafetensorsModel(base).tensor_names();
  }
  std::vector<at::Tensor> keep;
  std::vector<SafetensorsEntry> entries;
  int64_t merged = 0, used = 0;  // modules merged, checkpoint tensors used
  // A Gemma GGUF stores its norms as 1 + w (llama.cpp's converter); HF's files hold w.
  const bool norms_hold_one = gguf && files.config.sandwich_norms && !files.config.norm_plus_one;
  auto is_norm = [](const std::string& n) { return n.find("norm.weight") != std::string::npos; };
  for (const std::string& name : names) {
    at::Tensor w = files.weights->load(name, WeightSlice::whole()).to(at::kFloat).contiguous();
    if (norms_hold_one && is_norm(name)) w = (w - 1.0).contiguous();
    const std::string module = name.size() > 7 ? name.substr(0, name.size() - 7) : "";
    auto a = adapter.find(module + ".lora_A");
    auto tuned = adapter.find(name);  // norm-affine: the trained norm weight replaces the base one
    if (tuned != adapter.end()) {
      TLM_CHECK(tuned->second.sizes() == w.sizes(), file, ": '", name, "' is ", tuned->second.sizes(),
                " but the base weight is ", w.sizes());
      w = tuned->second.to(at::kFloat).contiguous();
      ++merged;
      ++used;
    } else if (name.size() > 7 && name.substr(name.size() - 7) == ".weight" && a != adapter.end()) {
      const at::Tensor delta = at::matmul(adapter.at(module + ".lora_B"), a->second) * scale;
      TLM_CHECK(delta.sizes() == w.sizes(), file, ": module '", module, "': B A is ", delta.sizes(),
                " but the base weight is ", w.sizes());
      w = (w + delta).contiguous();
      ++merged;
      used += 2;
    }
    keep.push_back(w);
    entries.push_back({name, StDtype::F32, w.sizes().vec(), w.data_ptr()});
  }
  TLM_CHECK(used == static_cast<int64_t>(adapter.size()), file, ": ", adapter.size(),
            " adapter tensors but only ", used, " of them found a module in ", base);
  fs::create_directories(out);
  write_safetensors((fs::path(out) / "model.safetensors").string(), entries, {{"format", "pt"}});
  if (gguf) {
    auto write_json = [&](const std::string& name, const json& j) {
      write_file_atomically((fs::path(out) / name).string(), j.dump(2) + "\n");
    };
    write_json("config.json", hf_config_json(files.config));
    write_json("generation_config.json", hf_generation_config_json(files.config, files.eos_ids));
    write_json("tokenizer.json", tokenizer_files.tokenizer);
    write_json("tokenizer_config.json", tokenizer_files.tokenizer_config);
  } else {
    for (const auto& e : fs::directory_iterator(base)) {
      const std::string name = e.path().filename().string();
      if (e.path().extension() == ".safetensors" || name == "model.safetensors.index.json" || !e.is_regular_file()) continue;
      fs::copy_file(e.path(), fs::path(out) / name, fs::copy_options::overwrite_existing);
    }
  }
  return merged;
}

ModelFiles open_base(const std::string& base) {
  TLM_CHECK(fs::exists(base) && (!fs::is_directory(base) || fs::exists(fs::path(base) / "config.json")), base,
            ": merge needs an HF model directory (config.json + safetensors) or a .gguf file as --base");
  return open_model_files(base);
}

int cmd_merge(const std::string& file, const std::string& base, const std::string& out, bool as_json) {
  ModelFiles files = open_base(base);
  const CheckpointState s = AdapterCheckpoint::load(file);
  const std::string fingerprint = content_fingerprint(files.config.summary());
  TLM_CHECK(fingerprint == s.identity.base_config_hash, file, ": saved for a base model with config fingerprint ",
            s.identity.base_config_hash, " (", s.identity.base_model_path, "), ", base, " has ", fingerprint);
  const int64_t merged = write_hf_model(base, files, &s, file, out);
  if (as_json) std::cout << json{{"file", file}, {"base", base}, {"out", out}, {"merged_modules", merged}}.dump(2) << "\n";
  else std::cout << file << " + " << base << " -> " << out << " (" << merged << (is_norm_affine(s) ? " norms replaced" : " projections merged, scale " + num(lora_scale(s))) << ")\n";
  return 0;
}

// A GGUF base as an HF directory (what merge writes, without an adapter): the base PEFT
// adapters exported from a GGUF-based run can name (export-peft --base).
int cmd_convert(const std::string& base, const std::string& out, bool as_json) {
  ModelFiles files = open_base(base);
  TLM_CHECK(files.format == "gguf", base, ": convert takes a .gguf file (an HF directory is already one)");
  write_hf_model(base, files, nullptr, base, out);
  if (as_json) std::cout << json{{"base", base}, {"out", out}}.dump(2) << "\n";
  else std::cout << base << " -> " << out << " (HF directory, fp32)\n";
  return 0;
}

// The picture of a job (launch/tlm_plot.py, matplotlib): runs the configured Python on it.
int cmd_plot(const std::string& source, const std::string& out, const std::string& python, const std::string& smooth) {
  TLM_CHECK(!python.empty(), "tlm-ckpt plot needs a Python with matplotlib and h5py: give --python PATH (the build ",
            "was configured without TLM_PYTHON)");
  TLM_CHECK(fs::exists(source), source, ": no such run folder, checkpoint folder or file");
  std::vector<std::string> argv_s = {python, TLM_PLOT_SCRIPT, source, out};
  if (!smooth.empty()) argv_s.insert(argv_s.end(), {"--smooth", smooth});
  std::vector<char*> argv_c;
  for (std::string& a : argv_s) argv_c.push_back(a.data());
  argv_c.push_back(nullptr);
  std::cout.flush();
  ::execv(python.c_str(), argv_c.data());
  TLM_FAIL("tlm-ckpt plot: cannot run ", python, ": ", std::strerror(errno));
}

void usage(std::ostream& os) {
  os << "tlm-ckpt: inspect tlm's HDF5 adapter checkpoints\n\n"
        "  tlm-ckpt ls DIR [--json]\n"
        "  tlm-ckpt show FILE [--json]\n"
        "  tlm-ckpt diff A B [--json]\n"
        "  tlm-ckpt verify FILE|DIR [--json] [--timeout S]  exit 0 when it (every step-N.h5 of DIR)\n"
        "      verifies, 1 when not (a file HDF5 crashes on, or reads for more than S s, default 120, is damaged)\n"
        "  tlm-ckpt export-peft FILE OUT [--base NAME] [--json] adapter_model.safetensors + adapter_config.json\n"
        "      (NAME: the base it names, default the run's --model)\n"
        "  tlm-ckpt convert BASE.gguf OUT [--json]  a GGUF base as an HF directory (fp32) PEFT and transformers load\n"
        "  tlm-ckpt merge FILE --base DIR|GGUF OUT [--json]  base (HF directory or .gguf) with the adapter folded in,\n"
        "                                          written as an HF directory\n"
        "  tlm-ckpt plot RUN_OR_CKPT OUT.png [--smooth N] [--python PATH]  input perplexity, selected\n"
        "      fraction, loss and lr per step, skipped updates and guard events, from a run folder's\n"
        "      metrics.jsonl or a checkpoint's /stats (a step-N.h5 or the newest of a folder)\n";
}

}  // namespace
}  // namespace tlm

int main(int argc, char** argv) {
  std::vector<std::string> args;
  bool as_json = false;
  std::string base, python = TLM_PLOT_PYTHON, smooth;
  double timeout = 120.0;  // verify: seconds HDF5 may take on one file before it counts as damaged
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") as_json = true;
    else if (a == "--base" && i + 1 < argc) base = argv[++i];
    else if (a == "--python" && i + 1 < argc) python = argv[++i];
    else if (a == "--smooth" && i + 1 < argc) smooth = argv[++i];
    else if (a == "--timeout" && i + 1 < argc) timeout = std::atof(argv[++i]);
    else if (a == "-h" || a == "--help") {
      tlm::usage(std::cout);
      return 0;
    } else args.push_back(a);
  }
  if (args.empty()) {
    tlm::usage(std::cerr);
    return 2;
  }
  const std::string cmd = args[0];
  const size_t want =
      cmd == "diff" || cmd == "export-peft" || cmd == "merge" || cmd == "plot" || cmd == "convert" ? 3 : 2;
  const bool known = cmd == "ls" || cmd == "show" || cmd == "diff" || cmd == "verify" || cmd == "export-peft" ||
                     cmd == "merge" || cmd == "plot" || cmd == "convert";
  if (cmd == "merge" && base.empty()) {
    std::cerr << "tlm-ckpt merge: --base DIR or --base FILE.gguf is required\n";
    return 2;
  }
  if (!known || args.size() != want) {
    std::cerr << "tlm-ckpt: " << (known ? "wrong number of arguments for '" + cmd + "'" : "unknown command '" + cmd + "'")
              << "\n\n";
    tlm::usage(std::cerr);
    return 2;
  }
  try {
    if (cmd == "ls") return tlm::cmd_ls(args[1], as_json);
    if (cmd == "show") return tlm::cmd_show(args[1], as_json);
    if (cmd == "verify") return tlm::cmd_verify(args[1], as_json, timeout);
    if (cmd == "diff") return tlm::cmd_diff(args[1], args[2], as_json);
    if (cmd == "merge") return tlm::cmd_merge(args[1], base, args[2], as_json);
    if (cmd == "plot") return tlm::cmd_plot(args[1], args[2], python, smooth);
    if (cmd == "convert") return tlm::cmd_convert(args[1], args[2], as_json);
    return tlm::cmd_export_peft(args[1], args[2], base, as_json);
  } catch (const std::exception& e) {
    tlm::log_error(e.what());
    return 1;
  }
}
