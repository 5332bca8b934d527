// Writes a checkpoint of a seeded random state and, beside it, the same state as JSON, for
// the h5py interoperability test:  checkpoint_probe OUT.h5 OUT.json
// With --llama2-13b: a checkpoint of Llama-2-13B's LoRA shapes (r 8 on q_proj and v_proj of
// 40 layers, hidden 5120, with AdamW moments), reporting its size and save time:
//   checkpoint_probe --llama2-13b OUT.h5
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "checkpoints/adapter_checkpoint.h"

int save_13b_shaped(const std::string& path) {
  at::manual_seed(13);
  tlm::CheckpointState s;
  s.identity.method_json = R"({"lora_rank":8,"lora_alpha":16,"lora_targets":["q_proj","v_proj"]})";
  int64_t params = 0;
  for (int layer = 0; layer < 40; ++layer) {
    for (const char* proj : {"q_proj", "v_proj"}) {
      const std::string m = "model.layers." + std::to_string(layer) + ".self_attn." + proj;
      for (auto [part, shape] : {std::make_pair("lora_A", std::vector<int64_t>{8, 5120}),
                                 std::make_pair("lora_B", std::vector<int64_t>{5120, 8})}) {
        const std::string name = m + "." + part;
        s.adapter[name] = at::randn(shape);
        s.exp_avg[name] = at::randn(shape);
        s.exp_avg_sq[name] = at::rand(shape);
        params += 8 * 5120;
      }
    }
  }
  s.stats["loss"] = std::vector<double>(10000, 1.0);
  const auto t0 = std::chrono::steady_clock::now();
  tlm::AdapterCheckpoint::save_atomic(path, s);
  const double save = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto t1 = std::chrono::steady_clock::now();
  const bool ok = tlm::AdapterCheckpoint::verify(path).ok;
  const double verify = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::cout << "llama2-13b LoRA r8 q,v: " << params << " adapter parameters (+ 2 moments), "
            << std::filesystem::file_size(path) / (1024.0 * 1024.0) << " MiB, saved in " << save
            << " s (fsync included), verified " << (ok ? "OK" : "BAD") << " in " << verify << " s\n";
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--llama2-13b") return save_13b_shaped(argv[2]);
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
