// RunOutputs (engine/learn/run_outputs.h): the files a run writes, and how a resumed run picks
// them up: the lines its checkpoint counts on are kept, the rest cut, the counters restored;
// outputs that do not match (too few lines, a line cut short or damaged) are refused naming the
// file and line.
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/learn/run_outputs.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

using test::error_of;
using test::lacks;
using test::TempDir;

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

StepRecord step(int64_t k, double ce, bool selected) {
  StepRecord r;
  r.step = k;
  r.ce = {ce};
  r.current_ce = {ce};
  r.selected = {selected};
  r.coeff = {selected ? 1.0 : 0.0};
  r.tokens = 10;
  r.seconds = 0.5;
  return r;
}

// Three steps and three answers, as a stopped run leaves them.
void write_run(const std::string& dir) {
  RunOutputs out(dir, 3);
  for (int64_t k = 1; k <= 3; ++k) {
    out.write_prediction({"prompt " + std::to_string(k), std::string("ref"), "data.jsonl", k, k - 1},
                         "answer " + std::to_string(k));
    out.write_step(step(k, 2.0 + static_cast<double>(k), k != 2), k);
  }
}

TEST(RunOutputs, ResumeKeepsTheCheckpointsLinesAndCounters) {
  TempDir dir("outputs");
  write_run(dir.path());
  ResumePoint point;
  point.predictions = 2;
  point.steps = 2;
  RunOutputs resumed(dir.path(), 3, /*writer=*/true, point);
  EXPECT_EQ(resumed.kept_predictions(), (std::vector<std::string>{"answer 1", "answer 2"}));
  EXPECT_EQ(resumed.trained(), 2);
  EXPECT_EQ(resumed.selected(), 1);
  EXPECT_DOUBLE_EQ(resumed.mean_ce(), 3.5);
  EXPECT_EQ(resumed.train_tokens(), 20);
  resumed.write_step(step(3, 9.0, true), 3);
  const std::vector<std::string> metrics = lines_of(dir.file("metrics.jsonl"));
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_NE(metrics[2].find("\"ce\":[9.0]"), std::string::npos) << metrics[2];
  EXPECT_EQ(lines_of(dir.file("predictions.jsonl")).size(), 2u);
}

TEST(RunOutputs, ResumeRefusesOutputsThatDoNotMatch) {
  TempDir dir("outputs");
  write_run(dir.path());
  const std::string metrics = dir.file("metrics.jsonl");
  ResumePoint point;
  point.steps = 5;
  EXPECT_EQ(lacks(error_of([&] { RunOutputs(dir.path(), 3, true, point); }), {metrics, "has 3 lines", "needs 5"}),
            "");

  // A damaged line the checkpoint counts on: named with its line number.
  std::vector<std::string> lines = lines_of(metrics);
  lines[1] = "{\"step\": 2, \"ce\": [oops";
  {
    std::ofstream out(metrics, std::ios::trunc);
    for (const std::string& l : lines) out << l << "\n";
  }
  point.steps = 3;
  EXPECT_EQ(lacks(error_of([&] { RunOutputs(dir.path(), 3, true, point); }), {metrics + ":2", "damaged"}), "");

  // The last line cut short (no newline): a crash mid-write.
  {
    std::ofstream out(metrics, std::ios::trunc);
    out << lines[0] << "\n" << lines[2].substr(0, 10);
  }
  point.steps = 2;
  EXPECT_EQ(lacks(error_of([&] { RunOutputs(dir.path(), 3, true, point); }), {metrics, "line 2 is cut short"}), "");
}

}  // namespace
}  // namespace tlm
