// Random fills: a draw fills a contiguous buffer, which is copied into non-contiguous views.
#include "core/ops/random.h"

#include "core/ops/common.h"
#include "core/ops/copy.h"
#include "core/ops/random_funcs.h"
#include "core/ops/random_impl.h"

namespace seqmix::ops {

namespace impl {
namespace {
template <typename T>
void fill_t(int kind, T* d, int64_t n, float a, float b, uint64_t seed, uint64_t offset) {
#pragma omp parallel for if (n > (1 << 15)) schedule(static)
  for (int64_t i = 0; i < n; ++i) d[i] = random_value<T>(kind, i, a, b, seed, offset);
}
}  // namespace

void random_fill_cpu(int kind, DType t, void* dst, int64_t n, float a, float b, uint64_t seed,
                     uint64_t offset) {
  SEQMIX_DISPATCH_FLOAT(t, "random", T,
                        fill_t<T>(kind, static_cast<T*>(dst), n, a, b, seed, offset));
}
}  // namespace impl

namespace {
void random_fill(int kind, const Tensor& t, float a, float b, uint64_t seed, uint64_t offset) {
  SEQMIX_CHECK(t.defined(), "random fill of an undefined tensor");
  check_floating("random", "t", t);
  const Tensor dst = t.is_contiguous() ? t : Tensor::empty(t.shape(), t.dtype(), t.device());
  const Device dev = t.device();
  if (dev.is_cpu()) {
    impl::random_fill_cpu(kind, t.dtype(), dst.data_ptr(), dst.numel(), a, b, seed, offset);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    impl::random_fill_cuda(kind, t.dtype(), dst.data_ptr(), dst.numel(), a, b, seed, offset,
                           stream_of(dev));
#endif
  }
  if (!dst.is_same(t)) copy_(t, dst);
  t.bump_version();
}
}  // namespace

void uniform_draw(const Tensor& t, double lo, double hi, uint64_t seed, uint64_t offset) {
  random_fill(0, t, float(lo), float(hi - lo), seed, offset);
}
void normal_draw(const Tensor& t, double mean, double std, uint64_t seed, uint64_t offset) {
  random_fill(1, t, float(mean), float(std), seed, offset);
}
void uniform_(const Tensor& t, double lo, double hi, Generator& gen) {
  uniform_draw(t, lo, hi, gen.seed(), gen.next_offset());
}
void normal_(const Tensor& t, double mean, double std, Generator& gen) {
  normal_draw(t, mean, std, gen.seed(), gen.next_offset());
}

}  // namespace seqmix::ops
