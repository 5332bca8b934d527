// Prompt files written at test time: every bad-record kind, field conventions, JSON array
// line numbers, plain text, seek/offset, hard errors and the field mapping option.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/data/prompt_stream.h"

namespace tlm {
namespace {

namespace fs = std::filesystem;

class PromptStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tlm-data-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& bytes) {
    std::string path = (dir_ / name).string();
    std::ofstream out(path, std::ios::binary);
    out << bytes;
    return path;
  }

  fs::path dir_;
};

std::vector<PromptRecord> read_all(PromptStream& s) {
  std::vector<PromptRecord> all;
  for (;;) {
    std::vector<PromptRecord> chunk = s.next(3);
    if (chunk.empty()) break;
    all.insert(all.end(), chunk.begin(), chunk.end());
  }
  return all;
}

// Expects fn() to throw tlm::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected tlm::Error";
  } catch (const Error& e) {
    std::string what = e.what();
    for (const std::string& p : parts) EXPECT_NE(what.find(p), std::string::npos) << what;
  }
}

TEST_F(PromptStreamTest, JsonlSkipsEveryBadKindWithLineAndReason) {
  std::string text =
      R"({"instruction": "Say hi", "input": "", "output": "hi"})" "\n"  // 1 good
      R"({not json)" "\n"                                                 // 2
      R"([1, 2])" "\n"                                                    // 3
      R"({"foo": "bar"})" "\n"                                            // 4
      R"({"prompt": 42})" "\n"                                            // 5
      R"({"prompt": ""})" "\n"                                            // 6
      "{\"prompt\": \"bad \xFF byte\"}\n"                                 // 7
      "{\"prompt\": \"  \\t \\n \"}\n"                                    // 8
      "\n"                                                                // 9 blank
      R"({"question": "Why?", "answers": "Because."})" "\n"               // 10 good
      R"({"prompt": "P", "response": "R"})" "\n"                          // 11 good
      R"("just a string")" "\n"                                           // 12
      R"({"instruction": "I", "output": {"x": 1}})" "\n"                  // 13
      R"({"instruction": "I", "input": 7})" "\n"                          // 14
      "{\"prompt\": \"\xC3\"}\n"                                          // 15 truncated char
      "{\"prompt\": \"\xE2\x80\x83\"}\n";                                 // 16 em space only
  std::string path = write("mixed.jsonl", text);
  PromptStream s(path);
  EXPECT_EQ(s.format(), PromptFormat::kJsonl);
  std::vector<PromptRecord> recs = read_all(s);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].prompt, "Say hi");
  EXPECT_EQ(recs[0].reference.value_or("<none>"), "hi");
  EXPECT_EQ(recs[0].line, 1);
  EXPECT_EQ(recs[0].index, 0);
  EXPECT_EQ(recs[0].source, path);
  EXPECT_EQ(recs[1].prompt, "Why?");
  EXPECT_EQ(recs[1].reference.value_or("<none>"), "Because.");
  EXPECT_EQ(recs[1].line, 10);
  EXPECT_EQ(recs[1].index, 1);
  EXPECT_EQ(recs[2].prompt, "P");
  EXPECT_EQ(recs[2].reference.value_or("<none>"), "R");
  EXPECT_EQ(recs[2].line, 11);

  struct Expected {
    int64_t line;
    SkipKind kind;
    const char* reason_part;
  };
  const Expected expected[] = {
      {2, SkipKind::kInvalidJson, "not valid JSON"},
      {3, SkipKind::kNotObject, "array"},
      {4, SkipKind::kMissingField, "'instruction', 'question', 'prompt'"},
      {5, SkipKind::kNonStringField, "'prompt'"},
      {6, SkipKind::kEmptyPrompt, "'prompt' is empty"},
      {7, SkipKind::kInvalidUtf8, "byte 0xFF at column 17"},
      {8, SkipKind::kEmptyPrompt, "whitespace-only"},
      {12, SkipKind::kNotObject, "string"},
      {13, SkipKind::kNonStringField, "'output'"},
      {14, SkipKind::kNonStringField, "'input'"},
      {15, SkipKind::kInvalidUtf8, "byte 0xC3"},
      {16, SkipKind::kEmptyPrompt, "whitespace-only"},
  };
  const SkipReport& skips = s.skips();
  ASSERT_EQ(skips.records.size(), sizeof(expected) / sizeof(expected[0]));
  for (size_t i = 0; i < skips.records.size(); ++i) {
    const SkippedRecord& r = skips.records[i];
    EXPECT_EQ(r.source, path);
    EXPECT_EQ(r.line, expected[i].line);
    EXPECT_EQ(r.kind, expected[i].kind) << r.reason;
    EXPECT_NE(r.reason.find(expected[i].reason_part), std::string::npos)
        << "line " << r.line << ": " << r.reason;
  }
  EXPECT_EQ(skips.counts.at("invalid_json"), 1);
  EXPECT_EQ(skips.counts.at("not_object"), 2);
  EXPECT_EQ(skips.counts.at("missing_field"), 1);
  EXPECT_EQ(skips.counts.at("non_string_field"), 3);
  EXPECT_EQ(skips.counts.at("empty_prompt"), 3);
  EXPECT_EQ(skips.counts.at("invalid_utf8"), 2);

  nlohmann::json summary = skips.to_json(5);
  EXPECT_EQ(summary["total"], 12);
  EXPECT_EQ(summary["counts"]["empty_prompt"], 3);
  EXPECT_EQ(summary["records"].size(), 5u);
  EXPECT_EQ(summary["records_truncated"], true);
  EXPECT_EQ(summary["records"][0]["line"], 2);
}

