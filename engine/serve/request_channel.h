// The hand-over between the engine thread that generates a request's tokens and the HTTP
// thread that answers it: tokens arrive one by one, then the end (or an error); the HTTP side
// may cancel (a stop sequence matched, the client went away) and the engine drops the row at
// its next step. Thread-safe; one producer, one consumer.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace tlm {

class RequestChannel {
 public:
  struct Update {
    std::vector<int32_t> tokens;  // new since the last wait()
    bool done = false;
    bool stopped = false;         // a stop token ended it (else max_tokens, a cancel or an error)
    std::string error;            // non-empty: the engine failed this request
  };

  // Engine side.
  void push(int32_t token);
  void finish(bool stopped, const std::string& error = "");

  // HTTP side: blocks until there is something new or `timeout` passes.
  Update wait(std::chrono::milliseconds timeout);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<int32_t> pending_;
  bool done_ = false, stopped_ = false;
  std::string error_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace tlm
