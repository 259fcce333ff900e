// A small portable random generator. std:: distributions differ between
// standard libraries; datasets, sample orders and augmentations here must be
// identical on every machine, so they draw from this.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace clipscale {

// SplitMix64 (Steele, Lea, Flood 2014).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Uniform integer in [0, n); the modulo bias is below 2^-40 for n < 2^24.
  int64_t Below(int64_t n) { return static_cast<int64_t>(Next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

// A seed derived from several values (seed, epoch, index, ...), well mixed.
uint64_t MixSeed(uint64_t a, uint64_t b, uint64_t c = 0);

// FNV-1a, 64 bit: a hash of bytes that is the same on every build and machine
// (file names derived from a spec or URL, dataset fingerprints).
uint64_t Fnv1a64(std::string_view bytes);

// A permutation of [0, n) by Fisher–Yates, a pure function of (n, seed).
std::vector<int64_t> Permutation(int64_t n, uint64_t seed);

}  // namespace clipscale