TEST_F(PromptStreamTest, FieldConventions) {
  std::string text =
      R"({"instruction": "Translate", "input": "bonjour", "output": "hello"})" "\n"
      R"({"instruction": "Only instruction", "input": null, "output": "o"})" "\n"
      R"({"instruction": "", "input": "input alone", "output": "o"})" "\n"
      R"({"instruction": "No output"})" "\n"
      R"({"question": "Q list", "answers": ["A1", "A2"]})" "\n"
      R"({"question": "Q empty list", "answers": []})" "\n"
      R"({"prompt": "Numeric", "response": 375})" "\n"
      R"({"prompt": "p", "question": "q wins over prompt", "answers": "a"})" "\n"
      R"({"instruction": "i wins", "question": "q", "prompt": "p", "output": "o"})" "\n"
      R"({"question": "Q bad list", "answers": [1]})" "\n";
  PromptStream s(write("conv.jsonl", text));
  std::vector<PromptRecord> r = read_all(s);
  ASSERT_EQ(r.size(), 9u);
  EXPECT_EQ(r[0].prompt, "Translate\nbonjour");
  EXPECT_EQ(r[0].reference.value_or("<none>"), "hello");
  EXPECT_EQ(r[1].prompt, "Only instruction");
  EXPECT_EQ(r[2].prompt, "input alone");  // empty parts are left out of the join
  EXPECT_EQ(r[3].prompt, "No output");
  EXPECT_FALSE(r[3].reference.has_value());
  EXPECT_EQ(r[4].reference.value_or("<none>"), "A1");
  EXPECT_FALSE(r[5].reference.has_value());
  EXPECT_EQ(r[6].reference.value_or("<none>"), "375");
  EXPECT_EQ(r[7].prompt, "q wins over prompt");
  EXPECT_EQ(r[7].reference.value_or("<none>"), "a");
  EXPECT_EQ(r[8].prompt, "i wins");
  ASSERT_EQ(s.skips().records.size(), 1u);
  EXPECT_EQ(s.skips().records[0].line, 10);
  EXPECT_NE(s.skips().records[0].reason.find("'answers[0]'"), std::string::npos);
}

