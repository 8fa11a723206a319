// CPU reductions (the reference): sequential in fp64 per output element, OpenMP over outputs.
#include "core/dispatch.h"
#include "core/ops/reduce_functors.h"
#include "core/ops/reduce_impl.h"

namespace seqmix::ops::impl {
namespace {

template <ReduceOp OP, typename T>
void reduce_t(const T* x, T* out, int64_t* idx, int64_t outer, int64_t r, int64_t inner) {
  using Red = red::Reducer<OP, double>;
#pragma omp parallel for collapse(2) if (outer * inner * r > (1 << 16)) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      auto st = Red::init();
      const T* base = x + o * r * inner + in;
      for (int64_t k = 0; k < r; ++k)
        Red::push(st, static_cast<double>(to_acc<acc_t<T>>(base[k * inner])), k);
      out[o * inner + in] = from_acc<T>(static_cast<acc_t<T>>(Red::finish(st, r)));
      if constexpr (OP == ReduceOp::Max || OP == ReduceOp::Min) {
        if (idx) idx[o * inner + in] = st.i;
      }
    }
  }
}

}  // namespace

void reduce_cpu(ReduceOp op, DType t, const void* x, void* out, int64_t* idx, int64_t outer,
                int64_t r, int64_t inner) {
  SEQMIX_DISPATCH_FLOAT(t, "reduce", T, {
    SEQMIX_DISPATCH_REDUCE_OP(
        op, reduce_t<OP, T>(static_cast<const T*>(x), static_cast<T*>(out), idx, outer, r, inner));
  });
}

}  // namespace seqmix::ops::impl
