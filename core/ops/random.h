// Random tensors from the counter-based Philox generator (core/rng.h): element i of a draw depends
// only on (seed, offset, i), so CPU and GPU give identical values, and a Generator's state is
// two integers that a checkpoint stores.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace seqmix {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves one draw: returns its offset and advances.
  uint64_t next_offset() { return offset_++; }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

namespace ops {
// Fills t (any floating dtype, any device) with U[lo, hi) / N(mean, std) from one draw of gen.
void uniform_(const Tensor& t, double lo, double hi, Generator& gen);
void normal_(const Tensor& t, double mean, double std, Generator& gen);
// Same with an explicit (seed, offset) draw.
void uniform_draw(const Tensor& t, double lo, double hi, uint64_t seed, uint64_t offset);
void normal_draw(const Tensor& t, double mean, double std, uint64_t seed, uint64_t offset);
}  // namespace ops

}  // namespace seqmix
