#include "engine/learn/job_checkpoints.h"

#include <chrono>
#include <filesystem>

#include <ATen/ATen.h>

#include "dist/lora_parallel.h"
#include "engine/common/error.h"
#include "engine/common/log.h"

namespace tlm {

JobCheckpoints::JobCheckpoints(CheckpointOptions options, CheckpointIdentity identity,
                               std::string stream_identity, const ProcessGrid& grid)
    : options_(std::move(options)), identity_(std::move(identity)),
      stream_identity_(std::move(stream_identity)), grid_(grid) {
  TLM_CHECK(options_.every_steps >= 0 && options_.keep_last >= 0,
            "checkpoint every_steps and keep_last must be >= 0");
}

void JobCheckpoints::after_step(const StepRecord& step, int64_t samples_consumed, LoraAdapters& lora,
                                AdamW& optimizer) {
  if (!enabled()) return;
  double ce = 0, coeff = 0;
  int64_t selected = 0;
  for (size_t i = 0; i < step.ce.size(); ++i) {
    ce += step.ce[i];
    coeff += step.coeff[i];
    selected += step.selected[i] ? 1 : 0;
  }
  const double n = step.ce.empty() ? 1.0 : static_cast<double>(step.ce.size());
  stats_["step"].push_back(static_cast<double>(step.step));
  stats_["samples"].push_back(static_cast<double>(step.ce.size()));
  stats_["selected"].push_back(static_cast<double>(selected));
  stats_["ce_mean"].push_back(ce / n);
  stats_["coeff_mean"].push_back(coeff / n);
  stats_["loss"].push_back(step.loss);
  stats_["lr"].push_back(step.lr);
  stats_["grad_norm"].push_back(step.grad_norm);
  stats_["updated"].push_back(step.updated ? 1.0 : 0.0);
  if (options_.every_steps > 0 && step.step % options_.every_steps == 0)
    save(step.step, samples_consumed, lora, optimizer);
}

void JobCheckpoints::finish(int64_t samples_consumed, int64_t steps, LoraAdapters& lora, AdamW& optimizer) {
  if (enabled() && last_saved_step_ != steps) save(steps, samples_consumed, lora, optimizer);
}

void JobCheckpoints::save(int64_t step, int64_t samples_consumed, LoraAdapters& lora, AdamW& optimizer) {
  const auto start = std::chrono::steady_clock::now();
  CheckpointState s;
  s.identity = identity_;
  s.adapter = lora.full_state();  // collective over TP
  const std::vector<std::string> names = lora.parameter_names();
  const std::vector<LoraSlot*> slots = lora.slots();
  for (size_t i = 0; i < names.size(); ++i) {
    const LoraPart& part = i % 2 == 0 ? slots[i / 2]->a_part : slots[i / 2]->b_part;
    s.exp_avg[names[i]] = assemble_full_lora(optimizer.exp_avg()[i], part, grid_.tp);
    s.exp_avg_sq[names[i]] = assemble_full_lora(optimizer.exp_avg_sq()[i], part, grid_.tp);
  }
  s.optimizer_step = optimizer.step_count();
  s.global_step = step;
  s.samples_consumed = samples_consumed;
  s.stream_identity = stream_identity_;
  s.stream_offset = samples_consumed;
  s.stats = stats_;
  last_saved_step_ = step;
  if (!grid_.is_root()) return;
  const std::string path = (std::filesystem::path(options_.directory) / ("step-" + std::to_string(step) + ".h5")).string();
  AdapterCheckpoint::save_atomic(path, s);
  written_.push_back(path);
  while (options_.keep_last > 0 && static_cast<int64_t>(written_.size()) > options_.keep_last) {
    std::error_code ignored;
    std::filesystem::remove(written_.front(), ignored);
    written_.erase(written_.begin());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log_info(str_cat("checkpoint ", path, " (step ", step, ", ", samples_consumed, " samples, ",
                   fixed(static_cast<double>(std::filesystem::file_size(path)) / (1024.0 * 1024.0), 2),
                   " MiB) saved in ", fixed(secs, 3), " s"));
}

}  // namespace tlm
