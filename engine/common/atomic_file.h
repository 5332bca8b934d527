// Writing an output file so that it is either whole or absent: the bytes go to a temporary
// name beside it (`<path>.tmp.<pid>`), are flushed to disk, and are renamed over `path` only
// when every write succeeded. A failure (a full disk, a read-only folder) throws naming the
// file and the system's reason and leaves no temporary behind; an older `path` stays intact.
#pragma once

#include <cstddef>
#include <string>

namespace tlm {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // removes the temporary unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(const std::string& text) { write(text.data(), text.size()); }
  // fsync, close, rename onto the final path.
  void commit();

 private:
  [[noreturn]] void fail(const char* doing);
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// The whole of `text` as the file `path`, atomically.
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace tlm
