// checkpoints/hdf5_superblock: HDF5's metadata checksum (Jenkins' lookup3) on the reference
// vectors of lookup3.c, and the superblock fix on an image whose checksum went stale.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "checkpoints/hdf5_superblock.h"
#include "engine/common/error.h"

namespace tlm {
namespace {

TEST(Hdf5Superblock, ChecksumMatchesLookup3ReferenceVectors) {
  const std::string s = "Four score and seven years ago";
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  EXPECT_EQ(hdf5_metadata_checksum(p, s.size(), 0), 0x17770551u);
  EXPECT_EQ(hdf5_metadata_checksum(p, s.size(), 1), 0xcd628161u);
  EXPECT_EQ(hdf5_metadata_checksum(p, 0, 0), 0xdeadbeefu);
}

TEST(Hdf5Superblock, StaleChecksumIsRewrittenAndAGoodOneKept) {
  // A version-2 superblock with 8-byte offsets: 12 + 4 * 8 bytes, then the checksum.
  std::vector<char> image(48 + 16, '\0');
  const char sig[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::memcpy(image.data(), sig, 8);
  image[8] = 2;
  image[9] = 8;
  image[10] = 8;
  for (int i = 12; i < 44; ++i) image[static_cast<size_t>(i)] = static_cast<char>(i * 7);
  EXPECT_TRUE(fix_superblock_checksum(image));
  uint32_t stored = 0;
  std::memcpy(&stored, image.data() + 44, 4);
  EXPECT_EQ(stored, hdf5_metadata_checksum(reinterpret_cast<const uint8_t*>(image.data()), 44));
  EXPECT_FALSE(fix_superblock_checksum(image));  // already right: untouched
  image[8] = 0;                                   // version 0: no checksum to fix
  EXPECT_FALSE(fix_superblock_checksum(image));
  std::vector<char> not_hdf5(64, 'x');
  EXPECT_THROW(fix_superblock_checksum(not_hdf5), Error);
}

}  // namespace
}  // namespace tlm
