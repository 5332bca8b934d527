// One HDF5 file per checkpoint of an adaptation job (ARCHITECTURE.md section 5): full-size
// (unsharded) LoRA tensors, AdamW moments, the job's position in its stream and its
// statistics, with the identity of the base model and the method. Plain HDF5 that h5py and
// h5dump read:
//   /                      attrs format_version, engine_version, created_utc, base_model_path,
//                          base_config_hash, base_weights_hash, tp_at_save, dp_at_save,
//                          method (JSON: LoRA, objective, optimiser settings)
//   /adapter/<module>/lora_A, lora_B                 fp32, attr crc32 of the tensor bytes
//                                                    (norm-affine: /adapter/<norm>/weight)
//   /optimizer/<module>/lora_A.exp_avg, ...          fp32, attr crc32; group attr step
//   /state                 attrs global_step, samples_consumed, stream_identity,
//                          stream_offset, rng_state (the CPU generator), device_rng_kind and
//                          device_rng_state (the job device's generator: "cuda", or "" on a
//                          CPU job; optional, absent in files of earlier versions),
//                          rank_rng_states (JSON: every rank's generators; optional),
//                          scheduler_state (JSON)
//   /stats/<name>          extendable 1-D datasets, one value per optimiser step
//   /method_state/<name>   the method's own full-size fp32 tensors (e.g. EATA's moving
//                          average), attr crc32; absent for methods without state
// Every dataset is chunked with HDF5's Fletcher32 filter. Saves are atomic (temporary file in
// the same folder, fsync, rename, fsync of the folder), and a file that does not verify is
// never loaded.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tlm {

constexpr int kCheckpointFormatVersion = 1;

struct CheckpointIdentity {
  std::string engine_version;
  std::string created_utc;        // filled by save_atomic when empty
  std::string base_model_path;
  std::string base_config_hash;
  std::string base_weights_hash;
  int64_t tp_at_save = 1;
  int64_t dp_at_save = 1;
  std::string method_json = "{}";  // LoRA targets/rank/alpha, objective, optimiser
};

struct CheckpointState {
  CheckpointIdentity identity;
  // "<module>.lora_A" / "<module>.lora_B" -> full-size fp32 tensor.
  std::map<std::string, at::Tensor> adapter;
  // Same names -> AdamW first and second moments; empty when the job keeps no optimiser state.
  std::map<std::string, at::Tensor> exp_avg;
  std::map<std::string, at::Tensor> exp_avg_sq;
  int64_t optimizer_step = 0;
  int64_t global_step = 0;
  int64_t samples_consumed = 0;
  std::string stream_identity;
  int64_t stream_offset = 0;
  std::string rng_state;          // the CPU generator, hex bytes
  std::string device_rng_kind;    // "cuda" when the job ran on a GPU, else ""
  std::string device_rng_state;   // that device's generator, hex bytes
  // Every world rank's generators, JSON [{"cpu", "device_kind", "device"}, ...] (rank order):
  // data-parallel replicas draw different dropout masks, so each keeps its own stream.
  std::string rank_rng_states;
  std::string scheduler_state = "{}";
  // name -> one value per optimiser step (e.g. "loss", "lr", "selected", "ce_mean").
  std::map<std::string, std::vector<double>> stats;
  // The method's own state (Objective::state()), full-size tensors by name.
  std::map<std::string, at::Tensor> method_state;
};

struct VerifyReport {
  bool ok = true;
  std::vector<std::string> problems;  // each names the dataset or attribute and what is wrong
};

class AdapterCheckpoint {
 public:
  // Writes `state` to `path` atomically: `path` is either the previous file or the new one,
  // never a partial write, after a crash at any point.
  // `pause_before_rename`: seconds to wait between writing the temporary file and renaming it
  // into place (a test hook that widens the window a crash can hit; 0 in production).
  static void save_atomic(const std::string& path, const CheckpointState& state, double pause_before_rename = 0.0);
  // Checks format version, every attribute, every dataset's Fletcher32 and crc32.
  // Reads the file in a child process (HDF5 1.10 may crash or hang on a damaged file): a crash,
  // or no answer within `timeout_seconds`, is reported as damage.
  static VerifyReport verify(const std::string& path, double timeout_seconds = 120.0);
  // The same in this process: HDF5 1.10 may crash on a damaged file (verify() reads it in a
  // child process for that reason). For the fuzz target, which needs the coverage here.
  static VerifyReport verify_in_process(const std::string& path);
  // Loads a file that verifies; throws naming the file and every problem otherwise.
  static CheckpointState load(const std::string& path);
};

// A short, stable fingerprint of `text` (crc32, hex) for identities such as the base
// model's config.
std::string content_fingerprint(const std::string& text);

// Temporary files of interrupted saves in a checkpoint folder carry this marker; they are
// never taken for checkpoints.
bool is_temporary_checkpoint_name(const std::string& filename);

}  // namespace tlm
