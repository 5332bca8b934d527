#include "engine/serve/serve_tick.h"

#include "dist/gather_objects.h"
#include "engine/common/error.h"

namespace tlm {

nlohmann::json tick_to_json(const ServeTick& t) {
  nlohmann::json arrived = nlohmann::json::array(), calls = nlohmann::json::array();
  for (const ServeTick::Arrival& a : t.arrived)
    arrived.push_back({{"id", a.id}, {"model", a.job.ref.id()}, {"prompt", a.job.prompt},
                       {"max_tokens", a.job.max_tokens}, {"temperature", a.job.sampling.temperature},
                       {"top_p", a.job.sampling.top_p}, {"seed", a.job.sampling.seed}});
  for (const ServeTick::Call& c : t.calls) calls.push_back({{"name", c.name}, {"arg", c.arg}});
  return {{"arrived", arrived}, {"cancelled", t.cancelled}, {"calls", calls}, {"stopping", t.stopping},
          {"checkpoint", t.checkpoint}, {"exit", t.exit}};
}

ServeTick tick_from_json(const nlohmann::json& j) {
  ServeTick t;
  for (const nlohmann::json& a : j.at("arrived")) {
    ServeTick::Arrival r;
    r.id = a.at("id").get<uint64_t>();
    r.job.ref = parse_model_ref(a.at("model").get<std::string>());
    r.job.prompt = a.at("prompt").get<std::vector<int32_t>>();
    r.job.max_tokens = a.at("max_tokens").get<int64_t>();
    r.job.sampling.temperature = a.at("temperature").get<double>();
    r.job.sampling.top_p = a.at("top_p").get<double>();
    r.job.sampling.seed = a.at("seed").get<uint64_t>();
    t.arrived.push_back(std::move(r));
  }
  t.cancelled = j.at("cancelled").get<std::vector<uint64_t>>();
  for (const nlohmann::json& c : j.at("calls")) t.calls.push_back({c.at("name").get<std::string>(), c.at("arg")});
  t.stopping = j.at("stopping").get<bool>();
  t.checkpoint = j.at("checkpoint").get<bool>();
  t.exit = j.at("exit").get<bool>();
  return t;
}

ServeTick share_tick(const ServeTick& tick, const CommunicatorPtr& group) {
  if (!group || group->size() == 1) return tick;
  std::vector<std::string> local;
  if (group->rank() == 0) local.push_back(tick_to_json(tick).dump());
  const std::vector<std::string> all = all_gather_strings(local, group);  // rank 0's message
  TLM_CHECK(all.size() == 1, "serve: expected one tick from rank 0, got ", all.size());
  return tick_from_json(nlohmann::json::parse(all[0]));
}

}  // namespace tlm