TEST_F(PromptStreamTest, JsonArrayLineNumbers) {
  std::string text =
      "[\n"                                                           // 1
      "  {\"instruction\": \"first\", \"output\": \"a\"},\n"          // 2
      "  {\n"                                                         // 3
      "    \"instruction\": \"second, with [brackets] {and} \\\"quotes\\\"\",\n"
      "    \"input\": \"x\",\n"
      "    \"output\": \"b\"\n"
      "  },\n"
      "  42,\n"                                                       // 8
      "  {\"instruction\": \"bad \xFE byte\"},\n"                     // 9
      "  {\"nested\": {\"instruction\": \"not top level\"}},\n"       // 10
      "\n"
      "  {\"question\": \"third\", \"answers\": \"c\"}, {\"prompt\": \"fourth\"}\n"  // 12
      "]\n";
  std::string path = write("arr.json", text);
  PromptStream s(path);
  EXPECT_EQ(s.format(), PromptFormat::kJsonArray);
  std::vector<PromptRecord> r = read_all(s);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].prompt, "first");
  EXPECT_EQ(r[0].line, 2);
  EXPECT_EQ(r[1].prompt, "second, with [brackets] {and} \"quotes\"\nx");
  EXPECT_EQ(r[1].line, 3);
  EXPECT_EQ(r[2].prompt, "third");
  EXPECT_EQ(r[2].line, 12);
  EXPECT_EQ(r[3].prompt, "fourth");
  EXPECT_EQ(r[3].line, 12);
  EXPECT_EQ(r[3].index, 3);
  const SkipReport& skips = s.skips();
  ASSERT_EQ(skips.records.size(), 3u);
  EXPECT_EQ(skips.records[0].line, 8);
  EXPECT_EQ(skips.records[0].kind, SkipKind::kNotObject);
  EXPECT_EQ(skips.records[1].line, 9);
  EXPECT_EQ(skips.records[1].kind, SkipKind::kInvalidUtf8);
  EXPECT_NE(skips.records[1].reason.find("0xFE"), std::string::npos);
  EXPECT_EQ(skips.records[2].line, 10);
  EXPECT_EQ(skips.records[2].kind, SkipKind::kMissingField);
}

TEST_F(PromptStreamTest, JsonArrayHardErrors) {
  std::string broken = write("broken.json", "[\n  {\"prompt\": \"a\"},\n  {\"prompt\": oops}\n]\n");
  expect_error([&] { PromptStream s(broken); }, {broken, "line 3", "column"});

  std::string bad_byte = write("badbyte.json", "[\n  {\"prompt\": \"a\"}, \xFF\n]\n");
  expect_error([&] { PromptStream s(bad_byte); }, {bad_byte, "invalid UTF-8", "line 2"});

  std::string object = write("object.json", "{\"prompt\": \"a\"}");
  expect_error([&] { PromptStream s(object); }, {object, "object", "expected an array"});

  std::string jsonl_named_json = write("lines.json", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n");
  expect_error([&] { PromptStream s(jsonl_named_json); }, {jsonl_named_json, "line 2", "jsonl"});

  // Found by fuzz.prompt_records: a number beyond double's range made nlohmann throw
  // out_of_range, which escaped as an uncaught exception (terminate).
  std::string huge = write("huge.json", "[{\"prompt\": \"a\", \"n\": 12e1111111111}]");
  expect_error([&] { PromptStream s(huge); }, {huge, "not a valid JSON array", "number overflow"});
}

TEST_F(PromptStreamTest, JsonlLineWithAHugeNumberIsSkipped) {
  std::string path = write("huge.jsonl", "{\"prompt\": \"a\", \"n\": 12e1111111111}\n{\"prompt\": \"b\"}\n");
  PromptStream s(path);
  const std::vector<PromptRecord> got = s.next(4);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].prompt, "b");
  EXPECT_EQ(got[0].line, 2);
  ASSERT_EQ(s.skips().total(), 1);
}

