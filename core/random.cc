#include "core/random.h"

#include <numeric>
#include <utility>

namespace clipscale {

uint64_t MixSeed(uint64_t a, uint64_t b, uint64_t c) {
  SplitMix64 rng(a * 0x100000001b3ULL ^ (b + 0x632be59bd9b4e019ULL) * 0x9e3779b97f4a7c15ULL ^ c);
  rng.Next();
  return rng.Next();
}

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

std::vector<int64_t> Permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  SplitMix64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.Below(i + 1)]);
  return order;
}

}  // namespace clipscale
