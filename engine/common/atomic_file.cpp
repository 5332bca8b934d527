#include "engine/common/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/common/error.h"

namespace tlm {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = str_cat(path_, ".tmp.", ::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) TLM_FAIL(path_, ": cannot create ", tmp_, " to write it: ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) std::remove(tmp_.c_str());
}

void AtomicFile::fail(const char* doing) {
  const int err = errno;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  std::remove(tmp_.c_str());
  TLM_FAIL(path_, ": ", doing, " failed: ", std::strerror(err), " (nothing written; an older file stays as it was)");
}

void AtomicFile::write(const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("writing");
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) fail("flushing to disk");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("closing");
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("renaming into place");
  committed_ = true;
}

void write_file_atomically(const std::string& path, const std::string& text) {
  AtomicFile f(path);
  f.write(text);
  f.commit();
}

}  // namespace tlm
