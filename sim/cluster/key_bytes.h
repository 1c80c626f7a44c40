// Key bytes: the content of a key's object as a function of the key alone, so every writer of a
// key writes the same bytes and any reader can check what it got (the VOPR's invariant 1, the
// throughput benchmark's --verify).
//
//   sim::FillKeyBytes("c3p7_0_k", buf, 4096);
//   int64_t bad = sim::VerifyKeyBytes("c3p7_0_k", buf, 4096);  // -1: all right
#ifndef SIM_CLUSTER_KEY_BYTES_H_
#define SIM_CLUSTER_KEY_BYTES_H_

#include <cstdint>
#include <cstring>
#include <string>

#include "sim/kernel/simulator.h"

namespace sim {
namespace key_bytes_internal {

inline uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Word i is the key's hash xor a multiple of i: another key's bytes, zeros, or a shifted copy all
// differ.
inline uint64_t Word(uint64_t seed, uint64_t i) { return seed ^ (i * 0x9e3779b97f4a7c15ULL); }

}  // namespace key_bytes_internal

inline void FillKeyBytes(const std::string& key, char* dst, uint64_t size) {
  const uint64_t seed = key_bytes_internal::Mix(Simulator::HashLabel(key));
  for (uint64_t i = 0; i < size / 8; ++i) {
    const uint64_t w = key_bytes_internal::Word(seed, i);
    std::memcpy(dst + i * 8, &w, 8);
  }
}

// Returns the first differing byte offset, or -1 if `src` holds the key's bytes.
inline int64_t VerifyKeyBytes(const std::string& key, const char* src, uint64_t size) {
  const uint64_t seed = key_bytes_internal::Mix(Simulator::HashLabel(key));
  for (uint64_t i = 0; i < size / 8; ++i) {
    const uint64_t w = key_bytes_internal::Word(seed, i);
    if (std::memcmp(src + i * 8, &w, 8) != 0) return static_cast<int64_t>(i * 8);
  }
  return -1;
}

}  // namespace sim

#endif  // SIM_CLUSTER_KEY_BYTES_H_
