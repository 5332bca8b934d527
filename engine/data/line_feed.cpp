#include "engine/data/line_feed.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "engine/common/error.h"

namespace tlm {

LineFeed::LineFeed(std::string path, uint64_t start, double poll_seconds)
    : path_(std::move(path)), poll_seconds_(poll_seconds), offset_(start), read_end_(start) {
  if (is_stdin()) {
    fd_ = STDIN_FILENO;
    return;
  }
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  TLM_CHECK(fd_ >= 0, path_, ": cannot open the followed prompt file: ", std::strerror(errno));
  struct stat st {};
  TLM_CHECK(::fstat(fd_, &st) == 0, path_, ": fstat failed: ", std::strerror(errno));
  TLM_CHECK(S_ISREG(st.st_mode), path_, ": --follow needs a regular file");
  TLM_CHECK(static_cast<uint64_t>(st.st_size) >= start, path_, ": has ", st.st_size,
            " bytes but the stream position to continue from is byte ", start, " (truncated or replaced?)");
  TLM_CHECK(::lseek(fd_, static_cast<off_t>(start), SEEK_SET) == static_cast<off_t>(start), path_,
            ": cannot seek to byte ", start, ": ", std::strerror(errno));
}

LineFeed::~LineFeed() {
  if (fd_ >= 0 && !is_stdin()) ::close(fd_);
}

bool LineFeed::fill() {
  const int wait_ms = static_cast<int>(poll_seconds_ * 1000.0);
  if (is_stdin()) {
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, wait_ms);
    if (ready < 0 && errno == EINTR) return false;  // a signal: let the caller look at it
    TLM_CHECK(ready >= 0, "standard input: poll failed: ", std::strerror(errno));
    if (ready == 0) return false;
  }
  char chunk[1 << 16];
  const ssize_t got = ::read(fd_, chunk, sizeof(chunk));
  if (got < 0 && errno == EINTR) return false;
  TLM_CHECK(got >= 0, path_, ": read error at byte ", read_end_, ": ", std::strerror(errno));
  if (got == 0) {
    if (is_stdin()) {
      ended_ = true;
      return false;
    }
    struct stat st {};
    TLM_CHECK(::fstat(fd_, &st) == 0, path_, ": fstat failed: ", std::strerror(errno));
    TLM_CHECK(static_cast<uint64_t>(st.st_size) >= read_end_, path_, ": shrank to ", st.st_size,
              " bytes while followed (read up to byte ", read_end_, "): truncated or replaced");
    std::this_thread::sleep_for(std::chrono::duration<double>(poll_seconds_));
    return false;
  }
  buffer_.append(chunk, static_cast<size_t>(got));
  read_end_ += static_cast<uint64_t>(got);
  return true;
}

std::optional<std::string> LineFeed::next() {
  for (;;) {
    const size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      offset_ += nl + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (ended_) {
      if (buffer_.empty()) return std::nullopt;
      std::string line;
      line.swap(buffer_);  // standard input's last line, without its "\n"
      offset_ += line.size();
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (!fill() && !ended_) return std::nullopt;
  }
}

}  // namespace tlm
