#include "engine/data/record_fields.h"

#include <cstdint>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"

namespace tlm {

namespace {

// Python's str.isspace() code points (Unicode 14, as in the reference venv's Python 3.11).
bool is_python_space(uint32_t cp) {
  if (cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F)) return true;
  if (cp < 0x80) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

RecordFields fail(SkipKind kind, std::string reason) {
  RecordFields out;
  out.ok = false;
  out.kind = kind;
  out.reason = std::move(reason);
  return out;
}

const char* json_type_name(const nlohmann::json& v) { return v.type_name(); }

// Reads an optional reference field; on a type error fills `error` and returns nullopt.
std::optional<std::string> read_reference(const nlohmann::json& obj, const std::string& field,
                                          RecordFields* error) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  const nlohmann::json& v = *it;
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) return v.dump();
  if (v.is_array()) {
    if (v.empty()) return std::nullopt;
    if (v[0].is_string()) return v[0].get<std::string>();
    *error = fail(SkipKind::kNonStringField,
                  str_cat("field '", field, "[0]' (reference) is ", json_type_name(v[0]),
                          ", expected a string"));
    return std::nullopt;
  }
  *error = fail(SkipKind::kNonStringField,
                str_cat("field '", field, "' (reference) is ", json_type_name(v),
                        ", expected a string, number or list of strings"));
  return std::nullopt;
}

RecordFields build(const nlohmann::json& obj, const std::string& prompt_field,
                   const std::optional<std::string>& input_field,
                   const std::optional<std::string>& reference_field) {
  auto it = obj.find(prompt_field);
  if (it == obj.end()) {
    return fail(SkipKind::kMissingField, str_cat("missing prompt field '", prompt_field, "'"));
  }
  if (!it->is_string()) {
    return fail(SkipKind::kNonStringField,
                str_cat("field '", prompt_field, "' (prompt) is ", json_type_name(*it),
                        ", expected a string"));
  }
  std::string prompt = it->get<std::string>();
  std::string blank_fields = str_cat("'", prompt_field, "'");
  if (input_field) {
    auto in = obj.find(*input_field);
    if (in != obj.end() && !in->is_null()) {
      if (!in->is_string()) {
        return fail(SkipKind::kNonStringField,
                    str_cat("field '", *input_field, "' (input) is ", json_type_name(*in),
                            ", expected a string"));
      }
      const std::string& input = in->get_ref<const std::string&>();
      if (!input.empty()) prompt = prompt.empty() ? input : prompt + "\n" + input;
      blank_fields += str_cat(" + '", *input_field, "'");
    }
  }
  if (prompt.empty() || is_blank_text(prompt)) {
    return fail(SkipKind::kEmptyPrompt,
                str_cat("prompt ", blank_fields, prompt.empty() ? " is empty" : " is whitespace-only"));
  }
  RecordFields out;
  if (reference_field) {
    out.reference = read_reference(obj, *reference_field, &out);
    if (!out.reason.empty()) return out;
  }
  out.ok = true;
  out.prompt = std::move(prompt);
  return out;
}

}  // namespace

bool is_blank_text(const std::string& text) {
  size_t i = 0;
  while (i < text.size()) {
    uint8_t b = static_cast<uint8_t>(text[i]);
    uint32_t cp = 0;
    size_t len = 1;
    if (b < 0x80) {
      cp = b;
    } else if ((b & 0xE0) == 0xC0 && i + 1 < text.size()) {
      cp = ((b & 0x1Fu) << 6) | (static_cast<uint8_t>(text[i + 1]) & 0x3Fu);
      len = 2;
    } else if ((b & 0xF0) == 0xE0 && i + 2 < text.size()) {
      cp = ((b & 0x0Fu) << 12) | ((static_cast<uint8_t>(text[i + 1]) & 0x3Fu) << 6) |
           (static_cast<uint8_t>(text[i + 2]) & 0x3Fu);
      len = 3;
    } else {
      // 4-byte characters (none is a space) and malformed bytes count as content.
      return false;
    }
    if (!is_python_space(cp)) return false;
    i += len;
  }
  return true;
}

RecordFields extract_record_fields(const nlohmann::json& value,
                                   const std::optional<FieldMapping>& mapping) {
  if (!value.is_object()) {
    return fail(SkipKind::kNotObject,
                str_cat("record is a JSON ", json_type_name(value), ", expected an object"));
  }
  if (mapping) {
    return build(value, mapping->prompt_field, mapping->input_field, mapping->reference_field);
  }
  if (value.contains("instruction")) {
    return build(value, "instruction", std::string("input"), std::string("output"));
  }
  if (value.contains("question")) {
    return build(value, "question", std::nullopt, std::string("answers"));
  }
  if (value.contains("prompt")) {
    return build(value, "prompt", std::nullopt, std::string("response"));
  }
  return fail(SkipKind::kMissingField,
              "missing prompt field: none of 'instruction', 'question', 'prompt'");
}

}  // namespace tlm
