// The prompt stream of an online run: chunks of good records with a stable offset (the
// record index), so a resumed job seeks to offset k and continues deterministically.
//
// JSON arrays are parsed whole when the stream opens; JSONL and text files are read line
// by line as chunks are requested. Bad records are skipped and reported (skips()); a
// missing file or a JSON array that does not parse throws tlm::Error naming the file.
// Prompts are not truncated here: a prompt longer than the token budget is the caller's
// (tokenizer-level) business.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/data/prompt_record.h"

namespace tlm {

class PromptStream {
 public:
  explicit PromptStream(const std::string& path, const PromptStreamOptions& options = {});
  ~PromptStream();
  PromptStream(PromptStream&&) noexcept;
  PromptStream& operator=(PromptStream&&) noexcept;
  PromptStream(const PromptStream&) = delete;
  PromptStream& operator=(const PromptStream&) = delete;

  // Up to n further good records; fewer only at the end of the file (empty once exhausted).
  std::vector<PromptRecord> next(size_t n);
  // The index of the record next() returns first (= good records consumed so far).
  int64_t offset() const;
  // Positions the stream so next() starts at record `offset`. Throws when the file holds
  // fewer records (a resumed job whose file shrank). Seeking back in a JSONL/text file
  // rereads it from the start.
  void seek(int64_t offset);

  // Skips met so far, each reported once even if seek() passes its line again. For a JSON
  // array that is every skip in the file (it is read whole); for JSONL/text, those up to
  // the furthest line read.
  const SkipReport& skips() const;

  // "<path>|size=<bytes>|fnv1a64=<16 hex digits>" of the file as opened: a resumed job
  // compares it with the one it saved to refuse a different file at the same path.
  std::string identity() const;
  uint64_t content_hash() const;  // FNV-1a 64 of the file's bytes
  uint64_t size_bytes() const;

  const std::string& path() const;
  PromptFormat format() const;  // never kAuto

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct PromptSet {
  std::vector<PromptRecord> records;
  SkipReport skips;
};

// Reads a whole prompt file (offline mode).
PromptSet read_prompt_file(const std::string& path, const PromptStreamOptions& options = {});

}  // namespace tlm
