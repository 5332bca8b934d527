// Writes a checkpoint of a seeded random state and, beside it, the same state as JSON, for
// the h5py interoperability test:  checkpoint_probe OUT.h5 OUT.json
#include <fstream>
#include <iostream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "checkpoints/adapter_checkpoint.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: checkpoint_probe OUT.h5 OUT.json\n";
    return 2;
  }
  at::manual_seed(5);
  tlm::CheckpointState s;
  s.identity.engine_version = "tlm test";
  s.identity.base_model_path = "/models/tiny";
  s.identity.base_config_hash = "c0ffee";
  s.identity.base_weights_hash = "f00d";
  s.identity.tp_at_save = 2;
  s.identity.dp_at_save = 3;
  s.identity.method_json = R"({"lora":{"rank":4}})";
  nlohmann::json j;
  for (const char* m : {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"}) {
    for (const char* part : {"lora_A", "lora_B"}) {
      const std::string name = std::string(m) + "." + part;
      const at::Tensor t = at::randn({3, 5});
      s.adapter[name] = t;
      s.exp_avg[name] = t * 0.5;
      s.exp_avg_sq[name] = t * t;
      const at::Tensor c = t.contiguous();
      j["adapter"][name] = std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    }
  }
  s.optimizer_step = 4;
  s.global_step = 9;
  s.samples_consumed = 72;
  s.stream_identity = "prompts.jsonl";
  s.stream_offset = 72;
  s.rng_state = "seed=1";
  s.scheduler_state = R"({"k":4})";
  s.stats["loss"] = {0.5, 0.25, 0.125};
  j["stats"]["loss"] = s.stats["loss"];
  tlm::AdapterCheckpoint::save_atomic(argv[1], s);
  std::ofstream(argv[2]) << j.dump();
  return 0;
}
