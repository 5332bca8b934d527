// tokenizer.model loading: libsentencepiece parses and validates the model; the pieces are
// then run through the pipeline HF's LlamaTokenizer builds (transformers 5 converts every
// SentencePiece model to a `tokenizers` BPE), so encodings match AutoTokenizer on the same
// directory.
#include <sentencepiece_processor.h>

#include "engine/common/error.h"
#include "engine/tokenizer/sentencepiece_vocab.h"
#include "engine/tokenizer/tokenizer_config.h"
#include "engine/tokenizer/tokenizer_json.h"

namespace tlm {

namespace {

// Reads one base-128 varint; false at the end of the buffer or on overflow.
bool read_varint(const std::string& buf, size_t& pos, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= buf.size()) return false;
    const auto b = static_cast<uint8_t>(buf[pos++]);
    value |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

// Skips a field of the given wire type; false when the buffer is malformed.
bool skip_field(const std::string& buf, size_t& pos, uint64_t wire_type, size_t end) {
  uint64_t n = 0;
  switch (wire_type) {
    case 0: return read_varint(buf, pos, n);
    case 1: pos += 8; return pos <= end;
    case 2: if (!read_varint(buf, pos, n) || n > end - pos) return false; pos += n; return true;
    case 5: pos += 4; return pos <= end;
    default: return false;
  }
}

// The piece types of ModelProto.pieces (field 1; SentencePiece.type is field 3). The
// processor API cannot tell user-defined pieces from normal ones, and the generated proto
// classes are not installed, so the types are read straight from the serialized model.
std::vector<int> read_piece_types(const std::string& proto, const std::string& path) {
  std::vector<int> types;
  size_t pos = 0;
  while (pos < proto.size()) {
    uint64_t tag = 0;
    TLM_CHECK(read_varint(proto, pos, tag), path, ": malformed model proto");
    if ((tag >> 3) != 1 || (tag & 7) != 2) {
      TLM_CHECK(skip_field(proto, pos, tag & 7, proto.size()), path, ": malformed model proto");
      continue;
    }
    uint64_t len = 0;
    TLM_CHECK(read_varint(proto, pos, len) && len <= proto.size() - pos, path,
              ": malformed piece in model proto");
    const size_t end = pos + len;
    int type = kSpNormal;
    while (pos < end) {
      uint64_t inner = 0;
      TLM_CHECK(read_varint(proto, pos, inner), path, ": malformed piece in model proto");
      if ((inner >> 3) == 3 && (inner & 7) == 0) {
        uint64_t v = 0;
        TLM_CHECK(read_varint(proto, pos, v), path, ": malformed piece type in model proto");
        type = static_cast<int>(v);
      } else {
        TLM_CHECK(skip_field(proto, pos, inner & 7, end), path, ": malformed model proto");
      }
    }
    pos = end;
    types.push_back(type);
  }
  return types;
}

}  // namespace

HfTokenizerParts parse_sentencepiece_model(const std::string& path, const TokenizerConfig& config) {
  const std::string cls = config.tokenizer_class.value_or("");
  TLM_CHECK(cls == "LlamaTokenizer" || cls == "LlamaTokenizerFast", path,
            ": a SentencePiece tokenizer.model is supported with tokenizer_class LlamaTokenizer "
            "or LlamaTokenizerFast (",
            config.path.empty() ? std::string("no tokenizer_config.json")
                                : config.path + " says \"" + cls + "\"",
            "); other classes build different pipelines in transformers");
  sentencepiece::SentencePieceProcessor sp;
  const auto status = sp.Load(path);
  TLM_CHECK(status.ok(), path, ": not a SentencePiece model: ", status.ToString());

  SentencePieceVocab vocab;
  const int n = sp.GetPieceSize();
  vocab.pieces.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) vocab.pieces.push_back(sp.IdToPiece(i));
  const std::string proto = sp.serialized_model_proto();
  vocab.types = read_piece_types(proto, path);
  TLM_CHECK(static_cast<int>(vocab.types.size()) == n, path, ": model proto lists ",
            vocab.types.size(), " pieces, the processor ", n);
  return build_sentencepiece_parts(path, vocab, config.add_prefix_space.value_or(true),
                                   config.legacy.value_or(false));
}

}  // namespace tlm
