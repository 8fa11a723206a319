// Embedding: validation, dispatch, autograd node.
#include "kernels/embedding/embedding.h"

#include "autograd/function.h"
#include "core/check.h"
#include "core/ops/common.h"

namespace seqmix {

namespace {
void check_indices(const char* op, const Tensor& idx, int64_t n) {
  SEQMIX_CHECK(idx.dtype() == DType::I64 || idx.dtype() == DType::I32,
               "{}: indices must be i64 or i32, got {}", op, dtype_name(idx.dtype()));
  SEQMIX_CHECK(idx.dim() == 1 && idx.size(0) == n && idx.is_contiguous(),
               "{}: indices must be a contiguous [{}] tensor, got {}", op, n, idx.shape_str());
}
}  // namespace

Support embedding_supports(const EmbeddingFwdArgs& a) {
  if (!is_floating(a.weight.dtype())) return Support::no("weight must be floating");
  if (a.weight.dim() != 2) return Support::no("weight must be [V, C]");
  if (a.weight.size(0) >= (int64_t(1) << 31)) return Support::no("more than 2^31 rows");
  return Support::yes();
}

void embedding_fwd(const EmbeddingFwdArgs& a) {
  const Device dev = ops::common_device(
      "embedding", {{"weight", &a.weight}, {"indices", &a.indices}, {"out", &a.out}});
  const Support s = embedding_supports(a);
  SEQMIX_CHECK_KIND(Unsupported, s.ok, "embedding: {}", s.why);
  SEQMIX_CHECK(a.weight.is_contiguous(), "embedding: weight must be contiguous");
  SEQMIX_CHECK(a.out.dim() == 2 && a.out.size(1) == a.weight.size(1) && a.out.is_contiguous(),
               "embedding: out must be a contiguous [N, {}] tensor, got {}", a.weight.size(1),
               a.out.shape_str());
  ops::check_floating("embedding", "out", a.out);
  check_indices("embedding", a.indices, a.out.size(0));
  if (dev.is_cpu()) {
    embedding_fwd_ref(a);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    embedding_fwd_cuda(a);
#endif
  }
  a.out.bump_version();
}

void embedding_bwd(const EmbeddingBwdArgs& a) {
  const Device dev = ops::common_device(
      "embedding_bwd", {{"indices", &a.indices}, {"dout", &a.dout}, {"dweight", &a.dweight}});
  SEQMIX_CHECK(a.dweight.dim() == 2 && a.dweight.is_contiguous(),
               "embedding_bwd: dweight must be a contiguous [V, C] tensor");
  SEQMIX_CHECK(a.dout.dim() == 2 && a.dout.size(1) == a.dweight.size(1) && a.dout.is_contiguous(),
               "embedding_bwd: dout must be a contiguous [N, {}] tensor, got {}", a.dweight.size(1),
               a.dout.shape_str());
  ops::check_floating("embedding_bwd", "dout", a.dout);
  ops::check_floating("embedding_bwd", "dweight", a.dweight);
  check_indices("embedding_bwd", a.indices, a.dout.size(0));
  if (dev.is_cpu()) {
    embedding_bwd_ref(a);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    embedding_bwd_cuda(a);
#endif
  }
  a.dweight.bump_version();
}

Variable embedding(const Variable& weight, const Tensor& indices, std::optional<DType> out_dtype) {
  const Tensor idx = indices.contiguous().view({-1});
  const int64_t c = weight.size(1);
  EmbeddingFwdArgs fa;
  fa.weight = weight.data();
  fa.indices = idx;
  fa.out = Tensor::empty({idx.numel(), c}, out_dtype.value_or(weight.dtype()), weight.device());
  embedding_fwd(fa);
  Shape shape = indices.shape();
  shape.push_back(c);
  return record("EmbeddingBackward", {&weight}, fa.out.view(shape),
                [idx, wshape = weight.shape(), wdtype = weight.dtype(), c](
                    const Node&, TensorList& g) -> TensorList {
                  EmbeddingBwdArgs ba;
                  ba.indices = idx;
                  ba.dout = g[0].contiguous().view({-1, c});
                  ba.dweight = Tensor::zeros(wshape, wdtype, idx.device());
                  embedding_bwd(ba);
                  return {ba.dweight};
                });
}

}  // namespace seqmix
