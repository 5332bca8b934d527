#include "engine/tokenizer/json_token_id.h"
#include "engine/tokenizer/post_processor.h"

#include "engine/common/error.h"

namespace tlm {

namespace {

PostProcessor parse_template(const nlohmann::json& config, const std::string& where) {
  PostProcessor pp;
  const auto& single = config.at("single");
  TLM_CHECK(single.is_array(), where, ".single: expected a list of pieces");
  const auto& specials = config.contains("special_tokens") ? config.at("special_tokens")
                                                           : nlohmann::json::object();
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const auto& item = single[i];
    if (item.contains("Sequence")) {
      TLM_CHECK(!seen_sequence, where, ".single: more than one sequence");
      seen_sequence = true;
      continue;
    }
    TLM_CHECK(item.contains("SpecialToken"), where, ".single[", i,
              "]: expected SpecialToken or Sequence");
    const std::string name = item.at("SpecialToken").at("id").get<std::string>();
    TLM_CHECK(specials.contains(name), where, ".special_tokens: '", name, "' is not defined");
    for (const auto& id : specials.at(name).at("ids")) {
      (seen_sequence ? pp.suffix : pp.prefix).push_back(json_token_id(id, str_cat(where, ".special_tokens['", name, "']")));
    }
  }
  TLM_CHECK(seen_sequence, where, ".single: no $A sequence");
  return pp;
}

}  // namespace

PostProcessor parse_post_processor(const nlohmann::json& config, const std::string& where) {
  if (config.is_null()) return {};
  TLM_CHECK(config.is_object() && config.contains("type"), where,
            ": expected an object with a \"type\"");
  const std::string type = config.at("type").get<std::string>();
  if (type == "TemplateProcessing") return parse_template(config, where);
  if (type == "ByteLevel") return {};
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    PostProcessor pp;
    pp.prefix.push_back(json_token_id(config.at("cls").at(1), where + ".cls"));
    pp.suffix.push_back(json_token_id(config.at("sep").at(1), where + ".sep"));
    return pp;
  }
  if (type == "Sequence") {
    PostProcessor pp;
    const auto& list = config.at("processors");
    for (size_t i = 0; i < list.size(); ++i) {
      PostProcessor inner = parse_post_processor(list[i], str_cat(where, ".processors[", i, "]"));
      pp.prefix.insert(pp.prefix.begin(), inner.prefix.begin(), inner.prefix.end());
      pp.suffix.insert(pp.suffix.end(), inner.suffix.begin(), inner.suffix.end());
    }
    return pp;
  }
  TLM_FAIL(where, ": post-processor type \"", type,
           "\" is not supported (supported: TemplateProcessing, RobertaProcessing, "
           "BertProcessing, ByteLevel, Sequence)");
}

}  // namespace tlm
