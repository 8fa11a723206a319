// Dropout: validation, CPU implementation, dispatch, autograd node.
#include "kernels/dropout/dropout.h"

#include "autograd/function.h"
#include "autograd/functions.h"
#include "core/check.h"
#include "core/dispatch.h"
#include "core/ops/common.h"
#include "kernels/dropout/dropout_funcs.h"

namespace seqmix {

namespace {
template <typename T>
void apply_t(const T* in, T* out, int64_t n, float p, uint64_t seed, uint64_t offset) {
  using A = acc_t<T>;
  const A scale = A(1) / (A(1) - A(p));
#pragma omp parallel for if (n > (1 << 15)) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    out[i] = from_acc<T>(dropout_detail::apply(to_acc<A>(in[i]), i, p, scale, seed, offset));
}
}  // namespace

void dropout_apply_ref(const DropoutArgs& a) {
  SEQMIX_DISPATCH_FLOAT(
      a.in.dtype(), "dropout", T,
      apply_t<T>(a.in.data<T>(), a.out.data<T>(), a.in.numel(), float(a.p), a.seed, a.offset));
}

void dropout_apply(const DropoutArgs& a) {
  const Device dev = ops::common_device("dropout", {{"in", &a.in}, {"out", &a.out}});
  ops::check_floating("dropout", "in", a.in);
  ops::check_shape("dropout", "out", a.out, a.in.shape());
  ops::check_dtype("dropout", "out", a.out, a.in.dtype());
  SEQMIX_CHECK(a.in.is_contiguous() && a.out.is_contiguous(),
               "dropout: in and out must be contiguous");
  SEQMIX_CHECK(a.p >= 0.0 && a.p < 1.0, "dropout: p must be in [0, 1), got {}", a.p);
  if (dev.is_cpu()) {
    dropout_apply_ref(a);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    dropout_apply_cuda(a);
#endif
  }
  a.out.bump_version();
}

Variable dropout(const Variable& x, double p, Generator& gen, bool training) {
  SEQMIX_CHECK(p >= 0.0 && p <= 1.0, "dropout: p must be in [0, 1], got {}", p);
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);
  DropoutArgs fa;
  fa.in = x.data().contiguous();
  fa.out = fa.in.empty_like();
  fa.p = p;
  fa.seed = gen.seed();
  fa.offset = gen.next_offset();
  dropout_apply(fa);
  return record("DropoutBackward", {&x}, fa.out,
                [p, seed = fa.seed, offset = fa.offset, shape = x.shape()](
                    const Node&, TensorList& g) -> TensorList {
                  DropoutArgs ba;
                  ba.in = g[0].contiguous();
                  ba.out = ba.in.empty_like();
                  ba.p = p;
                  ba.seed = seed;
                  ba.offset = offset;
                  dropout_apply(ba);
                  return {ba.out.view(shape)};
                });
}

}  // namespace seqmix
