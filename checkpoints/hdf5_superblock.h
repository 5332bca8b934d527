// The superblock checksum of an HDF5 file image. HDF5 1.10's H5Fget_file_image marks the
// copied superblock "closed" (its status flags cleared) but keeps the checksum of the open
// one, so the image does not open ("incorrect metadata checksum"); the checkpoint writer
// recomputes it here. Versions 2 and 3 of the superblock carry a checksum (Jenkins' lookup3,
// as HDF5's H5_checksum_metadata computes it); older ones have none and are left alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tlm {

// Bob Jenkins' lookup3 hashlittle over bytes, HDF5's metadata checksum.
uint32_t hdf5_metadata_checksum(const uint8_t* data, size_t length, uint32_t initval = 0);

// Rewrites the checksum of the superblock at the start of `image` when it does not match its
// bytes; returns whether it did. Throws when the image does not start with an HDF5 signature.
bool fix_superblock_checksum(std::vector<char>& image);

}  // namespace tlm
