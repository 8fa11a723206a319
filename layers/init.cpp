// Deterministic parameter initialisation from the Philox generator.
#include "layers/init.h"

#include "core/ops/random.h"

namespace seqmix::nn {

uint64_t derive_seed(uint64_t seed, uint64_t key) {
  // splitmix64 over a mix of both words: cheap, well distributed, platform independent.
  uint64_t z = seed ^ (key * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Tensor init_normal(const Shape& shape, double std, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::F32, Device::cpu());
  ops::normal_draw(t, 0.0, std, seed, 0);
  return t;
}

}  // namespace seqmix::nn
