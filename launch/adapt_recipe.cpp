#include "launch/adapt_recipe.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "launch/recipe_reader.h"

#include "dist/device.h"
#include "engine/common/error.h"
#include "engine/learn/lr_schedule.h"

#ifndef TLM_DEFAULT_MODEL
#define TLM_DEFAULT_MODEL ""
#endif

namespace tlm {
namespace {

const std::vector<RecipeFlag> kFlags = {
    {"model", "model", "HF model directory, .gguf file, or smollm2-135m (default) / gemma3-270m"},
    {"device", "device", "auto (the rank's GPU when CUDA devices are visible, else the CPU), cpu, cuda or cuda:N"},
    {"dtype", "dtype", "auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16; LoRA and AdamW state stay fp32"},
    {"chat-template", "chat_template", "auto, chatml, llama3, llama2, gemma, alpaca, raw"},
    {"threads", "threads", "intra-op threads (0 = all cores)"},
    {"packed-weights", "packed_weights", "auto (on for fp32 on CPU), on or off: weights also in oneDNN's prepacked layout, forward and backward (two more copies)"},
    {"weights", "weights", "fp32 or gguf: products of a few rows (answering) read the GGUF's own Q4_1 / Q8_0 blocks (CPU fp32)"},
    {"tp-size", "parallel.tp_size", "tensor-parallel ranks (heads and vocabulary split over them)"},
    {"dp-size", "parallel.dp_size", "data-parallel replicas (each takes a share of every batch)"},
    {"backend", "parallel.backend", "auto (under mpirun: nccl for GPU ranks, mpi for CPU ranks; else single), single, mpi or nccl"},
    {"collective-timeout", "parallel.timeout_seconds", "seconds a collective may wait for a peer before the job aborts (0 = forever)"},
    {"mode", "mode", "online, offline or episodic (per prompt: fresh LoRA, K steps, answer, reset)"},
    {"episodic-steps", "episodic.steps", "mode episodic: K gradient steps on each prompt's NLL"},
    {"scalenet", "episodic.scalenet", "mode episodic: per-layer, per-step step sizes from this ScaleNet (tlm scalenet-train)"},
    {"method", "method", "tlm (default), tent, eata, come or sytta: what the steps minimise"},
    {"data", "data.path", "prompt file: JSON array, JSONL or text; - reads JSONL (or text) lines from standard input as an unbounded stream"},
    {"follow", "data.follow", "a JSONL or text file that keeps growing: read it as an unbounded stream until a signal (online mode)"},
    {"data-format", "data.format", "auto, json, jsonl, txt"},
    {"prompt-field", "data.prompt_field", "record field holding the prompt (overrides the conventions)"},
    {"input-field", "data.input_field", "record field appended to the prompt after a newline"},
    {"reference-field", "data.reference_field", "record field holding the reference answer"},
    {"output-dir", "output_dir", "where predictions.jsonl, metrics.jsonl, summary.json and adapter/ go"},
    {"max-samples", "stream.max_samples", "use only the first N prompts (0 = all)"},
    {"stream-batch", "stream.stream_batch", "online: prompts per chunk"},
    {"train-batch-size", "stream.train_batch_size", "prompts per optimiser step"},
    {"cutoff-len", "stream.cutoff_len", "prompt tokens kept (0 = all)"},
    {"lr", "optim.lr", "learning rate"},
    {"schedule", "optim.schedule", "constant, cosine or linear"},
    {"warmup-ratio", "optim.warmup_ratio", "fraction of steps of linear warmup"},
    {"max-grad-norm", "optim.max_grad_norm", "gradient-norm clipping (0 = off)"},
    {"weight-decay", "optim.weight_decay", "AdamW decoupled weight decay"},
    {"fresh-optimizer-per-chunk", "optim.fresh_optimizer_per_chunk", "online: new AdamW per chunk (official code: true)"},
    {"skip-unselected-steps", "optim.skip_unselected_steps", "no update when no sample is selected (official code: false)"},
    {"threshold", "objective.threshold", "ln P0: samples with ce above it are selected"},
    {"lambda", "objective.lambda", "weight scale: coeff = lambda * exp(ce - threshold)"},
    {"sample-selection", "objective.sample_selection", "false: the ablation without selection (all samples, coeff 1)"},
    {"loss", "objective.loss", "log_perplexity (official code) or perplexity"},
    {"positions", "objective.positions", "tent/eata/come: prompt (every prompt position) or generated (the first G answer tokens)"},
    {"generated-tokens", "objective.generated_tokens", "tent/eata/come with positions generated, and sytta: G"},
    {"come-base", "objective.come_base", "come: tent or eata (the method whose entropy COME replaces)"},
    {"uncertainty-mass", "objective.uncertainty_mass", "come: K of the opinion's uncertainty K / (sum e^z + K) (0 = vocabulary size)"},
    {"entropy-weight", "objective.entropy_weight", "sytta: weight of the generated tokens' entropy"},
    {"kl-weight", "objective.kl_weight", "sytta: weight of the reverse-KL trust region to the base (0 = off)"},
    {"entropy-margin", "objective.entropy_margin", "eata: keep samples with entropy < this * ln(vocabulary)"},
    {"redundancy-margin", "objective.redundancy_margin", "eata: keep samples whose cosine to the moving average is below this"},
    {"moving-average", "objective.moving_average", "eata: m = this * m + (1 - this) * mean of the kept"},
    {"fisher-data", "objective.fisher_data", "eata: reference prompts for EATA's Fisher regulariser (off when unset)"},
    {"fisher-alpha", "objective.fisher_alpha", "eata: weight of the Fisher regulariser alpha * sum F (theta - theta0)^2"},
    {"fisher-samples", "objective.fisher_samples", "eata: reference prompts the Fisher information is estimated on"},
    {"guard-loss-floor", "guard.loss_floor", "collapse guard: reset the adapter when the moving average of the loss falls below this (0 = off)"},
    {"guard-loss-average", "guard.loss_average", "collapse guard: a of that moving average m = a m + (1 - a) loss"},
    {"guard-reset-every", "guard.reset_every", "collapse guard: reset the adapter every N steps (0 = off)"},
    {"guard-data", "guard.probe_data", "collapse guard: general prompt set whose NLL the probe watches"},
    {"guard-probe-every", "guard.probe_every", "collapse guard: probe every N steps; roll back when worse than the base (0 = off)"},
    {"guard-tolerance", "guard.probe_tolerance", "collapse guard: roll back when the probe NLL exceeds the base's by this fraction"},
    {"guard-samples", "guard.probe_samples", "collapse guard: prompts of the probe set used"},
    {"trainable", "trainable", "lora (default) or norm-affine: the RMSNorm weights train instead of LoRA"},
    {"norm-targets", "norm_affine.targets", "trainable norm-affine: comma-separated input_layernorm,post_attention_layernorm,norm"},
    {"lora-targets", "lora.targets", "comma-separated: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"},
    {"lora-rank", "lora.rank", "LoRA rank r"},
    {"lora-alpha", "lora.alpha", "LoRA alpha (scale = alpha / r)"},
    {"lora-dropout", "lora.dropout", "dropout on the LoRA input"},
    {"lora-seed", "lora.seed", "seed of the LoRA A initialisation"},
    {"init-adapter", "lora.init_adapter", "start from this PEFT adapter directory"},
    {"max-new-tokens", "generation.max_new_tokens", "tokens generated per answer at most"},
    {"temperature", "generation.temperature", "0 = greedy"},
    {"top-p", "generation.top_p", "nucleus sampling mass"},
    {"seed", "generation.seed", "sampling seed"},
    {"generation-batch", "generation.batch_size", "prompts answered per batch"},
    {"generate", "generation.enabled", "false: adapt only, write no predictions"},
    {"answer-nll", "eval.answer_nll", "summary: reference NLL under the base and adapted model"},
    {"score-batch", "eval.score_batch", "prompts per scoring forward"},
    {"checkpoint-dir", "checkpoint.dir", "write HDF5 checkpoints (step-<k>.h5) here"},
    {"checkpoint-every-steps", "checkpoint.every_steps", "a checkpoint every N optimiser steps (0 = only at the end)"},
    {"checkpoint-every-seconds", "checkpoint.every_seconds", "also a checkpoint when this many seconds passed since the last (0 = off)"},
    {"keep-last", "checkpoint.keep_last", "checkpoints kept (the newest; 0 = all)"},
    {"checkpoint-fresh", "checkpoint.fresh", "a new job deletes the checkpoints it finds in --checkpoint-dir (without it such a folder is refused)"},
    {"resume", "checkpoint.resume", "continue a stopped online job: latest (newest that verifies) or FILE"},
    {"fault-inject", "debug.fault_inject", "test hook: rank=R,step=S,action=kill|stop|term|throw[,phase=after-forward] makes rank R fail at (or inside) step S"},
    {"checkpoint-pause-before-rename", "debug.pause_before_rename", "test hook: seconds between writing a checkpoint and renaming it into place"},
    {"resume-ignore-base", "checkpoint.ignore_base_mismatch", "resume even if the checkpoint was saved for another base model (config or weights fingerprint; loud in the log)"},
};

// `method:` and the objective.* keys: the method's typed settings.
MethodSpec read_method(RecipeReader& r) {
  MethodSpec method;
  method.name = r.get<std::string>("method", "tlm");
  TLM_CHECK(std::find(method_names().begin(), method_names().end(), method.name) != method_names().end(),
            r.origin("method"), ": method must be tlm, tent, eata, come or sytta, got '", method.name, "'");
  TlmObjectiveOptions& tlm_options = method.tlm;
  tlm_options.threshold = r.get<double>("objective.threshold", tlm_options.threshold);
  tlm_options.lambda = r.get<double>("objective.lambda", tlm_options.lambda);
  tlm_options.sample_selection = r.get<bool>("objective.sample_selection", true);
  const std::string loss = r.get<std::string>("objective.loss", "log_perplexity");
  TLM_CHECK(loss == "log_perplexity" || loss == "perplexity", r.origin("objective.loss"),
            ": objective.loss must be log_perplexity or perplexity, got '", loss, "'");
  tlm_options.perplexity_loss = loss == "perplexity";
  const std::string positions = r.get<std::string>("objective.positions", method.name == "sytta" ? "generated" : "prompt");
  TLM_CHECK(positions == "prompt" || positions == "generated", r.origin("objective.positions"),
            ": objective.positions must be prompt or generated, got '", positions, "'");
  TLM_CHECK(method.name != "sytta" || positions == "generated", r.origin("objective.positions"),
            ": sytta learns from the generated answer's tokens: objective.positions must be generated");
  method.entropy.positions = parse_scored_positions(positions);
  method.entropy.generated_tokens = r.get<int64_t>("objective.generated_tokens", method.entropy.generated_tokens);
  method.entropy.uncertainty_mass = r.get<double>("objective.uncertainty_mass", 0.0);
  method.come_base = r.get<std::string>("objective.come_base", method.come_base);
  TLM_CHECK(method.come_base == "tent" || method.come_base == "eata", r.origin("objective.come_base"),
            ": objective.come_base must be tent or eata, got '", method.come_base, "'");
  method.eata.entropy_margin = r.get<double>("objective.entropy_margin", method.eata.entropy_margin);
  method.eata.redundancy_margin = r.get<double>("objective.redundancy_margin", method.eata.redundancy_margin);
  method.eata.moving_average = r.get<double>("objective.moving_average", method.eata.moving_average);
  method.fisher.data = r.get<std::string>("objective.fisher_data", "");
  method.fisher.alpha = r.get<double>("objective.fisher_alpha", method.fisher.alpha);
  method.fisher.samples = r.get<int64_t>("objective.fisher_samples", method.fisher.samples);
  const bool eata_based = method.name == "eata" || (method.name == "come" && method.come_base == "eata");
  TLM_CHECK(!method.fisher.enabled() || eata_based, r.origin("objective.fisher_data"),
            ": the Fisher regulariser is EATA's; method '", method.name, "' does not take it");
  method.sytta.entropy_weight = r.get<double>("objective.entropy_weight", method.sytta.entropy_weight);
  method.sytta.kl_weight = r.get<double>("objective.kl_weight", method.sytta.kl_weight);
  TLM_CHECK(method.sytta.entropy_weight >= 0, r.origin("objective.entropy_weight"), ": objective.entropy_weight must be >= 0");
  TLM_CHECK(method.sytta.kl_weight >= 0, r.origin("objective.kl_weight"), ": objective.kl_weight must be >= 0");
  return method;
}

// The guard.* keys.
GuardOptions read_guards(RecipeReader& r) {
  GuardOptions g;
  g.loss_floor = r.get<double>("guard.loss_floor", g.loss_floor);
  g.loss_average = r.get<double>("guard.loss_average", g.loss_average);
  g.reset_every = r.get<int64_t>("guard.reset_every", g.reset_every);
  g.probe_data = r.get<std::string>("guard.probe_data", g.probe_data);
  g.probe_every = r.get<int64_t>("guard.probe_every", g.probe_every);
  g.probe_tolerance = r.get<double>("guard.probe_tolerance", g.probe_tolerance);
  g.probe_samples = r.get<int64_t>("guard.probe_samples", g.probe_samples);
  TLM_CHECK(g.probe_every == 0 || !g.probe_data.empty(), r.origin("guard.probe_every"),
            ": guard.probe_every needs the probe set (guard.probe_data / --guard-data)");
  return g;
}

}  // namespace

void add_recipe_flags(cxxopts::Options& options, const std::vector<RecipeFlag>& extra, const std::string& extra_group) {
  auto group = options.add_options("Recipe overrides");
  for (const RecipeFlag& f : kFlags) group(f.flag, std::string(f.help) + "  [" + f.key + "]", cxxopts::value<std::string>());
  auto more = options.add_options(extra_group);
  for (const RecipeFlag& f : extra) more(f.flag, std::string(f.help) + "  [" + f.key + "]", cxxopts::value<std::string>());
}

AdaptRecipe load_adapt_recipe(const std::string& recipe_path, const cxxopts::ParseResult& parsed,
                              const std::vector<RecipeFlag>& extra) {
  YAML::Node root(YAML::NodeType::Map);
  if (!recipe_path.empty()) {
    TLM_CHECK(!std::filesystem::is_directory(recipe_path), recipe_path, ": is a directory; --config names a YAML ",
              "recipe file (configs/*.yaml)");
    try {
      root = YAML::LoadFile(recipe_path);
    } catch (const YAML::BadFile&) {
      TLM_FAIL(recipe_path, ": cannot open the recipe");
    } catch (const YAML::ParserException& e) {
      TLM_FAIL(recipe_path, ":", e.mark.line + 1, ": not valid YAML (", e.msg, ")");
    }
    if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    TLM_CHECK(root.IsMap(), recipe_path, ": a recipe must be a YAML mapping of keys");
  }
  std::set<std::string> known;
  for (const RecipeFlag& f : kFlags) known.insert(f.key);
  for (const RecipeFlag& f : extra) known.insert(f.key);
  AdaptRecipe out;
  out.values = std::make_shared<RecipeReader>(recipe_path, root, known);
  RecipeReader& r = *out.values;
  r.check_keys(root, "");
  for (const RecipeFlag& f : kFlags)
    if (parsed.count(f.flag)) r.set(f.key, parsed[f.flag].as<std::string>(), f.flag);
  for (const RecipeFlag& f : extra)
    if (parsed.count(f.flag)) r.set(f.key, parsed[f.flag].as<std::string>(), f.flag);

  ModelOptions& m = out.model;
  m.model = r.get<std::string>("model", TLM_DEFAULT_MODEL);
  m.device = r.get<std::string>("device", "auto");
  m.dtype = r.get<std::string>("dtype", "auto");
  m.chat_template = r.get<std::string>("chat_template", "auto");
  m.threads = r.get<int>("threads", 0);
  m.packed_weights = r.get<std::string>("packed_weights", "auto");
  TLM_CHECK(m.packed_weights == "auto" || m.packed_weights == "on" || m.packed_weights == "off",
            r.origin("packed_weights"), ": packed_weights must be auto, on or off, got '", m.packed_weights, "'");
  m.weights = r.get<std::string>("weights", "fp32");
  check_weights_setting(m.weights, r.origin("weights"));
  m.trains = true;
  m.cutoff_len = r.get<int64_t>("stream.cutoff_len", 4096);
  m.data_parallel_ok = true;
  m.tp_size = r.get<int>("parallel.tp_size", 1);
  m.dp_size = r.get<int>("parallel.dp_size", 1);
  m.backend = r.get<std::string>("parallel.backend", "auto");
  m.collective_timeout = r.get<double>("parallel.timeout_seconds", m.collective_timeout);
  TLM_CHECK(m.backend == "auto" || m.backend == "single" || m.backend == "mpi" || m.backend == "nccl",
            r.origin("parallel.backend"), ": parallel.backend must be auto, single, mpi or nccl");
  TLM_CHECK(!m.model.empty(), "no model: give --model or `model:` in the recipe");
  TLM_CHECK(m.dtype == "auto" || m.dtype == "fp32" || m.dtype == "bf16", r.origin("dtype"),
            ": dtype must be auto, fp32 or bf16");
  try {
    parse_device(m.device);
  } catch (const Error&) {
    TLM_FAIL(r.origin("device"), ": device must be auto, cpu, cuda or cuda:N, got '", m.device, "'");
  }

  AdaptConfig& c = out.adapt;
  const std::string mode = r.get<std::string>("mode", "online");
  TLM_CHECK(mode == "online" || mode == "offline" || mode == "episodic", r.origin("mode"),
            ": mode must be online, offline or episodic, got '", mode, "'");
  c.mode = mode == "online" ? AdaptMode::Online : mode == "offline" ? AdaptMode::Offline : AdaptMode::Episodic;
  c.episodic_steps = r.get<int64_t>("episodic.steps", c.episodic_steps);
  c.scalenet = r.get<std::string>("episodic.scalenet", "");
  TLM_CHECK(c.scalenet.empty() || c.mode == AdaptMode::Episodic, r.origin("episodic.scalenet"),
            ": ScaleNet sets the step sizes of mode episodic; this job is ", mode);
  c.data = r.get<std::string>("data.path", "");
  const std::string follow = r.get<std::string>("data.follow", "");
  if (!follow.empty()) {
    TLM_CHECK(c.data.empty() || c.data == follow, r.origin("data.follow"), ": data.follow names the stream ('", follow,
              "'); data.path names another ('", c.data, "'): give one");
    c.data = follow;
    c.follow = true;
  }
  c.data_options.format = parse_prompt_format(r.get<std::string>("data.format", "auto"));
  const std::string prompt_field = r.get<std::string>("data.prompt_field", "");
  if (!prompt_field.empty()) {
    FieldMapping mapping;
    mapping.prompt_field = prompt_field;
    const std::string input = r.get<std::string>("data.input_field", "");
    const std::string reference = r.get<std::string>("data.reference_field", "");
    if (!input.empty()) mapping.input_field = input;
    if (!reference.empty()) mapping.reference_field = reference;
    c.data_options.mapping = mapping;
  }
  c.output_dir = r.get<std::string>("output_dir", c.output_dir);
  c.max_samples = r.get<int64_t>("stream.max_samples", 0);
  c.stream_batch = r.get<int64_t>("stream.stream_batch", c.stream_batch);
  c.train_batch_size = r.get<int64_t>("stream.train_batch_size", c.train_batch_size);
  c.learning_rate = r.get<double>("optim.lr", c.learning_rate);
  c.lr_schedule = r.get<std::string>("optim.schedule", "");
  if (!c.lr_schedule.empty()) parse_schedule(c.lr_schedule);
  c.warmup_ratio = r.get<double>("optim.warmup_ratio", -1.0);
  c.step.max_grad_norm = r.get<double>("optim.max_grad_norm", c.step.max_grad_norm);
  c.adamw.weight_decay = r.get<double>("optim.weight_decay", c.adamw.weight_decay);
  c.fresh_optimizer_per_chunk = r.get<bool>("optim.fresh_optimizer_per_chunk", true);
  c.step.skip_unselected = r.get<bool>("optim.skip_unselected_steps", false);
  c.method = read_method(r);
  c.guards = read_guards(r);
  TLM_CHECK(!c.guards.any() || c.mode != AdaptMode::Episodic, r.origin("mode"),
            ": collapse guards watch a job that carries its adapter; an episodic job resets after every prompt");
  try {
    c.trainable = parse_trainable_kind(r.get<std::string>("trainable", "lora"));
  } catch (const Error& e) {
    TLM_FAIL(r.origin("trainable"), ": ", e.what());
  }
  c.norm_targets = r.get_list("norm_affine.targets", c.norm_targets);
  TLM_CHECK(c.trainable == TrainableKind::Lora || c.mode != AdaptMode::Episodic, r.origin("trainable"),
            ": an episodic job trains a fresh LoRA per prompt; trainable norm-affine is for online and offline jobs");
  c.lora.targets = r.get_list("lora.targets", c.lora.targets);
  c.lora.rank = r.get<int64_t>("lora.rank", c.lora.rank);
  c.lora.alpha = r.get<double>("lora.alpha", c.lora.alpha);
  c.lora.dropout = r.get<double>("lora.dropout", c.lora.dropout);
  c.lora.seed = r.get<uint64_t>("lora.seed", c.lora.seed);
  c.init_adapter = r.get<std::string>("lora.init_adapter", "");
  c.checkpoints.directory = r.get<std::string>("checkpoint.dir", "");
  c.checkpoints.every_steps = r.get<int64_t>("checkpoint.every_steps", 0);
  c.checkpoints.keep_last = r.get<int64_t>("checkpoint.keep_last", 3);
  c.checkpoints.every_seconds = r.get<double>("checkpoint.every_seconds", 0.0);
  c.resume = r.get<std::string>("checkpoint.resume", "");
  c.checkpoints.fresh = r.get<bool>("checkpoint.fresh", false);
  c.resume_ignore_base = r.get<bool>("checkpoint.ignore_base_mismatch", false);
  c.fault = parse_fault_plan(r.get<std::string>("debug.fault_inject", ""), r.origin("debug.fault_inject"));
  c.checkpoints.pause_before_rename = r.get<double>("debug.pause_before_rename", 0.0);
  c.generation.max_new_tokens = r.get<int64_t>("generation.max_new_tokens", c.generation.max_new_tokens);
  c.generation.sampling.temperature = r.get<double>("generation.temperature", 0.0);
  c.generation.sampling.top_p = r.get<double>("generation.top_p", 1.0);
  c.generation.sampling.seed = r.get<uint64_t>("generation.seed", 0);
  c.generation_batch = r.get<int64_t>("generation.batch_size", c.generation_batch);
  c.generate = r.get<bool>("generation.enabled", true);
  c.answer_nll = r.get<bool>("eval.answer_nll", true);
  c.score_batch = r.get<int64_t>("eval.score_batch", c.score_batch);
  return out;
}

}  // namespace tlm