TEST_F(PromptStreamTest, PlainText) {
  std::string text =
      "\xEF\xBB\xBF" "First prompt\r\n"
      "\n"
      "   \t\n"
      "Second prompt  \n"
      "bad \x80 byte\n"
      "Third prompt without newline";
  PromptStream s(write("prompts.txt", text));
  EXPECT_EQ(s.format(), PromptFormat::kText);
  std::vector<PromptRecord> r = read_all(s);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].prompt, "First prompt");
  EXPECT_EQ(r[0].line, 1);
  EXPECT_EQ(r[1].prompt, "Second prompt  ");
  EXPECT_EQ(r[1].line, 4);
  EXPECT_EQ(r[2].prompt, "Third prompt without newline");
  EXPECT_EQ(r[2].line, 6);
  EXPECT_FALSE(r[2].reference.has_value());
  ASSERT_EQ(s.skips().records.size(), 1u);
  EXPECT_EQ(s.skips().records[0].line, 5);
  EXPECT_EQ(s.skips().records[0].kind, SkipKind::kInvalidUtf8);
}

// Ten good records (prompts "p0".."p9") with bad records in between, in each format.
std::string numbered_jsonl() {
  std::string out;
  for (int i = 0; i < 10; ++i) {
    out += "{\"prompt\": \"p" + std::to_string(i) + "\"}\n";
    if (i % 3 == 0) out += "{broken\n";
  }
  return out;
}

void check_seek(PromptStream& s) {
  std::vector<PromptRecord> a = s.next(3);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[2].prompt, "p2");
  EXPECT_EQ(s.offset(), 3);
  int64_t skips_after_first_chunk = s.skips().total();

  s.seek(7);
  EXPECT_EQ(s.offset(), 7);
  std::vector<PromptRecord> b = s.next(2);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].prompt, "p7");
  EXPECT_EQ(b[0].index, 7);
  EXPECT_EQ(b[1].prompt, "p8");
  int64_t skips_at_p8 = s.skips().total();
  EXPECT_GE(skips_at_p8, skips_after_first_chunk);

  s.seek(1);  // backwards: same records, skips not reported twice
  std::vector<PromptRecord> c = s.next(100);
  ASSERT_EQ(c.size(), 9u);
  EXPECT_EQ(c[0].prompt, "p1");
  EXPECT_EQ(c[0].index, 1);
  EXPECT_EQ(c[8].prompt, "p9");
  EXPECT_EQ(s.offset(), 10);
  EXPECT_TRUE(s.next(5).empty());
  EXPECT_EQ(s.skips().total(), 4);

  s.seek(10);  // a finished job resumes at the end
  EXPECT_TRUE(s.next(1).empty());
  EXPECT_THROW(s.seek(11), Error);
  EXPECT_THROW(s.seek(-1), Error);
  s.seek(0);
  std::vector<PromptRecord> d = s.next(1);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].prompt, "p0");
}

TEST_F(PromptStreamTest, SeekAndOffsetJsonl) {
  PromptStream s(write("seek.jsonl", numbered_jsonl()));
  check_seek(s);
}

TEST_F(PromptStreamTest, SeekAndOffsetJsonArray) {
  std::string text = "[\n";
  for (int i = 0; i < 10; ++i) {
    if (i > 0) text += ",\n";
    text += "{\"prompt\": \"p" + std::to_string(i) + "\"}";
    if (i % 3 == 0) text += ",\n{\"prompt\": \"\"}";
  }
  text += "\n]\n";
  PromptStream s(write("seek.json", text));
  check_seek(s);
}

TEST_F(PromptStreamTest, SeekAndOffsetText) {
  std::string text;
  for (int i = 0; i < 10; ++i) {
    text += "p" + std::to_string(i) + "\n";
    if (i % 3 == 0) text += "\xFF\n";
  }
  PromptStream s(write("seek.txt", text));
  check_seek(s);
}

TEST_F(PromptStreamTest, ResumeInFreshStream) {
  std::string path = write("resume.jsonl", numbered_jsonl());
  PromptStream first(path);
  first.next(4);
  int64_t saved = first.offset();
  std::string identity = first.identity();

  PromptStream resumed(path);
  EXPECT_EQ(resumed.identity(), identity);
  resumed.seek(saved);
  std::vector<PromptRecord> r = resumed.next(1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].prompt, "p4");
  EXPECT_EQ(r[0].index, 4);
}

