// Deterministic parameter initialisation. Values are drawn on the CPU from the Philox generator
// (core/rng.h) and only then moved, so a model built from one seed is identical on CPU and GPU.
// Each module derives its own seed from the model's init_seed and a stable key (layer index,
// parameter role), so adding a layer or an option never shifts the values of the others.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace seqmix::nn {

// A seed for child `key` of `seed` (splitmix64 of the pair): independent streams per key.
uint64_t derive_seed(uint64_t seed, uint64_t key);

// f32 CPU tensor of `shape` filled with N(0, std^2) from draw (seed, offset 0).
Tensor init_normal(const Shape& shape, double std, uint64_t seed);

}  // namespace seqmix::nn
