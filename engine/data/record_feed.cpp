#include "engine/data/record_feed.h"

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/data/line_records.h"

namespace tlm {

nlohmann::json StreamPosition::to_json() const {
  return {{"offset", offset}, {"lines", lines}, {"records", records}};
}

StreamPosition StreamPosition::from_json(const nlohmann::json& j, const std::string& source) {
  TLM_CHECK(j.is_object() && j.contains("offset") && j.contains("lines") && j.contains("records"), source,
            ": the stream position is not {offset, lines, records}: ", j.dump());
  try {
    return {j["offset"].get<uint64_t>(), j["lines"].get<int64_t>(), j["records"].get<int64_t>()};
  } catch (const nlohmann::json::exception& e) {
    TLM_FAIL(source, ": the stream position ", j.dump(), " has a field of the wrong type (", e.what(), ")");
  }
}

namespace {

PromptFormat stream_format(const std::string& path, PromptFormat format) {
  if (format == PromptFormat::kAuto) return path == "-" ? PromptFormat::kJsonl : detect_prompt_format(path);
  return format;
}

}  // namespace

RecordFeed::RecordFeed(const std::string& path, const PromptStreamOptions& options, const StreamPosition& start,
                       bool log_skips, double poll_seconds)
    : lines_(path, start.offset, poll_seconds), format_(stream_format(path, options.format)),
      mapping_(options.mapping), log_skips_(log_skips), line_no_(start.lines), next_index_(start.records) {
  TLM_CHECK(format_ == PromptFormat::kJsonl || format_ == PromptFormat::kText, path,
            ": a stream is read line by line: JSONL or text (data.format), not ", prompt_format_name(format_));
}

std::optional<PromptRecord> RecordFeed::next() {
  while (std::optional<std::string> line = lines_.next()) {
    ++line_no_;
    if (line_no_ == 1 && line->rfind("\xEF\xBB\xBF", 0) == 0) line->erase(0, 3);  // a BOM
    std::optional<RecordFields> fields =
        format_ == PromptFormat::kJsonl ? parse_jsonl_line(*line, mapping_) : parse_text_line(*line);
    if (!fields) continue;  // blank
    if (!fields->ok) {
      ++skips_[skip_kind_name(fields->kind)];
      if (log_skips_) log_warn(str_cat(source(), ":", line_no_, ": skipped record: ", fields->reason));
      continue;
    }
    PromptRecord r;
    r.prompt = std::move(fields->prompt);
    r.reference = std::move(fields->reference);
    r.source = source();
    r.line = line_no_;
    r.index = next_index_++;
    return r;
  }
  return std::nullopt;
}

}  // namespace tlm
