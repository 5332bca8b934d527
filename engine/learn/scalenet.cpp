#include "engine/learn/scalenet.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/safetensors_file.h"
#include "engine/formats/safetensors_writer.h"

namespace tlm {
namespace {

const std::vector<std::string> kNames = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};

std::vector<std::vector<int64_t>> shapes_of(const ScaleNetShape& s) {
  const int64_t in = 2 * s.hidden_size + 2, m = static_cast<int64_t>(s.modules.size());
  return {{s.width, in}, {s.width}, {m, s.width}, {m}};
}

}  // namespace

at::Tensor scalenet_activation(const at::Tensor& a) {
  // The two branches meet at a = 0 with value 1 and slope 1; clamping keeps the unused
  // branch finite so its (masked) gradient is never inf * 0.
  const at::Tensor below = at::exp(at::clamp_max(a, 0.0));
  const at::Tensor pos = at::clamp_min(a, 0.0);
  const at::Tensor above = 1.0 + pos + 0.5 * pos * pos;
  return at::where(a <= 0, below, above);
}

ScaleNet::ScaleNet(ScaleNetShape shape, std::vector<at::Tensor> params)
    : shape_(std::move(shape)), params_(std::move(params)) {
  for (at::Tensor& p : params_) p.set_requires_grad(true);
}

ScaleNet::ScaleNet(ScaleNetShape shape, uint64_t seed, const c10::Device& device) : shape_(std::move(shape)) {
  TLM_CHECK(shape_.hidden_size > 0 && shape_.width > 0 && !shape_.modules.empty() && shape_.steps >= 1,
            "ScaleNet: hidden size, width, modules and steps must be positive");
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto shapes = shapes_of(shape_);
  // torch.nn.Linear's default: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)); fc2 starts at 0.
  const double bound = 1.0 / std::sqrt(static_cast<double>(shapes[0][1]));
  at::NoGradGuard no_grad;
  at::Tensor w1 = at::empty(shapes[0], at::kFloat).uniform_(-bound, bound, gen);
  at::Tensor b1 = at::empty(shapes[1], at::kFloat).uniform_(-bound, bound, gen);
  params_ = {w1.to(device), b1.to(device), at::zeros(shapes[2], at::TensorOptions(at::kFloat).device(device)),
             at::zeros(shapes[3], at::TensorOptions(at::kFloat).device(device))};
  for (at::Tensor& p : params_) p.set_requires_grad(true);
}

std::vector<std::string> ScaleNet::parameter_names() const { return kNames; }

at::Tensor ScaleNet::raw(const at::Tensor& f) const {
  TLM_CHECK(f.dim() == 1 && f.size(0) == params_[0].size(1), "ScaleNet: features of size ", f.sizes(),
            ", the net takes ", params_[0].size(1));
  const at::Tensor h = at::relu(at::linear(f, params_[0], params_[1]));
  return at::linear(h, params_[2], params_[3]);
}

at::Tensor ScaleNet::multipliers(const at::Tensor& f) const { return scalenet_activation(raw(f)); }

void ScaleNet::save(const std::string& path) const {
  std::vector<at::Tensor> keep;
  std::vector<SafetensorsEntry> entries;
  for (size_t i = 0; i < params_.size(); ++i) {
    keep.push_back(params_[i].detach().to(at::kCPU, at::kFloat).contiguous());
    entries.push_back({kNames[i], StDtype::F32, keep.back().sizes().vec(), keep.back().data_ptr()});
  }
  const std::map<std::string, std::string> meta = {
      {"format", "tlm-scalenet"}, {"hidden_size", std::to_string(shape_.hidden_size)},
      {"modules", nlohmann::json(shape_.modules).dump()}, {"width", std::to_string(shape_.width)},
      {"steps", std::to_string(shape_.steps)}, {"lr", nlohmann::json(shape_.lr).dump()}};
  const std::string tmp = path + ".tmp";
  write_safetensors(tmp, entries, meta);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  TLM_CHECK(!ec, path, ": cannot move the ScaleNet into place (", ec.message(), ")");
}

ScaleNet ScaleNet::load(const std::string& path, const c10::Device& device) {
  SafetensorsFile file(path);
  const auto& meta = file.metadata();
  auto field = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    TLM_CHECK(it != meta.end(), path, ": metadata field '", key, "' is missing (not a ScaleNet saved by tlm?)");
    return it->second;
  };
  ScaleNetShape shape;
  try {
    TLM_CHECK(field("format") == "tlm-scalenet", path, ": metadata 'format' is '", field("format"),
              "', not tlm-scalenet");
    shape.hidden_size = std::stoll(field("hidden_size"));
    shape.width = std::stoll(field("width"));
    shape.steps = std::stoll(field("steps"));
    shape.lr = nlohmann::json::parse(field("lr")).get<double>();
    shape.modules = nlohmann::json::parse(field("modules")).get<std::vector<std::string>>();
  } catch (const std::logic_error& e) {  // stoll and JSON errors
    TLM_FAIL(path, ": malformed ScaleNet metadata (", e.what(), ")");
  }
  const auto shapes = shapes_of(shape);
  std::vector<at::Tensor> params;
  for (size_t i = 0; i < kNames.size(); ++i) {
    const SafetensorsTensor* t = file.find(kNames[i]);
    TLM_CHECK(t != nullptr, path, ": tensor '", kNames[i], "' is missing");
    TLM_CHECK(t->dtype == StDtype::F32 && t->shape == shapes[i], path, ": tensor '", kNames[i], "' is ",
              st_dtype_name(t->dtype), " ", at::IntArrayRef(t->shape), ", expected F32 ", at::IntArrayRef(shapes[i]));
    at::Tensor p = at::empty(t->shape, at::kFloat);
    std::memcpy(p.data_ptr(), file.data(*t), t->end - t->begin);
    params.push_back(p.to(device));
  }
  return ScaleNet(std::move(shape), std::move(params));
}

}  // namespace tlm
