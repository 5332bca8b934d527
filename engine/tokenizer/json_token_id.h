// A token id read from tokenizer JSON: an integer in [0, 2^31). nlohmann's get<int32_t> on a
// float or an out-of-range number is undefined behaviour (found by fuzz.tokenizer_files: a
// vocabulary id 2.8e113), so every id read from a file passes here.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"

namespace tlm {

inline int32_t json_token_id(const nlohmann::json& value, const std::string& where) {
  TLM_CHECK(value.is_number_integer(), where, ": a token id must be an integer, got ", value.dump());
  const auto id = value.get<int64_t>();
  TLM_CHECK(id >= 0 && id <= std::numeric_limits<int32_t>::max(), where, ": token id ", id, " is out of range");
  return static_cast<int32_t>(id);
}

}  // namespace tlm
