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
//
// Under tensor parallelism every rank of the TP group runs this loop: rank 0 (HTTP) decides
// each turn and sends it as a tick (engine/serve/serve_tick.h); the others apply the same
// ticks (their requests' channels go nowhere) and so make the same collective calls. Every
// decision that depends on time, clients or HTTP is rank 0's and travels in the tick; the rest
// (admission order, batching, learning, checkpoint contents) follows from the ticks alone.
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
#include "engine/serve/serve_tick.h"
#include "engine/serve/session_store.h"

namespace tlm {

class LlamaModel;

struct ServeOptions {
  bool learn = true;                   // false: serve the adapters frozen
  int64_t max_batch_rows = 16;         // requests decoding at once, over every batch
  int64_t checkpoint_every_steps = 0;  // every N optimiser steps (any session); 0: off
  double checkpoint_every_seconds = 0; // and when this long passed with unsaved changes; 0: off
  // The TP group's host communicator: its rank 0 decides, the others follow (nullptr: alone).
  CommunicatorPtr group;
};

// A call every rank of the TP group runs at the same point of the loop (it may be collective,
// e.g. assembling a full adapter); `root` is true on rank 0, whose result answers the caller.
using ReplicatedCall = std::function<nlohmann::json(const nlohmann::json& arg, bool root)>;

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
  // On rank 0 only: it must not change what the other ranks hold (read sessions, not load them).
  nlohmann::json call(std::function<nlohmann::json()> task);
  // Registers a replicated call (every rank, before run()) / runs one with `arg` (rank 0).
  void add_call(const std::string& name, ReplicatedCall call);
  nlohmann::json call_everywhere(const std::string& name, nlohmann::json arg);
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
  struct PendingCall {
    std::string name;
    nlohmann::json arg;
    std::promise<nlohmann::json> result;
  };

  template <class Item>
  nlohmann::json hand_over(std::vector<std::unique_ptr<Item>>& queue, std::unique_ptr<Item> item);
  bool root() const { return !options_.group || options_.group->rank() == 0; }
  ServeTick gather(bool idle, std::vector<std::unique_ptr<PendingCall>>& calls);
  void apply_arrivals(const ServeTick& tick);
  void run_calls(const ServeTick& tick, std::vector<std::unique_ptr<PendingCall>>& calls);
  bool admit();
  bool decode();
  bool learn();
  void use(const AdapterSnapshot& params);
  void use_rows();
  void deliver(const DecodeEvent& e);
  void complete(uint64_t id, bool stopped, const std::string& error = "");
  void fail_all(const std::string& error);
  Session* next_learner();
  bool checkpoint_due() const;
  void checkpoint(bool force);
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
  std::vector<std::unique_ptr<PendingCall>> calls_;
  std::map<std::string, ReplicatedCall> handlers_;
  bool stopping_ = false;
  uint64_t next_id_ = 1;

  std::vector<Waiting> arrived_;  // rank 0: this tick's arrivals, with their channels
  std::deque<Waiting> waiting_;
  DecodeBatch batch_;
  std::map<uint64_t, Active> rows_;
  std::string last_learner_;
  int64_t steps_since_save_ = 0;
  std::chrono::steady_clock::time_point last_save_ = std::chrono::steady_clock::now();
};

}  // namespace tlm
