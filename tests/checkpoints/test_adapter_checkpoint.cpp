// AdapterCheckpoint: a saved state loads back bitwise; damaged files (a flipped byte in a
// tensor, a truncated file, a deleted attribute, a newer format) fail verification with a
// message naming what is wrong and are never loaded; interrupted saves leave only files
// marked temporary.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>

#include "checkpoints/adapter_checkpoint.h"
#include "engine/common/error.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

CheckpointState sample_state() {
  at::manual_seed(11);
  CheckpointState s;
  s.identity.engine_version = "tlm 0.1.0";
  s.identity.base_model_path = "/models/tiny";
  s.identity.base_config_hash = "cfg123";
  s.identity.base_weights_hash = "w456";
  s.identity.tp_at_save = 2;
  s.identity.method_json = R"({"lora":{"rank":4,"alpha":8,"targets":["q_proj","v_proj"]}})";
  for (const char* m : {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"}) {
    for (const char* part : {"lora_A", "lora_B"}) {
      const std::string name = std::string(m) + "." + part;
      s.adapter[name] = at::randn({part[5] == 'A' ? 4 : 16, part[5] == 'A' ? 32 : 4});
      s.exp_avg[name] = at::randn_like(s.adapter[name]);
      s.exp_avg_sq[name] = at::rand_like(s.adapter[name]);
    }
  }
  s.optimizer_step = 3;
  s.global_step = 7;
  s.samples_consumed = 56;
  s.stream_identity = "stream.jsonl sha 0123";
  s.stream_offset = 56;
  s.rng_state = "seed=42";
  s.scheduler_state = R"({"kind":"constant","k":3})";
  s.stats["loss"] = {1.5, 0.25, 0.0};
  s.stats["lr"] = {5e-5, 5e-5, 5e-5};
  return s;
}

bool bitwise_equal(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, v] : a)
    if (!b.count(k) || !at::equal(v, b.at(k))) return false;
  return true;
}

std::string joined(const VerifyReport& r) {
  std::string out;
  for (const auto& p : r.problems) out += p + "\n";
  return out;
}

TEST(AdapterCheckpoint, RoundTripIsBitwise) {
  test::TempDir dir("ckpt");
  const CheckpointState s = sample_state();
  const std::string path = dir.file("step-7.h5");
  AdapterCheckpoint::save_atomic(path, s);
  EXPECT_TRUE(AdapterCheckpoint::verify(path).ok) << joined(AdapterCheckpoint::verify(path));
  const CheckpointState back = AdapterCheckpoint::load(path);
  EXPECT_TRUE(bitwise_equal(back.adapter, s.adapter));
  EXPECT_TRUE(bitwise_equal(back.exp_avg, s.exp_avg));
  EXPECT_TRUE(bitwise_equal(back.exp_avg_sq, s.exp_avg_sq));
  EXPECT_EQ(back.optimizer_step, 3);
  EXPECT_EQ(back.global_step, 7);
  EXPECT_EQ(back.samples_consumed, 56);
  EXPECT_EQ(back.stream_identity, s.stream_identity);
  EXPECT_EQ(back.stream_offset, 56);
  EXPECT_EQ(back.rng_state, s.rng_state);
  EXPECT_EQ(back.scheduler_state, s.scheduler_state);
  EXPECT_EQ(back.stats, s.stats);
  EXPECT_EQ(back.identity.method_json, s.identity.method_json);
  EXPECT_EQ(back.identity.tp_at_save, 2);
  EXPECT_FALSE(back.identity.created_utc.empty());
  // Only the checkpoint is left in the folder: no temporary file.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    ++files;
    EXPECT_FALSE(is_temporary_checkpoint_name(e.path().filename().string())) << e.path();
  }
  EXPECT_EQ(files, 1);
}

// Offset of a dataset's raw bytes in the file (contiguous storage is not used: chunked, one
// chunk), found through HDF5's chunk query.
haddr_t chunk_offset(const std::string& path, const std::string& dataset) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  hsize_t offset[2] = {0, 0};
  unsigned mask = 0;
  haddr_t addr = 0;
  hsize_t size = 0;
  H5Dget_chunk_info_by_coord(d, offset, &mask, &addr, &size);
  H5Dclose(d);
  H5Fclose(f);
  return addr;
}

TEST(AdapterCheckpoint, FlippedByteInATensorFailsVerification) {
  test::TempDir dir("ckpt");
  const std::string path = dir.file("c.h5");
  AdapterCheckpoint::save_atomic(path, sample_state());
  const std::string ds = "/adapter/model.layers.0.self_attn.v_proj/lora_B";
  const haddr_t at = chunk_offset(path, ds);
  ASSERT_GT(at, 0u);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at + 5));
    char c = 0;
    f.read(&c, 1);
    c ^= 0x40;
    f.seekp(static_cast<std::streamoff>(at + 5));
    f.write(&c, 1);
  }
  const VerifyReport r = AdapterCheckpoint::verify(path);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(joined(r).find(ds), std::string::npos) << joined(r);
  EXPECT_NE(joined(r).find("Fletcher32"), std::string::npos) << joined(r);
  EXPECT_NE(test::error_of([&] { AdapterCheckpoint::load(path); }).find("does not verify, not loaded"),
            std::string::npos);
}

TEST(AdapterCheckpoint, TruncatedFileFailsVerification) {
  test::TempDir dir("ckpt");
  const std::string path = dir.file("c.h5");
  AdapterCheckpoint::save_atomic(path, sample_state());
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  const VerifyReport r = AdapterCheckpoint::verify(path);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(joined(r).find(path), std::string::npos) << joined(r);
}

TEST(AdapterCheckpoint, DeletedAttributeFailsVerification) {
  test::TempDir dir("ckpt");
  const std::string path = dir.file("c.h5");
  AdapterCheckpoint::save_atomic(path, sample_state());
  {
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "state", H5P_DEFAULT);
    ASSERT_GE(H5Adelete(g, "stream_offset"), 0);
    H5Gclose(g);
    H5Fclose(f);
  }
  const VerifyReport r = AdapterCheckpoint::verify(path);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(joined(r).find("/state: attribute 'stream_offset' is missing"), std::string::npos) << joined(r);
}

TEST(AdapterCheckpoint, NewerFormatVersionIsRefusedWithAClearMessage) {
  test::TempDir dir("ckpt");
  const std::string path = dir.file("c.h5");
  AdapterCheckpoint::save_atomic(path, sample_state());
  {
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    const int64_t v = kCheckpointFormatVersion + 1;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Fclose(f);
  }
  const VerifyReport r = AdapterCheckpoint::verify(path);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(joined(r).find("written by a newer tlm"), std::string::npos) << joined(r);
}

TEST(AdapterCheckpoint, TemporaryNamesAreRecognised) {
  EXPECT_TRUE(is_temporary_checkpoint_name(".step-7.h5.tmp.1234"));
  EXPECT_FALSE(is_temporary_checkpoint_name("step-7.h5"));
}

}  // namespace
}  // namespace tlm
