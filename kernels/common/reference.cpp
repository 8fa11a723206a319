#include "kernels/common/reference.h"

#include "core/check.h"
#include "core/ops/elementwise.h"

namespace seqmix {

void add_rounded_once(const Tensor& dst, const std::vector<double>& v) {
  SEQMIX_CHECK(int64_t(v.size()) == dst.numel(), "add_rounded_once: {} values for a tensor of {}",
               v.size(), dst.shape_str());
  dst.copy_(ops::add(dst.to(DType::F64), Tensor::from_vector(v, dst.shape())));
}

}  // namespace seqmix
