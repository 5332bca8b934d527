// Test probe: runs many tokenizer / chat-template requests in one process so the Python
// parity tests can compare thousands of strings against HF without a process per string.
//
//   tokenizer_probe <request.json> <response.json>
//
// request:  {"gguf": path} or {"dir": path} (optional), "add_bos": bool,
//           "encode": [text, ...], "decode": [[id, ...], ...],
//           "chats": [{"jinja": text} or {"name": name}, "messages": [{role, content}],
//                     "add_generation_prompt": bool}]
// response: "vocab_size", "bos", "eos", "pad", "chat_template",
//           "encode": [{"ids", "decoded", "decoded_skip", "stream"}],
//           "decode": [{"decoded", "decoded_skip"}],
//           "chats": [{"recognised", "name", "default_system", "rendered", "ids"}] or {"error"}
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

nlohmann::json optional_id(const std::optional<int32_t>& id) {
  return id ? nlohmann::json(*id) : nlohmann::json(nullptr);
}

std::string stream_decode(const tlm::Tokenizer& tok, const std::vector<int32_t>& ids) {
  tlm::Utf8StreamDecoder stream(tok, true);
  std::string out;
  for (int32_t id : ids) out += stream.push(id);
  out += stream.flush();
  return out;
}

int run(const std::string& request_path, const std::string& response_path) {
  std::ifstream in(request_path);
  TLM_CHECK(in.good(), request_path, ": cannot open");
  const nlohmann::json req = nlohmann::json::parse(in);
  nlohmann::json resp = nlohmann::json::object();

  std::unique_ptr<tlm::Tokenizer> tok;
  if (req.contains("gguf")) {
    tlm::GgufFile gguf(req.at("gguf").get<std::string>());
    tok = tlm::load_tokenizer_from_gguf(gguf);
  } else if (req.contains("dir")) {
    tok = tlm::load_tokenizer_from_directory(req.at("dir").get<std::string>());
  }
  const bool add_bos = req.value("add_bos", false);
  if (tok) {
    resp["vocab_size"] = tok->vocab_size();
    resp["bos"] = optional_id(tok->bos_id());
    resp["eos"] = optional_id(tok->eos_id());
    resp["pad"] = optional_id(tok->pad_id());
    resp["chat_template"] = tok->chat_template_text();
    resp["strip_leading"] = tok->decode_strips_leading_spaces();
    nlohmann::json encoded = nlohmann::json::array();
    for (const auto& text : req.value("encode", nlohmann::json::array())) {
      const auto ids = tok->encode(text.get<std::string>(), add_bos);
      encoded.push_back({{"ids", ids},
                         {"decoded", tok->decode(ids, false)},
                         {"decoded_skip", tok->decode(ids, true)},
                         {"stream", stream_decode(*tok, ids)}});
    }
    resp["encode"] = encoded;
    nlohmann::json decoded = nlohmann::json::array();
    for (const auto& ids_json : req.value("decode", nlohmann::json::array())) {
      const auto ids = ids_json.get<std::vector<int32_t>>();
      decoded.push_back({{"decoded", tok->decode(ids, false)},
                         {"decoded_skip", tok->decode(ids, true)},
                         {"stream", stream_decode(*tok, ids)}});
    }
    resp["decode"] = decoded;
  }
  nlohmann::json chats = nlohmann::json::array();
  for (const auto& chat : req.value("chats", nlohmann::json::array())) {
    nlohmann::json out = nlohmann::json::object();
    try {
      std::optional<tlm::ChatTemplate> t;
      if (chat.contains("jinja")) t = tlm::chat_template_from_jinja(chat.at("jinja"));
      else t = tlm::chat_template_by_name(chat.at("name"));
      out["recognised"] = t.has_value();
      if (t) {
        std::vector<tlm::ChatMessage> messages;
        for (const auto& m : chat.at("messages")) {
          messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
        }
        out["name"] = t->name();
        out["default_system"] =
            t->default_system ? nlohmann::json(*t->default_system) : nlohmann::json(nullptr);
        out["end_of_turn"] = t->end_of_turn();
        const std::string rendered = t->render(messages, chat.value("add_generation_prompt", true));
        out["rendered"] = rendered;
        if (tok) out["ids"] = tok->encode(rendered, false);
      }
    } catch (const tlm::Error& e) {
      out["error"] = e.what();
    }
    chats.push_back(out);
  }
  resp["chats"] = chats;

  std::ofstream out(response_path);
  out << resp.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  TLM_CHECK(out.good(), response_path, ": cannot write");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <request.json> <response.json>\n", argv[0]);
    return 2;
  }
  try {
    return run(argv[1], argv[2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenizer_probe: %s\n", e.what());
    return 1;
  }
}
