#include "engine/learn/run_outputs.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "engine/common/atomic_file.h"
#include "engine/common/log.h"

#include "engine/common/error.h"

namespace tlm {
namespace {

std::ofstream open_for_write(const std::string& path) {
  std::ofstream out(path, std::ios::trunc);
  TLM_CHECK(out.good(), path, ": cannot open for writing");
  return out;
}

std::string duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return str_cat(s / 3600, "h", (s % 3600) / 60, "m");
  if (s >= 60) return str_cat(s / 60, "m", s % 60, "s");
  return str_cat(s, "s");
}

}  // namespace

RunOutputs::RunOutputs(const std::string& directory, int64_t total_samples, bool writer)
    : directory_(directory), total_(total_samples), writer_(writer),
      start_(std::chrono::steady_clock::now()) {
  if (!writer_) return;
  std::filesystem::create_directories(directory);
  predictions_ = open_for_write(directory + "/predictions.jsonl");
  metrics_ = open_for_write(directory + "/metrics.jsonl");
}

namespace {

// Calls `take(line)` for each of the first `keep` lines of `path`, then cuts the file after
// them (a crash may have left more) and returns it open for appending; lines are streamed,
// never held. Throws when it has fewer: the outputs do not belong to the checkpoint's job.
template <typename Take>
std::ofstream keep_first_lines(const std::string& path, int64_t keep, Take&& take) {
  int64_t count = 0;
  uint64_t bytes = 0;
  {
    std::ifstream in(path, std::ios::binary);
    TLM_CHECK(keep == 0 || in.good(), path, ": cannot read it to resume (", keep, " lines expected)");
    for (std::string line; count < keep && std::getline(in, line); ++count) {
      TLM_CHECK(!in.eof(), path, ": line ", count + 1, " is cut short (no newline); the checkpoint needs ", keep,
                " whole lines");
      bytes += line.size() + 1;
      try {
        take(line);
      } catch (const nlohmann::json::exception& e) {
        TLM_FAIL(path, ":", count + 1, ": a line the checkpoint counts on is damaged (", e.what(), ")");
      }
    }
  }
  TLM_CHECK(count == keep, path, ": has ", count, " lines but the checkpoint needs ", keep,
            "; resume into the output directory of the stopped run");
  if (std::filesystem::exists(path)) std::filesystem::resize_file(path, bytes);
  std::ofstream out(path, std::ios::app);
  TLM_CHECK(out.good(), path, ": cannot open for writing");
  return out;
}

}  // namespace

RunOutputs::RunOutputs(const std::string& directory, int64_t total_samples, bool writer,
                       const ResumePoint& resume)
    : directory_(directory), total_(total_samples), writer_(writer),
      start_(std::chrono::steady_clock::now()) {
  if (!writer_) return;
  int64_t line = 0;
  predictions_ = keep_first_lines(directory + "/predictions.jsonl", resume.predictions, [&](const std::string& l) {
    if (line++ < resume.keep_predictions_from) return;
    const nlohmann::json j = nlohmann::json::parse(l);
    kept_predictions_.push_back(j.value("predict", std::string()));
    kept_prediction_ids_.push_back(j.value("predict_ids", std::vector<int32_t>{}));
  });
  metrics_ = keep_first_lines(directory + "/metrics.jsonl", resume.steps, [&](const std::string& l) {
    const nlohmann::json j = nlohmann::json::parse(l);
    const auto ce = j["ce"].get<std::vector<double>>();
    const auto selected = j["selected"].get<std::vector<bool>>();
    for (size_t i = 0; i < ce.size(); ++i) {
      ++trained_;
      ce_sum_ += ce[i];
      if (selected[i]) ++selected_;
    }
    train_tokens_ += j["tokens"].get<int64_t>();
    train_seconds_ += j["seconds"].get<double>();
  });
}

void RunOutputs::write_prediction(const PromptRecord& record, const std::string& prediction,
                                  const std::vector<int32_t>* ids) {
  if (!writer_) return;
  nlohmann::json j = {{"index", record.index}, {"prompt", record.prompt}, {"predict", prediction}};
  if (record.reference) j["label"] = *record.reference;
  if (ids) j["predict_ids"] = *ids;
  predictions_ << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  predictions_.flush();
  TLM_CHECK(predictions_.good(), directory_, "/predictions.jsonl: write failed: ", std::strerror(errno));
}

void RunOutputs::write_step(const StepRecord& step, int64_t samples_seen) {
  nlohmann::json j = {{"step", step.step}, {"samples", samples_seen}, {"ce", step.ce},
                      {"current_ce", step.current_ce}, {"selected", step.selected},
                      {"coeff", step.coeff}, {"loss", step.loss}, {"lr", step.lr},
                      {"grad_norm", step.grad_norm}, {"updated", step.updated},
                      {"tokens", step.tokens}, {"seconds", step.seconds},
                      {"tokens_per_s", step.seconds > 0 ? step.tokens / step.seconds : 0.0}};
  for (const auto& [name, values] : step.extra) j[name] = values;
  if (step.regulariser != 0.0) j["regulariser"] = step.regulariser;
  if (!step.skip_reason.empty()) {
    j["skip_reason"] = step.skip_reason;
    if (writer_)
      log_warn(str_cat("step ", step.step, ": update skipped (", step.skip_reason,
                       "); adapter and optimiser state unchanged"));
  }
  if (writer_) {
    metrics_ << j.dump() << "\n";
    metrics_.flush();
    TLM_CHECK(metrics_.good(), directory_, "/metrics.jsonl: write failed: ", std::strerror(errno));
  }
  for (size_t i = 0; i < step.ce.size(); ++i) {
    ++trained_;
    ce_sum_ += step.ce[i];
    if (step.selected[i]) ++selected_;
  }
  train_tokens_ += step.tokens;
  train_seconds_ += step.seconds;
}

double RunOutputs::train_tokens_per_second() const {
  return train_seconds_ > 0 ? static_cast<double>(train_tokens_) / train_seconds_ : 0.0;
}

void RunOutputs::log_progress(int64_t done) const {
  if (!writer_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - done) : 0.0;
  // An unbounded stream (total unknown) has no share done and no ETA.
  const std::string count = total_ > 0 ? str_cat(done, "/", total_, " (", fixed(100.0 * done / total_, 0), "%)")
                                       : std::to_string(done);
  log_info(str_cat("samples ", count, " | selected ", fixed(trained_ ? 100.0 * selected_ / trained_ : 0.0, 0),
                   "% | mean ce ", fixed(mean_ce(), 3), " | train ", fixed(train_tokens_per_second(), 0),
                   " tok/s | elapsed ", duration(elapsed), total_ > 0 ? " | ETA " + duration(eta) : std::string()));
}

void RunOutputs::write_summary(const nlohmann::json& summary) const {
  if (!writer_) return;
  write_file_atomically(directory_ + "/summary.json", summary.dump(2) + "\n");
}

}  // namespace tlm
