// A read-only memory map of a whole file. Weights are never copied into process memory
// by the loaders: tensors are dequantised or sliced straight out of the mapping, so a
// rank that needs 1/tp of a tensor only touches (and pages in) that part.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tlm {

class MappedFile {
 public:
  // Throws tlm::Error naming the path when the file cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tlm
