// Rng: a small, fast, seeded random generator (xoshiro256**), identical on every platform and
// build, so a simulation seed replays exactly. Not for cryptography.
//
//   Rng rng(42);
//   uint64_t slice = rng.Uniform(8);       // 0..7
//   if (rng.Bernoulli(0.01)) DropPacket();
//   Rng child = rng.Fork();                // independent stream, still determined by the seed
#ifndef MOONCAKE_COMMON_RNG_H_
#define MOONCAKE_COMMON_RNG_H_

#include <cstdint>
#include <limits>

namespace mooncake {

class Rng {
 public:
  using result_type = uint64_t;

  explicit Rng(uint64_t seed) { Seed(seed); }

  // Seed resets the generator; the same seed always gives the same sequence.
  void Seed(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& word : s_) word = SplitMix64(x);
  }

  // Next64 returns 64 uniformly random bits.
  uint64_t Next64() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform returns a uniformly distributed value in [0, n); n == 0 returns 0. Unbiased (Lemire).
  uint64_t Uniform(uint64_t n) {
    if (n == 0) return 0;
    unsigned __int128 m = static_cast<unsigned __int128>(Next64()) * n;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < n) {
      const uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(Next64()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }

  // UniformRange returns a value in [lo, hi] (inclusive); requires lo <= hi.
  int64_t UniformRange(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Uniform(static_cast<uint64_t>(hi - lo) + 1));
  }

  // UniformDouble returns a value in [0, 1) with 53 random bits.
  double UniformDouble() { return static_cast<double>(Next64() >> 11) * 0x1.0p-53; }

  // Bernoulli returns true with probability p.
  bool Bernoulli(double p) { return UniformDouble() < p; }

  // Fork returns a new generator whose stream is determined by this one's state.
  Rng Fork() { return Rng(Next64()); }

  // UniformRandomBitGenerator interface, for <algorithm> (e.g. std::shuffle).
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<uint64_t>::max(); }
  result_type operator()() { return Next64(); }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t SplitMix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  uint64_t s_[4];
};

}  // namespace mooncake

#endif  // MOONCAKE_COMMON_RNG_H_
