#include "engine/serve/request_channel.h"

namespace tlm {

void RequestChannel::push(int32_t token) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back(token);
  }
  ready_.notify_one();
}

void RequestChannel::finish(bool stopped, const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    stopped_ = stopped;
    error_ = error;
  }
  ready_.notify_one();
}

RequestChannel::Update RequestChannel::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  ready_.wait_for(lock, timeout, [&] { return done_ || !pending_.empty(); });
  Update u;
  u.tokens.swap(pending_);
  u.done = done_;
  u.stopped = stopped_;
  u.error = error_;
  return u;
}

}  // namespace tlm
