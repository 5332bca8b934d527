#include "engine/data/prompt_stream.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/data/json_array_records.h"
#include "engine/data/line_records.h"

namespace tlm {

namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t fnv1a(uint64_t hash, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= kFnvPrime;
  }
  return hash;
}

void check_readable(const std::string& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  TLM_CHECK(std::filesystem::exists(status), path, ": prompt file not found");
  TLM_CHECK(!std::filesystem::is_directory(status), path,
            ": is a directory, expected a prompt file");
}

// A file named .txt whose first non-empty lines are all JSON objects is JSONL misnamed:
// trained on as text, its reference answers would join the prompts. Refused when the format
// was guessed from the extension; an explicit txt format trains on the lines as they are.
void refuse_jsonl_named_txt(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  int objects = 0;
  for (int64_t no = 1; objects < 16 && std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (!nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false).is_object()) return;
    ++objects;
  }
  TLM_CHECK(objects == 0, path, ": named as text, but its lines are JSON objects (", objects,
            " of the first non-empty ones): it is JSONL; rename it .jsonl or set the format to jsonl ",
            "(--data-format jsonl), or to txt to train on the raw JSON text");
}

std::ifstream open_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TLM_CHECK(in.good(), path, ": cannot open prompt file: ", std::strerror(errno));
  return in;
}

bool strip_bom(std::string* text) {
  if (text->size() >= 3 && static_cast<unsigned char>((*text)[0]) == 0xEF &&
      static_cast<unsigned char>((*text)[1]) == 0xBB &&
      static_cast<unsigned char>((*text)[2]) == 0xBF) {
    text->erase(0, 3);
    return true;
  }
  return false;
}

}  // namespace

struct PromptStream::Impl {
  std::string path;
  PromptFormat format = PromptFormat::kAuto;
  std::optional<FieldMapping> mapping;
  uint64_t size = 0;
  uint64_t hash = kFnvOffset;
  SkipReport skips;

  // JSON array: every good record, parsed at open.
  std::vector<PromptRecord> records;
  size_t position = 0;

  // JSONL / text: read on demand.
  std::ifstream in;
  int64_t line_no = 0;
  int64_t next_index = 0;
  int64_t furthest_line = 0;  // skips on lines up to here have been reported

  void report(int64_t line, const RecordFields& fields) {
    skips.add(SkippedRecord{path, line, fields.kind, fields.reason});
  }

  // Reads lines until the next good record (true) or the end of the file (false).
  bool read_record(PromptRecord* out) {
    std::string text;
    while (std::getline(in, text)) {
      ++line_no;
      if (line_no == 1) strip_bom(&text);
      std::optional<RecordFields> fields = format == PromptFormat::kJsonl
                                               ? parse_jsonl_line(text, mapping)
                                               : parse_text_line(text);
      bool fresh = line_no > furthest_line;
      if (fresh) furthest_line = line_no;
      if (!fields) continue;
      if (!fields->ok) {
        if (fresh) report(line_no, *fields);
        continue;
      }
      out->prompt = std::move(fields->prompt);
      out->reference = std::move(fields->reference);
      out->source = path;
      out->line = line_no;
      out->index = next_index++;
      return true;
    }
    TLM_CHECK(in.eof(), path, ": read error at line ", line_no + 1);
    return false;
  }

  void rewind() {
    in.clear();
    in.seekg(0);
    TLM_CHECK(in.good(), path, ": cannot rewind the prompt file");
    line_no = 0;
    next_index = 0;
  }
};

