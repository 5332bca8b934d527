#include "launch/setting_bounds.h"

#include <cmath>
#include <map>
#include <sstream>

namespace tlm {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kCount = 1e15;  // "any count": far beyond a real job, below int64's end

const std::map<std::string, Bounds>& table() {
  static const std::map<std::string, Bounds> t = {
      {"threads", {0, 4096, false, false, "intra-op threads; 0 = all cores"}},
      {"parallel.tp_size", {1, 65536}},
      {"parallel.dp_size", {1, 65536}},
      {"parallel.timeout_seconds", {0, kInf, false, true, "seconds; 0 = wait forever"}},
      {"episodic.steps", {1, 1e6}},
      {"stream.max_samples", {0, kCount, false, false, "0 = all prompts"}},
      {"stream.stream_batch", {1, 1e6}},
      {"stream.train_batch_size", {1, 1e6}},
      {"stream.cutoff_len", {0, 1e9, false, false, "prompt tokens kept; 0 = all"}},
      {"optim.lr", {0, kInf, false, true}},
      {"optim.warmup_ratio", {-1, 1, false, false, "a fraction of the steps; -1 = the schedule's default"}},
      {"optim.max_grad_norm", {0, kInf, false, true, "0 = no clipping"}},
      {"optim.weight_decay", {0, kInf, false, true}},
      {"objective.lambda", {0, kInf, true, true, "coeff = lambda * exp(ce - threshold); 0 makes every update 0"}},
      {"objective.generated_tokens", {1, 1e6}},
      {"objective.uncertainty_mass", {0, kInf, false, true, "0 = the vocabulary size"}},
      {"objective.entropy_margin", {0, kInf, true, true, "a multiple of ln(vocabulary); 0 keeps no sample"}},
      {"objective.redundancy_margin", {-1, 1, false, false, "a cosine"}},
      {"objective.moving_average", {0, 1, false, true}},
      {"objective.fisher_alpha", {0, kInf, false, true}},
      {"objective.fisher_samples", {1, 1e9}},
      {"guard.loss_floor", {0, kInf, false, true, "0 = off"}},
      {"guard.loss_average", {0, 1, false, true}},
      {"guard.reset_every", {0, kCount, false, false, "0 = off"}},
      {"guard.probe_every", {0, kCount, false, false, "0 = off"}},
      {"guard.probe_tolerance", {0, kInf, false, true}},
      {"guard.probe_samples", {1, 1e9}},
      {"lora.rank", {1, 65536, false, false, "LoRA's r; beyond the model's widths it only costs memory"}},
      {"lora.alpha", {0, kInf, true, true, "the scale is alpha / r; 0 makes the adapter a silent no-op"}},
      {"lora.dropout", {0, 1, false, true}},
      {"generation.max_new_tokens", {1, 1e7, false, false, "generation.enabled false answers nothing"}},
      {"generation.temperature", {0, kInf, false, true, "0 = greedy"}},
      {"generation.top_p", {0, 1, true, false, "the nucleus' probability mass"}},
      {"generation.batch_size", {1, 1e6}},
      {"eval.score_batch", {1, 1e6}},
      {"checkpoint.every_steps", {0, kCount, false, false, "0 = only at the end"}},
      {"checkpoint.every_seconds", {0, kInf, false, true, "0 = off"}},
      {"checkpoint.keep_last", {0, kCount, false, false, "0 = keep all"}},
      {"debug.pause_before_rename", {0, 3600}},
      {"scalenet.skip", {0, kCount}},
      {"scalenet.epochs", {1, 1e6}},
      {"scalenet.lr", {0, kInf, false, true}},
      {"scalenet.max_grad_norm", {0, kInf, false, true, "0 = no clipping"}},
      {"scalenet.max_answer_tokens", {1, 1e7}},
      {"serve.port", {0, 65535, false, false, "0 = any free port"}},
      {"serve.max_sessions", {1, 1e9}},
      {"serve.max_batch_rows", {1, 1e6}},
      {"serve.http_threads", {2, 1e5, false, false, "one listens while the others answer"}},
      {"serve.max_body_bytes", {1024, 1e12}},
      {"serve.max_prompt_tokens", {1, 1e9}},
      {"serve.max_tokens_limit", {1, 1e9}},
  };
  return t;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream s;
  s.precision(15);
  s << v;
  return s.str();
}

}  // namespace

const Bounds* bounds_of(const std::string& key) {
  auto it = table().find(key);
  return it == table().end() ? nullptr : &it->second;
}

std::string bounds_message(const std::string& key, const Bounds& b, const std::string& got) {
  std::string range = str_cat(b.lo_open ? "(" : "[", number(b.lo), ", ", number(b.hi), b.hi_open ? ")" : "]");
  return str_cat("'", key, "' must be in ", range, *b.meaning ? str_cat(" (", b.meaning, ")") : std::string(),
                 ", got ", got);
}

}  // namespace tlm
