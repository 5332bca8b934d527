// libFuzzer target: PEFT adapter directories from arbitrary bytes, loaded and attached to a
// tiny random Llama (hidden 32, 2 layers, 4 heads / 2 KV heads) as `--init-adapter` and
// `tlm-ckpt` do. The input is adapter_config.json, a NUL byte, then adapter_model.safetensors
// (seeds: tests/engine/fuzz_seeds/make_seeds.py). Only tlm::Error may escape: a LibTorch error,
// a huge allocation from a config's `r` or a shape the model cannot take is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include <ATen/ATen.h>

#include "engine/common/error.h"
#include "engine/learn/peft_adapter.h"
#include "tests/engine/model/tiny_llama.h"

namespace {

void write(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const tlm::test::TinyLlama tiny = tlm::test::load_tiny_llama(tlm::test::TinyLlamaSpec{}, at::kFloat);
  static const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tlm-fuzz-peft-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  write(dir / "adapter_config.json", input.substr(0, nul));
  write(dir / "adapter_model.safetensors", nul == std::string_view::npos ? "" : input.substr(nul + 1));
  try {
    const tlm::PeftAdapter adapter = tlm::load_peft_adapter(dir.string());
    // A fresh model each time: attaching marks its projections.
    tlm::LlamaModel model(tiny.config, *tiny.weights, tlm::make_single_process_communicator(), at::kFloat,
                          c10::Device(c10::kCPU));
    (void)tlm::attach_peft_adapter(model, adapter, dir.string());
  } catch (const tlm::Error&) {
  }
  return 0;
}
