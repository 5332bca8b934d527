// Normalizers of a tokenizer.json ("normalizer" field), applied to the text between added
// tokens before pre-tokenization. Supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend,
// Replace, Strip, ByteLevel, Sequence. Anything else (BertNormalizer, Precompiled,
// StripAccents, ...) is refused with the file and field named.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace tlm {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

// `where` names the file and JSON path for error messages. Returns nullptr for JSON null.
std::unique_ptr<Normalizer> parse_normalizer(const nlohmann::json& config,
                                             const std::string& where);

}  // namespace tlm