PromptStream::PromptStream(const std::string& path, const PromptStreamOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.path = path;
  s.mapping = options.mapping;
  check_readable(path);
  s.format = options.format == PromptFormat::kAuto ? detect_prompt_format(path) : options.format;
  if (options.format == PromptFormat::kAuto && s.format == PromptFormat::kText) refuse_jsonl_named_txt(path);
  if (s.mapping) {
    TLM_CHECK(!s.mapping->prompt_field.empty(), path,
              ": the field mapping has an empty prompt field name");
  }

  std::ifstream in = open_binary(path);
  std::string content;
  std::vector<char> chunk(1 << 20);
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    size_t got = static_cast<size_t>(in.gcount());
    s.hash = fnv1a(s.hash, chunk.data(), got);
    s.size += got;
    // Only a JSON array is kept in memory; line formats are reread incrementally.
    if (s.format == PromptFormat::kJsonArray) content.append(chunk.data(), got);
  }
  TLM_CHECK(in.eof(), path, ": read error: ", std::strerror(errno));

  if (s.format == PromptFormat::kJsonArray) {
    std::vector<LocatedRecord> located = parse_json_array_records(path, content, s.mapping);
    for (LocatedRecord& rec : located) {
      if (!rec.fields.ok) {
        s.report(rec.line, rec.fields);
        continue;
      }
      PromptRecord r;
      r.prompt = std::move(rec.fields.prompt);
      r.reference = std::move(rec.fields.reference);
      r.source = path;
      r.line = rec.line;
      r.index = static_cast<int64_t>(s.records.size());
      s.records.push_back(std::move(r));
    }
  } else {
    s.in = open_binary(path);
  }
}

PromptStream::~PromptStream() = default;
PromptStream::PromptStream(PromptStream&&) noexcept = default;
PromptStream& PromptStream::operator=(PromptStream&&) noexcept = default;

std::vector<PromptRecord> PromptStream::next(size_t n) {
  Impl& s = *impl_;
  std::vector<PromptRecord> out;
  if (s.format == PromptFormat::kJsonArray) {
    size_t end = std::min(s.records.size(), s.position + n);
    out.assign(s.records.begin() + static_cast<std::ptrdiff_t>(s.position),
               s.records.begin() + static_cast<std::ptrdiff_t>(end));
    s.position = end;
    return out;
  }
  PromptRecord rec;
  while (out.size() < n && s.read_record(&rec)) out.push_back(std::move(rec));
  return out;
}

int64_t PromptStream::offset() const {
  const Impl& s = *impl_;
  return s.format == PromptFormat::kJsonArray ? static_cast<int64_t>(s.position) : s.next_index;
}

void PromptStream::seek(int64_t offset) {
  Impl& s = *impl_;
  TLM_CHECK(offset >= 0, s.path, ": cannot seek to negative record offset ", offset);
  if (s.format == PromptFormat::kJsonArray) {
    TLM_CHECK(static_cast<size_t>(offset) <= s.records.size(), s.path,
              ": cannot seek to record ", offset, ": the file holds only ", s.records.size(),
              " good records (was it changed since the run started?)");
    s.position = static_cast<size_t>(offset);
    return;
  }
  if (offset < s.next_index) s.rewind();
  PromptRecord discard;
  while (s.next_index < offset) {
    TLM_CHECK(s.read_record(&discard), s.path, ": cannot seek to record ", offset,
              ": the file holds only ", s.next_index,
              " good records (was it changed since the run started?)");
  }
}

const SkipReport& PromptStream::skips() const { return impl_->skips; }

std::string PromptStream::identity() const {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(impl_->hash));
  return str_cat(impl_->path, "|size=", impl_->size, "|fnv1a64=", hex);
}

uint64_t PromptStream::content_hash() const { return impl_->hash; }
uint64_t PromptStream::size_bytes() const { return impl_->size; }
const std::string& PromptStream::path() const { return impl_->path; }
PromptFormat PromptStream::format() const { return impl_->format; }

PromptSet read_prompt_file(const std::string& path, const PromptStreamOptions& options) {
  PromptStream stream(path, options);
  PromptSet set;
  for (;;) {
    std::vector<PromptRecord> chunk = stream.next(4096);
    if (chunk.empty()) break;
    for (PromptRecord& r : chunk) set.records.push_back(std::move(r));
  }
  set.skips = stream.skips();
  return set;
}

}  // namespace tlm
