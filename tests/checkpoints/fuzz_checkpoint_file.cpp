// libFuzzer target: the HDF5 checkpoint loader on files written from arbitrary bytes (a
// damaged or foreign step-N.h5): the reader must report, never crash. Only tlm::Error may
// escape. The seeds are small real checkpoints, so mutations land
// in HDF5's structures, the datasets, their checksums and attributes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "checkpoints/adapter_checkpoint.h"
#include "engine/common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("tlm-fuzz-ckpt-" + std::to_string(::getpid()) + ".h5")).string();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    // In process (verify() would read it in a child, where the coverage is lost).
    (void)tlm::AdapterCheckpoint::verify_in_process(path);
  } catch (const tlm::Error&) {
  }
  return 0;
}
