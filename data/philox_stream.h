// A sequential reader of one Philox-4x32-10 stream of core/rng.h: key = `key`, counter =
// (block, `offset`). Words are consumed in order (lane 0..3 of block 0, then block 1, ...), so a
// stream is a pure function of (key, offset): the data order of epoch e is the stream
// (seed, e), MQAR example i is the stream (seed ^ tag, i). Integers in [0, n) are exact (Lemire's
// multiply-shift with rejection), doubles use 53 random bits. Host code only.
#pragma once
#include <cstdint>
#include <unordered_set>
#include <utility>

#include "core/rng.h"

namespace seqmix::data {

class PhiloxStream {
 public:
  PhiloxStream(uint64_t key, uint64_t offset) : key_(key), offset_(offset) {}

  uint32_t next_u32() {
    if (lane_ == 4) {
      buf_ = rng::block_u32(key_, offset_, block_++);
      lane_ = 0;
    }
    return rng::lane(buf_, lane_++);
  }
  uint64_t next_u64() {
    const uint64_t hi = next_u32();
    return (hi << 32) | next_u32();
  }
  // Uniform in [0, 1) with 53 random bits.
  double next_double() { return double(next_u64() >> 11) * 0x1.0p-53; }
  // Uniform in (0, 1] with 53 random bits (safe to take the log of).
  double next_double_open0() { return double((next_u64() >> 11) + 1) * 0x1.0p-53; }
  // Uniform integer in [0, n), n >= 1, exactly (no modulo bias).
  uint64_t below(uint64_t n) {
    uint64_t x = next_u64();
    unsigned __int128 m = (unsigned __int128)x * n;
    uint64_t lo = uint64_t(m);
    if (lo < n) {
      const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
      while (lo < threshold) {
        x = next_u64();
        m = (unsigned __int128)x * n;
        lo = uint64_t(m);
      }
    }
    return uint64_t(m >> 64);
  }

 private:
  uint64_t key_, offset_;
  uint64_t block_ = 0;
  rng::U32x4 buf_{};
  int lane_ = 4;
};

// `n` distinct integers uniform from [lo, lo + range), in uniformly random order: Floyd's
// algorithm picks the set in O(n) draws, a Fisher-Yates pass randomises the order.
inline void sample_distinct(PhiloxStream& s, int64_t lo, int64_t range, int64_t n, int64_t* out) {
  std::unordered_set<int64_t> chosen;
  chosen.reserve(size_t(n) * 2);
  int64_t k = 0;
  for (int64_t j = range - n; j < range; ++j) {
    const int64_t t = int64_t(s.below(uint64_t(j) + 1));
    const int64_t pick = chosen.count(t) ? j : t;
    chosen.insert(pick);
    out[k++] = pick;
  }
  for (int64_t i = n - 1; i > 0; --i) std::swap(out[i], out[int64_t(s.below(uint64_t(i) + 1))]);
  for (int64_t i = 0; i < n; ++i) out[i] += lo;
}

}  // namespace seqmix::data
