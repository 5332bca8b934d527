#include "checkpoints/hdf5_superblock.h"

#include <cstring>

#include "engine/common/error.h"

namespace tlm {
namespace {

inline uint32_t rot(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }
inline uint32_t word(const uint8_t* k) {
  return k[0] | (uint32_t(k[1]) << 8) | (uint32_t(k[2]) << 16) | (uint32_t(k[3]) << 24);
}

}  // namespace

uint32_t hdf5_metadata_checksum(const uint8_t* k, size_t length, uint32_t initval) {
  uint32_t a = 0xdeadbeef + static_cast<uint32_t>(length) + initval, b = a, c = a;
  while (length > 12) {
    a += word(k);
    b += word(k + 4);
    c += word(k + 8);
    a -= c; a ^= rot(c, 4);  c += b;
    b -= a; b ^= rot(a, 6);  a += c;
    c -= b; c ^= rot(b, 8);  b += a;
    a -= c; a ^= rot(c, 16); c += b;
    b -= a; b ^= rot(a, 19); a += c;
    c -= b; c ^= rot(b, 4);  b += a;
    length -= 12;
    k += 12;
  }
  switch (length) {  // the last 1..12 bytes, byte by byte
    case 12: c += uint32_t(k[11]) << 24; [[fallthrough]];
    case 11: c += uint32_t(k[10]) << 16; [[fallthrough]];
    case 10: c += uint32_t(k[9]) << 8; [[fallthrough]];
    case 9: c += k[8]; [[fallthrough]];
    case 8: b += uint32_t(k[7]) << 24; [[fallthrough]];
    case 7: b += uint32_t(k[6]) << 16; [[fallthrough]];
    case 6: b += uint32_t(k[5]) << 8; [[fallthrough]];
    case 5: b += k[4]; [[fallthrough]];
    case 4: a += uint32_t(k[3]) << 24; [[fallthrough]];
    case 3: a += uint32_t(k[2]) << 16; [[fallthrough]];
    case 2: a += uint32_t(k[1]) << 8; [[fallthrough]];
    case 1: a += k[0]; break;
    case 0: return c;
  }
  c ^= b; c -= rot(b, 14);
  a ^= c; a -= rot(c, 11);
  b ^= a; b -= rot(a, 25);
  c ^= b; c -= rot(b, 16);
  a ^= c; a -= rot(c, 4);
  b ^= a; b -= rot(a, 14);
  c ^= b; c -= rot(b, 24);
  return c;
}

bool fix_superblock_checksum(std::vector<char>& image) {
  static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  TLM_CHECK(image.size() >= 12 && std::memcmp(image.data(), kSignature, 8) == 0,
            "HDF5 file image: no superblock signature at byte 0");
  const auto* bytes = reinterpret_cast<const uint8_t*>(image.data());
  if (bytes[8] < 2) return false;  // versions 0 and 1: no checksum
  // signature, version, size of offsets, size of lengths, flags; 4 addresses; the checksum.
  const size_t body = 12 + 4 * static_cast<size_t>(bytes[9]);
  TLM_CHECK(image.size() >= body + 4, "HDF5 file image: superblock cut short");
  const uint32_t want = hdf5_metadata_checksum(bytes, body);
  const uint8_t le[4] = {uint8_t(want), uint8_t(want >> 8), uint8_t(want >> 16), uint8_t(want >> 24)};
  if (std::memcmp(bytes + body, le, 4) == 0) return false;
  std::memcpy(image.data() + body, le, 4);
  return true;
}

}  // namespace tlm
