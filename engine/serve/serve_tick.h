// One turn of `tlm serve`'s engine loop, as the TP group's rank 0 decided it: the requests
// that arrived, the ones cancelled, the calls every rank runs (adapter export), and whether
// to checkpoint, stop accepting or exit. Under `--tp-size k` rank 0 serves HTTP and decides;
// it sends each tick to the other ranks of its group (over the host communicator), which
// apply it in the same order and so compute the same model work on their shards. Alone, the
// tick never leaves the process.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "engine/generate/sampler.h"
#include "engine/serve/openai_api.h"

namespace tlm {

// A request the engine answers: its adapter, prompt ids and decoding settings.
struct ServeJob {
  ModelRef ref;
  std::vector<int32_t> prompt;
  int64_t max_tokens = 1;
  SamplingOptions sampling;
};

struct ServeTick {
  struct Arrival {
    uint64_t id = 0;
    ServeJob job;
  };
  struct Call {
    std::string name;
    nlohmann::json arg;
  };
  std::vector<Arrival> arrived;
  std::vector<uint64_t> cancelled;  // waiting or decoding requests whose client went away
  std::vector<Call> calls;
  bool stopping = false;            // no new requests: finish, persist and exit
  bool checkpoint = false;          // checkpoint every changed session now
  bool exit = false;                // the loop ends (stopping, nothing left)
};

nlohmann::json tick_to_json(const ServeTick& tick);
ServeTick tick_from_json(const nlohmann::json& j);

// Rank 0's tick on every rank of `group` (its argument on rank 0, ignored elsewhere).
// Collective over `group`; the identity without one or on a group of one.
ServeTick share_tick(const ServeTick& tick, const CommunicatorPtr& group);

}  // namespace tlm
