// LrSchedule against transformers' get_constant_schedule / get_cosine_schedule_with_warmup /
// get_linear_schedule_with_warmup. Reference values were computed once with transformers
// 5.23 (base lr 2e-4, an SGD optimiser stepped through the scheduler, the lr printed before
// each step) and are hard-coded here; tolerance 1e-12 relative to the base lr.
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "engine/common/error.h"
#include "engine/learn/lr_schedule.h"

namespace tlm {
namespace {

constexpr double kBase = 2e-4;
constexpr double kTol = kBase * 1e-12;

LrSchedule schedule(ScheduleKind kind, int64_t total, int64_t warmup) {
  LrSchedule s;
  s.kind = kind;
  s.base_lr = kBase;
  s.total_steps = total;
  s.warmup_steps = warmup;
  return s;
}

void expect_values(const LrSchedule& s, const std::vector<std::pair<int64_t, double>>& want,
                   const std::string& what) {
  for (const auto& [step, lr] : want) EXPECT_NEAR(s.lr(step), lr, kTol) << what << " step " << step;
}

TEST(LrSchedule, Constant) {
  LrSchedule s = LrSchedule::make(ScheduleKind::Constant, kBase, 10, 0.5);
  EXPECT_EQ(s.warmup_steps, 0);  // transformers' constant schedule has no warmup
  for (int64_t k : {0, 1, 9, 10, 1000}) EXPECT_EQ(s.lr(k), kBase) << k;
}

TEST(LrSchedule, CosineWithWarmupMatchesTransformers) {
  // get_cosine_schedule_with_warmup(opt, 3, 10), steps 0..11 (past the end the cosine
  // rises again, in transformers too).
  expect_values(schedule(ScheduleKind::Cosine, 10, 3),
                {{0, 0.0}, {1, 6.666666666666667e-05}, {2, 0.00013333333333333334}, {3, 0.0002},
                 {4, 0.0001900968867902419}, {5, 0.00016234898018587337},
                 {6, 0.00012225209339563145}, {7, 7.774790660436858e-05},
                 {8, 3.7651019814126654e-05}, {9, 9.903113209758096e-06}, {10, 0.0},
                 {11, 9.903113209758086e-06}},
                "cosine 10/3");
  expect_values(schedule(ScheduleKind::Cosine, 7, 0),
                {{0, 0.0002}, {1, 0.0001900968867902419}, {3, 0.00012225209339563145},
                 {6, 9.903113209758096e-06}, {7, 0.0}},
                "cosine 7/0");
  expect_values(schedule(ScheduleKind::Cosine, 100, 10),
                {{0, 0.0}, {5, 0.0001}, {10, 0.0002}, {11, 0.0001999390827019096},
                 {37, 0.00015877852522924732}, {55, 0.0001}, {99, 6.09172980904238e-08},
                 {100, 0.0}, {101, 6.09172980904238e-08}},
                "cosine 100/10");
}

TEST(LrSchedule, LinearWithWarmupMatchesTransformers) {
  expect_values(schedule(ScheduleKind::Linear, 10, 3),
                {{0, 0.0}, {1, 6.666666666666667e-05}, {2, 0.00013333333333333334}, {3, 0.0002},
                 {4, 0.00017142857142857143}, {5, 0.00014285714285714287},
                 {6, 0.00011428571428571428}, {7, 8.571428571428571e-05},
                 {8, 5.714285714285714e-05}, {9, 2.857142857142857e-05}, {10, 0.0}, {11, 0.0}},
                "linear 10/3");
  expect_values(schedule(ScheduleKind::Linear, 7, 0),
                {{0, 0.0002}, {1, 0.00017142857142857143}, {6, 2.857142857142857e-05}, {7, 0.0},
                 {8, 0.0}},
                "linear 7/0");
  expect_values(schedule(ScheduleKind::Linear, 100, 10),
                {{0, 0.0}, {5, 0.0001}, {10, 0.0002}, {11, 0.00019777777777777778},
                 {37, 0.00014}, {55, 0.0001}, {99, 2.2222222222222225e-06}, {100, 0.0},
                 {101, 0.0}},
                "linear 100/10");
}

TEST(LrSchedule, MakeTakesWarmupAsCeilOfRatio) {
  // TrainingArguments.get_warmup_steps: ceil(total * warmup_ratio).
  EXPECT_EQ(LrSchedule::make(ScheduleKind::Cosine, kBase, 10, 0.3).warmup_steps, 3);
  EXPECT_EQ(LrSchedule::make(ScheduleKind::Cosine, kBase, 100, 0.1).warmup_steps, 10);
  EXPECT_EQ(LrSchedule::make(ScheduleKind::Linear, kBase, 7, 0.05).warmup_steps, 1);
  EXPECT_EQ(LrSchedule::make(ScheduleKind::Linear, kBase, 7, 0.0).warmup_steps, 0);
  LrSchedule s = LrSchedule::make(ScheduleKind::Cosine, kBase, 10, 0.3);
  EXPECT_EQ(s.total_steps, 10);
  EXPECT_EQ(s.base_lr, kBase);
  EXPECT_NEAR(s.lr(4), 0.0001900968867902419, kTol);
  // A zero-step run still has a well-defined schedule.
  EXPECT_EQ(LrSchedule::make(ScheduleKind::Linear, kBase, 0, 0.0).total_steps, 1);
  EXPECT_THROW(LrSchedule::make(ScheduleKind::Cosine, kBase, 10, 1.5), Error);
  EXPECT_THROW(LrSchedule::make(ScheduleKind::Cosine, kBase, 10, -0.1), Error);
}

TEST(LrSchedule, Names) {
  for (ScheduleKind k : {ScheduleKind::Constant, ScheduleKind::Cosine, ScheduleKind::Linear})
    EXPECT_EQ(parse_schedule(schedule_name(k)), k);
  EXPECT_EQ(schedule_name(ScheduleKind::Cosine), "cosine");
  try {
    parse_schedule("polynomial");
    FAIL() << "no error for an unknown schedule";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'polynomial'"), std::string::npos) << m;
    EXPECT_NE(m.find("constant, cosine, linear"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace tlm
