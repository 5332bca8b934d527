// Online TLM over an unbounded stream: `--data -` (JSONL or text lines on standard input,
// until it closes) or `--follow FILE` (a file that keeps growing, until a signal). The rule is
// the online job's (engine/learn/adapt_job.h): chunks of `stream_batch` usable prompts, each
// answered with the current adapter and then learned from; a chunk waits until it is full,
// except the last one of a stream that ended. Memory holds one chunk: records are read as they
// arrive (engine/data/record_feed.h), answers and steps go straight to the output files.
//
// Rank 0 reads the stream and broadcasts each chunk's records over the host group, so
// standard input (which mpirun gives to rank 0 alone) works under TP and DP.
//
// Checkpoints record the stream position in their scheduler state ("stream": byte offset,
// lines and records consumed where the unfinished chunk starts, and how many of its prompts
// were learned): a resumed job reopens a followed file at that byte, or reads a standard input
// that the producer continues from it, re-reads the unfinished chunk and learns the rest of it;
// the adapter is bitwise the uninterrupted run's, which is bitwise `tlm adapt --data FILE` on
// the same records. A job stopped by a signal checkpoints, writes its adapter and summary
// (the normal end of a followed stream) and exits 0.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/process_grid.h"
#include "engine/data/record_feed.h"
#include "engine/learn/adapt_config.h"
#include "engine/learn/job_setup.h"
#include "engine/learn/job_steps.h"
#include "engine/learn/memory_report.h"
#include "engine/learn/run_outputs.h"

namespace tlm {

class LlamaModel;
class PromptEncoder;

// True when `config` reads an unbounded stream (data "-" or data.follow) rather than a file.
bool is_stream_job(const AdaptConfig& config);

class StreamJob {
 public:
  StreamJob(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config, std::string model_path,
            const ProcessGrid& grid);
  ~StreamJob();
  // Runs until the stream ends (standard input closed, or max_samples prompts) or a signal
  // stops the job; returns the summary (also written to summary.json).
  nlohmann::json run();

 private:
  // The prompts between two stream positions: `start` is where the chunk's first line begins.
  struct Chunk {
    StreamPosition start, end;
    int64_t base = 0;  // prompts of the stream before this chunk
    std::vector<Sample> samples;
  };

  bool read_chunk(Chunk& chunk);  // false: asked to stop while waiting for input
  bool take_records(size_t want);  // one round: rank 0 reads what is there, every rank gets it
  bool learn_chunk(const Chunk& chunk, int64_t from);  // false: stopped by a signal
  nlohmann::json position_after(const Chunk& chunk, int64_t samples_seen) const;
  void resume();
  nlohmann::json summary(bool stopped);

  LlamaModel& model_;
  const PromptEncoder& encoder_;
  const AdaptConfig& config_;
  std::string model_path_;
  const ProcessGrid& grid_;
  std::chrono::steady_clock::time_point start_;
  int32_t pad_ = 0;
  std::unique_ptr<MemoryMeter> memory_;
  std::unique_ptr<TrainableSet> trainable_;
  std::unique_ptr<TestTimeLearner> learner_;
  nlohmann::json method_;
  CheckpointIdentity identity_;
  std::string stream_identity_;
  std::unique_ptr<JobCheckpoints> checkpoints_;
  RestoredJob resumed_;
  std::unique_ptr<RunOutputs> outputs_;
  std::unique_ptr<CollapseGuards> guards_;
  std::unique_ptr<RecordFeed> feed_;  // rank 0 only

  // The stream as every rank sees it: its position, the records taken but not yet in a chunk.
  StreamPosition position_;
  std::vector<PromptRecord> pending_;
  bool ended_ = false;
  int64_t records_taken_ = 0;       // for max_samples
  uint64_t stop_offset_ = 0;        // a stopped job's stream position to continue from (bytes)
  int64_t resume_learned_ = 0;      // prompts of the first chunk learned before the resume
  int64_t resume_chunk_size_ = -1;  // that chunk's size as saved (-1: not resuming mid-chunk)
  std::vector<std::vector<int32_t>> resume_answer_ids_;  // its answers' ids (generated-token objectives)
  Counters counters_;
  int64_t samples_seen_ = 0;
  double generate_seconds_ = 0, train_seconds_ = 0;
};

}  // namespace tlm
