// libFuzzer target: an HF tokenizer directory written from arbitrary bytes. The input is
// tokenizer.json, optionally followed by "\n#tokenizer_config.json\n" and that file; the
// loader reads them as `tlm` reads a model's (load_tokenizer_from_directory). Only tlm::Error
// may escape; a tokenizer that loads encodes and decodes a fixed text, every id in range.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "engine/common/error.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

const std::filesystem::path& directory() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path d = std::filesystem::temp_directory_path() / ("tlm-fuzz-tok-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

void write(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view kSplit = "\n#tokenizer_config.json\n";
  const size_t split = input.find(kSplit);
  const std::filesystem::path& dir = directory();
  write(dir / "tokenizer.json", input.substr(0, split));
  if (split == std::string_view::npos) std::filesystem::remove(dir / "tokenizer_config.json");
  else write(dir / "tokenizer_config.json", input.substr(split + kSplit.size()));
  try {
    const auto tok = tlm::load_tokenizer_from_directory(dir.string());
    for (const bool bos : {false, true}) {
      const std::vector<int32_t> ids = tok->encode("Hello, wörld! <|im_start|> 12 345\n\tend", bos);
      for (int32_t id : ids)
        if (id < 0 || id >= tok->vocab_size()) __builtin_trap();
      (void)tok->decode(ids, /*skip_special=*/false);
      (void)tok->decode(ids, /*skip_special=*/true);
    }
  } catch (const tlm::Error&) {
  }
  return 0;
}
