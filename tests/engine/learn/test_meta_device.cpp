// The CPU-side guard that no tensor escapes the job's device. The meta device holds shapes
// and dtypes but no data, and an op that mixes a meta tensor with a CPU tensor (other than a
// 0-dim scalar) fails. So building the model on `meta` and running its forward, a backward
// into LoRA on every projection, an AdamW step, LoRA merge/unmerge, assembling the full
// adapter, the entropy objectives (Tent, EATA with its moving average) and a KV-cache prefill
// plus decode steps fails on any tensor the code makes on the
// CPU instead of on the model's device: the same mistake that would put a CPU tensor next
// to CUDA ones on a GPU, where no GPU runs.
//
// What it cannot cover: code that reads values on the host (the per-step record, the stop
// check of generate(), gradient-norm clipping, sampling with a generator), which needs
// data; a CPU tensor that is only ever copied into a meta one (copy_ accepts it); and
// CUDA-only behaviour (streams, NCCL, the caching allocator). Those run in the gpu-labelled
// tests on a GPU machine (tests/gpu/run_on_device.sh).
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "dist/lora_parallel.h"
#include "engine/common/error.h"
#include "engine/generate/token_batch.h"
#include "engine/learn/adamw.h"
#include "engine/learn/lora.h"
#include "engine/learn/methods.h"
#include "engine/learn/tlm_objective.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

const c10::Device kMeta(c10::kMeta);

test::TinyLlama meta_model(const std::string& model_type) {
  test::TinyLlamaSpec spec;
  spec.model_type = model_type;
  spec.tie_word_embeddings = model_type == "qwen2";
  if (model_type == "mistral") spec.sliding_window = 3;
  return test::load_tiny_llama(spec, at::kFloat, kMeta);
}

LoraConfig every_projection() {
  LoraConfig c;
  c.targets = lora_target_names();
  c.rank = 4;
  c.dropout = 0.1;  // the dropout mask is drawn on the device too
  return c;
}

void expect_meta(const at::Tensor& t, const std::string& what) {
  ASSERT_TRUE(t.defined()) << what << " is undefined";
  EXPECT_TRUE(t.is_meta()) << what << " is on " << t.device() << ", not the model's device";
}

class MetaDevice : public ::testing::TestWithParam<std::string> {};

TEST_P(MetaDevice, ForwardBackwardAdamwStepStayOnTheDevice) {
  test::TinyLlama tiny = meta_model(GetParam());
  LoraAdapters lora(*tiny.model, every_projection());
  for (const at::Tensor& p : lora.parameters()) expect_meta(p, "a LoRA tensor");
  AdamW optimizer(lora.parameters(), AdamWOptions{});
  for (const at::Tensor& m : optimizer.exp_avg()) expect_meta(m, "an AdamW moment");

  // Right-padded training batch (masks built) and an unpadded one (causal fast path).
  for (bool padded : {true, false}) {
    const std::vector<std::vector<int32_t>> seqs =
        padded ? std::vector<std::vector<int32_t>>{{3, 4, 5, 6, 7}, {8, 9, 10}}
               : std::vector<std::vector<int32_t>>{{3, 4, 5, 6}, {7, 8, 9, 10}};
    TokenBatch batch = right_padded_batch(seqs, 0, kMeta);
    ASSERT_EQ(batch.padded, padded);
    lora.set_training(true);
    at::AutoGradMode grad(true);
    at::Tensor ce = per_sample_ce(*tiny.model, batch);  // [B]
    expect_meta(ce, "per-sample ce");
    TlmLoss loss = tlm_loss(ce, at::Tensor(), TlmObjectiveOptions{}, /*global_selected=*/2.0);
    expect_meta(loss.loss, "the TLM loss");
    loss.loss.backward();
    for (const at::Tensor& p : lora.parameters()) expect_meta(p.grad(), "a LoRA gradient");
    optimizer.step(1e-3);
    for (const at::Tensor& p : lora.parameters()) expect_meta(p, "a LoRA tensor after AdamW");
    optimizer.zero_grad();
    lora.set_training(false);
  }
  // The entropy objectives' path: vocab-parallel entropy with its backward, mean
  // probabilities and EATA's cosines to its moving average (set after the first batch).
  for (const char* method : {"tent", "eata"}) {
    MethodSpec spec;
    spec.name = method;
    auto objective = make_objective(spec, *tiny.model);
    for (int round = 0; round < 2; ++round) {
      TokenBatch batch = right_padded_batch({{3, 4, 5, 6, 7}, {8, 9, 10}}, 0, kMeta);
      at::AutoGradMode grad(true);
      SampleTerms t = objective->terms(*tiny.model, ObjectiveBatch{batch, {}, {1, 0}, {4, 2}, {}});
      expect_meta(t.value, str_cat(method, " value"));
      for (const auto& [name, v] : t.extra) expect_meta(v, str_cat(method, " ", name));
      (t.value * t.weight * t.selected.to(at::kFloat)).sum().backward();
      for (const at::Tensor& p : lora.parameters()) expect_meta(p.grad(), str_cat(method, " LoRA gradient"));
      optimizer.zero_grad();
      if (t.mean_probs.defined()) {
        // after_step reads the kept count on the host, which the meta device cannot give.
        expect_meta(t.mean_probs, "EATA mean probabilities");
        objective->load_state({{"eata.moving_average", at::zeros({tiny.config.vocab_size}, at::TensorOptions().device(kMeta))}},
                              "meta test");
      }
    }
  }
  for (const auto& [name, t] : lora.full_state()) expect_meta(t, name);
  lora.merge();
  lora.unmerge();
}

TEST_P(MetaDevice, PrefillAndDecodeStepsStayOnTheDevice) {
  test::TinyLlama tiny = meta_model(GetParam());
  LoraAdapters lora(*tiny.model, every_projection());
  c10::InferenceMode inference;
  TokenBatch prompts = left_padded_batch({{5, 6, 7, 8}, {9, 10}}, 0, kMeta);
  KvCache cache = tiny.model->make_cache(2, 4 + 3);
  expect_meta(cache.keys.front(), "the KV cache");
  at::Tensor last = tiny.model->forward_hidden(prompts.ids, prompts.attention_mask(), &cache).select(1, 3);
  for (int step = 0; step < 3; ++step) {
    at::Tensor logits = tiny.model->logits_of(last);  // [B, V]
    expect_meta(logits, "decode logits");
    at::Tensor next = logits.argmax(-1);
    last = tiny.model->forward_hidden(next.view({2, 1}), at::Tensor(), &cache).select(1, 0);
  }
  expect_meta(last, "the last hidden state");
  EXPECT_EQ(cache.length, 4 + 3);
}

INSTANTIATE_TEST_SUITE_P(Models, MetaDevice, ::testing::Values("llama", "mistral", "qwen2"));

}  // namespace
}  // namespace tlm
