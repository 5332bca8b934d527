// Prompt records from an unbounded stream (engine/data/line_feed.h): JSONL or text lines
// parsed as they arrive, good records numbered like a file's (PromptRecord.index), bad ones
// logged and counted, never kept, so memory stays bounded however long the stream runs.
// position() is everything a resumed job needs to continue the stream exactly.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "engine/data/line_feed.h"
#include "engine/data/prompt_record.h"

namespace tlm {

struct StreamPosition {
  uint64_t offset = 0;  // bytes consumed
  int64_t lines = 0;    // lines consumed
  int64_t records = 0;  // good records returned

  nlohmann::json to_json() const;
  static StreamPosition from_json(const nlohmann::json& j, const std::string& source);
};

class RecordFeed {
 public:
  // `path` "-" is standard input; JSONL unless options.format says text (a JSON array is
  // refused: it is a finished file, read it with --data). `log_skips`: warn for each bad line.
  RecordFeed(const std::string& path, const PromptStreamOptions& options, const StreamPosition& start,
             bool log_skips, double poll_seconds = 0.1);

  // The next good record; nullopt when none is available now or the stream ended (ended()).
  std::optional<PromptRecord> next();
  bool ended() const { return lines_.ended(); }
  StreamPosition position() const { return {lines_.offset(), line_no_, next_index_}; }
  // Bad lines met (this process), by skip_kind_name.
  const std::map<std::string, int64_t>& skip_counts() const { return skips_; }
  std::string source() const { return lines_.is_stdin() ? "<stdin>" : lines_.path(); }

 private:
  LineFeed lines_;
  PromptFormat format_;
  std::optional<FieldMapping> mapping_;
  bool log_skips_;
  int64_t line_no_ = 0;
  int64_t next_index_ = 0;
  std::map<std::string, int64_t> skips_;
};

}  // namespace tlm
