// The engine thread of `tlm serve`: it owns the model and does all model work, in a loop of
//   1. admission: waiting requests (first come, first served) are prefilled alone, with their
//      session's current adapter, and join the decoding batch;
//   2. one decode step of the batch, every row with the adapter snapshot its request started
//      with (a session that learns while its earlier requests still decode keeps them on that
//      snapshot): rows of different adapters decode together, each with its own LoRA
//      (TrainableSet::use_row_states), so one session's requests never wait for another's;
//   3. at most one optimiser step of the online TLM rule on a session's learning queue: a
//      chunk of stream_batch answered prompts, train_batch_size prompts per step, a fresh
//      AdamW per chunk, as `tlm adapt` does. So learning never makes a waiting request wait
//      for more than one optimiser step, and a request is answered before it is learned from.
// HTTP threads only submit requests and read their channels (engine/serve/request_channel.h);
// everything else that touches the model or the sessions runs as a task on this thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/generate/decode_batch.h"
#include "engine/learn/adapt_config.h"
#include "engine/serve/openai_api.h"
#include "engine/serve/request_channel.h"
#include "engine/serve/serve_metrics.h"
#include "engine/serve/session_store.h"

namespace tlm {

class LlamaModel;

struct ServeOptions {
  bool learn = true;                   // false: serve the adapters frozen
  int64_t max_batch_rows = 16;         // requests decoding at once, over every batch
  int64_t checkpoint_every_steps = 0;  // every N optimiser steps (any session); 0: off
  double checkpoint_every_seconds = 0; // and when this long passed with unsaved changes; 0: off
};

// A request the engine answers: its adapter, prompt ids and decoding settings.
struct ServeJob {
  ModelRef ref;
  std::vector<int32_t> prompt;
  int64_t max_tokens = 1;
  SamplingOptions sampling;
};

class ServeEngine {
 public:
  // `config`: the learning rule (stream_batch, train_batch_size, lr and schedule,
  // fresh_optimizer_per_chunk); `learner` trains the live tensors of `trainable`.
  ServeEngine(LlamaModel& model, TrainableSet& trainable, TestTimeLearner& learner, SessionStore& sessions,
              const AdaptConfig& config, ServeOptions options, std::vector<int32_t> stop_ids, ServeMetrics& metrics);

  // Queues a request; its tokens arrive on the returned channel. Throws ApiError 503 once the
  // server is stopping.
  std::shared_ptr<RequestChannel> submit(ServeJob job);
  // Runs `task` on the engine thread between steps; returns its result or rethrows its error.
  nlohmann::json call(std::function<nlohmann::json()> task);
  // The loop; returns after stop(), once every admitted and waiting request is answered and
  // every changed session is checkpointed (queues persisted, not learned).
  void run();
  void stop();
  bool stopping() const;

 private:
  struct Active {
    std::shared_ptr<RequestChannel> channel;
    ServeJob job;
    int64_t generated = 0;
    std::string session;      // "" for the base model
    AdapterSnapshot params;   // the adapter state it decodes with (nullptr: base)
  };
  struct Waiting {
    uint64_t id;
    Active active;
  };
  struct Task {
    std::function<nlohmann::json()> run;
    std::promise<nlohmann::json> result;
  };

  bool admit();
  bool decode();
  bool learn();
  void use(const AdapterSnapshot& params);
  void use_rows();
  void deliver(const DecodeEvent& e);
  void complete(uint64_t id, bool stopped, const std::string& error = "");
  void fail_all(const std::string& error);
  Session* next_learner();
  void maybe_checkpoint(bool force);
  void publish_gauges();
  size_t rows() const;

  LlamaModel& model_;
  TrainableSet& trainable_;
  TestTimeLearner& learner_;
  SessionStore& sessions_;
  const AdaptConfig& config_;
  ServeOptions options_;
  std::vector<int32_t> stop_ids_;
  ServeMetrics& metrics_;

  mutable std::mutex mutex_;  // guards inbox_, tasks_, stopping_
  std::condition_variable wake_;
  std::vector<Waiting> inbox_;
  std::vector<std::unique_ptr<Task>> tasks_;
  bool stopping_ = false;
  uint64_t next_id_ = 1;

  std::deque<Waiting> waiting_;
  DecodeBatch batch_;
  std::map<uint64_t, Active> rows_;
  std::string last_learner_;
  int64_t steps_since_save_ = 0;
  std::chrono::steady_clock::time_point last_save_ = std::chrono::steady_clock::now();
};

}  // namespace tlm
