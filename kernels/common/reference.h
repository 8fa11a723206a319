// Helpers shared by the CPU references of the fused ops.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace seqmix {

// dst += v (v in dst's shape, row-major), summed in fp64 and rounded once into dst's dtype, as the
// CUDA kernels round their fp32 sums once. (ops::add_ would first round v to a 16-bit dst's dtype
// and then round the sum again: up to one more unit in the last place than the kernels.)
void add_rounded_once(const Tensor& dst, const std::vector<double>& v);

}  // namespace seqmix
