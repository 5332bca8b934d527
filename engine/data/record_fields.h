// Turns one parsed JSON record into a prompt (and maybe a reference), or says why it cannot.
//
// Without a FieldMapping the first convention whose prompt field is present wins:
//   1. AdaptEval / alpaca: `instruction`, joined with "\n" + `input` when the input is a
//      non-empty string (the LLaMA-Factory join: empty parts are left out); reference `output`.
//   2. `question`, reference `answers` (AdaptEval agriculture-qa: a string).
//   3. `prompt`, reference `response`.
// References: a string is used as is; a number as its JSON text ("375"); null or absent
// means none; a list uses its first element, which must be a string (an empty list means
// none): a record holds one reference, and SQuAD-style answer lists put the canonical
// answer first. Objects and booleans are type errors, so a record whose reference cannot be
// read is skipped rather than silently scored as unlabeled.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "engine/data/prompt_record.h"

namespace tlm {

struct RecordFields {
  bool ok = false;
  std::string prompt;
  std::optional<std::string> reference;
  SkipKind kind = SkipKind::kMissingField;  // when !ok
  std::string reason;                       // when !ok; names the field
};

RecordFields extract_record_fields(const nlohmann::json& value,
                                   const std::optional<FieldMapping>& mapping);

// True when the text has nothing but whitespace (Python's str.isspace() set, so text that
// Python tooling would strip to "" counts as blank here too).
bool is_blank_text(const std::string& text);

}  // namespace tlm