TEST_F(PromptStreamTest, Identity) {
  std::string a = write("a.jsonl", numbered_jsonl());
  std::string b = write("b.jsonl", numbered_jsonl());
  PromptStream sa(a), sb(b);
  EXPECT_EQ(sa.content_hash(), sb.content_hash());
  EXPECT_EQ(sa.size_bytes(), numbered_jsonl().size());
  EXPECT_NE(sa.identity(), sb.identity());  // the path is part of it
  EXPECT_NE(sa.identity().find(a), std::string::npos);
  EXPECT_NE(sa.identity().find("fnv1a64="), std::string::npos);
  write("a.jsonl", numbered_jsonl() + "{\"prompt\": \"p10\"}\n");
  PromptStream changed(a);
  EXPECT_NE(changed.content_hash(), sa.content_hash());
  EXPECT_NE(changed.identity(), sa.identity());
}

TEST_F(PromptStreamTest, MissingFileAndBadFormat) {
  std::string missing = (dir_ / "nope.jsonl").string();
  expect_error([&] { PromptStream s(missing); }, {missing, "not found"});
  expect_error([&] { PromptStream s(dir_.string()); }, {dir_.string(), "directory"});
  std::string odd = write("prompts.data", "{\"prompt\": \"x\"}\n");
  expect_error([&] { PromptStream s(odd); }, {odd, "extension"});

  PromptStreamOptions options;
  options.format = PromptFormat::kJsonl;
  PromptStream s(odd, options);
  std::vector<PromptRecord> r = s.next(5);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].prompt, "x");

  EXPECT_EQ(parse_prompt_format("jsonl"), PromptFormat::kJsonl);
  EXPECT_EQ(parse_prompt_format("json"), PromptFormat::kJsonArray);
  EXPECT_EQ(parse_prompt_format("txt"), PromptFormat::kText);
  EXPECT_THROW(parse_prompt_format("csv"), Error);
}

TEST_F(PromptStreamTest, FieldMapping) {
  std::string text =
      R"({"q": "What?", "ctx": "Some context", "gold": "This."})" "\n"
      R"({"q": "No context", "gold": ["first", "second"]})" "\n"
      R"({"instruction": "conventions are off", "output": "x"})" "\n"
      R"({"q": ["not", "a", "string"]})" "\n"
      R"({"q": "no gold"})" "\n";
  PromptStreamOptions options;
  options.mapping = FieldMapping{"q", std::string("ctx"), std::string("gold")};
  PromptStream s(write("mapped.jsonl", text), options);
  std::vector<PromptRecord> r = read_all(s);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].prompt, "What?\nSome context");
  EXPECT_EQ(r[0].reference.value_or("<none>"), "This.");
  EXPECT_EQ(r[1].prompt, "No context");
  EXPECT_EQ(r[1].reference.value_or("<none>"), "first");
  EXPECT_EQ(r[2].prompt, "no gold");
  EXPECT_FALSE(r[2].reference.has_value());
  ASSERT_EQ(s.skips().records.size(), 2u);
  EXPECT_EQ(s.skips().records[0].kind, SkipKind::kMissingField);
  EXPECT_NE(s.skips().records[0].reason.find("'q'"), std::string::npos);
  EXPECT_EQ(s.skips().records[1].kind, SkipKind::kNonStringField);
  EXPECT_NE(s.skips().records[1].reason.find("'q'"), std::string::npos);
}

TEST_F(PromptStreamTest, ReadWholeFile) {
  PromptSet set = read_prompt_file(write("all.jsonl", numbered_jsonl()));
  ASSERT_EQ(set.records.size(), 10u);
  EXPECT_EQ(set.records[9].index, 9);
  EXPECT_EQ(set.skips.total(), 4);
  EXPECT_EQ(set.skips.counts.at("invalid_json"), 4);
}

}  // namespace
}  // namespace tlm
