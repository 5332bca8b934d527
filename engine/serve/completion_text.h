// A request's answer text as its tokens arrive: decoded, cut at the first stop sequence, and
// released only where it is final, so a stream never sends half of a multi-byte character
// or the start of a stop sequence that the next token completes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tlm {

class Tokenizer;

class CompletionText {
 public:
  CompletionText(const Tokenizer& tokenizer, std::vector<std::string> stop);
  // Adds tokens; returns the text that became final (possibly empty).
  std::string add(const std::vector<int32_t>& tokens);
  // At the end: whatever was held back.
  std::string finish();
  // A stop sequence appeared: the text ends before it and the request should end.
  bool stop_hit() const { return stop_hit_; }
  const std::string& released() const { return released_; }
  int64_t tokens() const { return static_cast<int64_t>(ids_.size()); }

 private:
  std::string release(bool final);

  const Tokenizer& tokenizer_;
  std::vector<std::string> stop_;
  std::vector<int32_t> ids_;
  std::string text_;      // the decoded text so far (cut at a stop sequence)
  std::string released_;  // the part handed out
  bool stop_hit_ = false;
};

}  // namespace tlm
