// The lines of a stream that is not a finished file: standard input (`--data -`), read until
// it closes, or a file that keeps growing (`--follow FILE`), read as its lines are completed.
// A followed file yields only "\n"-terminated lines, so a writer caught mid-line is waited
// for; standard input's last line may lack its "\n". offset() counts the bytes consumed: a
// resumed job positions a followed file there, and for standard input the producer continues
// the stream from there. Memory holds one read buffer and the line being assembled.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace tlm {

class LineFeed {
 public:
  // `path` "-" is standard input. `start`: bytes of the stream already consumed (a followed
  // file is read from there; throws when it is shorter). `poll_seconds`: how long next()
  // waits for more input before answering "nothing yet".
  LineFeed(std::string path, uint64_t start, double poll_seconds = 0.1);
  ~LineFeed();
  LineFeed(const LineFeed&) = delete;
  LineFeed& operator=(const LineFeed&) = delete;

  // The next line without its "\n" (or "\r\n"); nullopt when none came within the poll
  // interval, or at the end of standard input (then ended() is true). Throws on read errors
  // and when a followed file shrinks below offset() (truncated or replaced).
  std::optional<std::string> next();
  bool ended() const { return ended_; }
  uint64_t offset() const { return offset_; }
  const std::string& path() const { return path_; }
  bool is_stdin() const { return path_ == "-"; }

 private:
  bool fill();  // reads what is available; false when nothing came

  std::string path_;
  int fd_ = -1;
  double poll_seconds_;
  std::string buffer_;  // bytes read but not yet returned as lines
  uint64_t offset_ = 0;
  uint64_t read_end_ = 0;  // bytes read from the source so far (offset_ + buffer_.size())
  bool ended_ = false;
};

}  // namespace tlm
