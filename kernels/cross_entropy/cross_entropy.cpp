// Cross-entropy: validation, dispatch, autograd node.
#include "kernels/cross_entropy/cross_entropy.h"

#include "autograd/function.h"
#include "core/check.h"
#include "core/ops/common.h"

namespace seqmix {

namespace {
DType stat_dtype(DType logits) {
  return logits == DType::F64 ? DType::F64 : DType::F32;
}

void check_common(const char* op, const Tensor& logits, const Tensor& targets) {
  SEQMIX_CHECK(logits.dim() == 2, "{}: logits must be [N, V], got {}", op, logits.shape_str());
  SEQMIX_CHECK(logits.is_contiguous(), "{}: logits must be contiguous", op);
  SEQMIX_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0),
               "{}: targets must be [{}], got {}", op, logits.size(0), targets.shape_str());
  SEQMIX_CHECK(targets.dtype() == DType::I64 || targets.dtype() == DType::I32,
               "{}: targets must be i64 or i32, got {}", op, dtype_name(targets.dtype()));
  SEQMIX_CHECK(targets.is_contiguous(), "{}: targets must be contiguous", op);
}
}  // namespace

Support cross_entropy_supports(const CrossEntropyFwdArgs& a) {
  if (!is_floating(a.logits.dtype())) return Support::no("logits must be floating");
  if (a.logits.dim() == 2 && a.logits.size(1) == 0)
    return Support::no("the class dimension is empty");
  return Support::yes();
}

void cross_entropy_fwd(const CrossEntropyFwdArgs& a) {
  const Device dev = ops::common_device("cross_entropy", {{"logits", &a.logits},
                                                          {"targets", &a.targets},
                                                          {"lse", &a.lse},
                                                          {"loss", &a.loss},
                                                          {"count", &a.count}});
  const Support s = cross_entropy_supports(a);
  SEQMIX_CHECK_KIND(Unsupported, s.ok, "cross_entropy: {}", s.why);
  check_common("cross_entropy", a.logits, a.targets);
  const DType sd = stat_dtype(a.logits.dtype());
  ops::check_shape("cross_entropy", "lse", a.lse, {a.logits.size(0)});
  ops::check_dtype("cross_entropy", "lse", a.lse, sd);
  ops::check_shape("cross_entropy", "loss", a.loss, {});
  ops::check_dtype("cross_entropy", "loss", a.loss, sd);
  ops::check_shape("cross_entropy", "count", a.count, {});
  ops::check_dtype("cross_entropy", "count", a.count, sd);
  if (dev.is_cpu()) {
    cross_entropy_fwd_ref(a);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    cross_entropy_fwd_cuda(a);
#endif
  }
}

void cross_entropy_bwd(const CrossEntropyBwdArgs& a) {
  const Device dev = ops::common_device("cross_entropy_bwd", {{"logits", &a.logits},
                                                              {"targets", &a.targets},
                                                              {"lse", &a.lse},
                                                              {"count", &a.count},
                                                              {"dloss", &a.dloss},
                                                              {"dlogits", &a.dlogits}});
  check_common("cross_entropy_bwd", a.logits, a.targets);
  ops::check_shape("cross_entropy_bwd", "dlogits", a.dlogits, a.logits.shape());
  ops::check_dtype("cross_entropy_bwd", "dlogits", a.dlogits, a.logits.dtype());
  SEQMIX_CHECK(a.dlogits.is_contiguous(), "cross_entropy_bwd: dlogits must be contiguous");
  const DType sd = stat_dtype(a.logits.dtype());
  ops::check_dtype("cross_entropy_bwd", "lse", a.lse, sd);
  ops::check_dtype("cross_entropy_bwd", "count", a.count, sd);
  ops::check_shape("cross_entropy_bwd", "dloss", a.dloss, {});
  const Tensor dloss = a.dloss.dtype() == sd ? a.dloss : a.dloss.to(sd);
  CrossEntropyBwdArgs b = a;
  b.dloss = dloss;
  if (dev.is_cpu()) {
    cross_entropy_bwd_ref(b);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    cross_entropy_bwd_cuda(b);
#endif
  }
  a.dlogits.bump_version();
}

Variable cross_entropy(const Variable& logits_in, const Tensor& targets_in, int64_t ignore_index,
                       LossReduction reduction) {
  SEQMIX_CHECK(logits_in.dim() >= 1, "cross_entropy: logits must have a class dimension");
  const int64_t v = logits_in.size(-1);
  const Tensor logits = logits_in.data().contiguous().view({-1, v});
  const Tensor targets = targets_in.contiguous().view({-1});
  SEQMIX_CHECK(targets.numel() == logits.size(0), "cross_entropy: {} targets for {} rows of logits",
               targets.numel(), logits.size(0));
  const DType sd = stat_dtype(logits.dtype());
  const Device dev = logits.device();
  CrossEntropyFwdArgs fa;
  fa.logits = logits;
  fa.targets = targets;
  fa.lse = Tensor::empty({logits.size(0)}, sd, dev);
  fa.loss = Tensor::empty({}, sd, dev);
  fa.count = Tensor::empty({}, sd, dev);
  fa.ignore_index = ignore_index;
  fa.reduction = reduction;
  cross_entropy_fwd(fa);
  return record("CrossEntropyBackward", {&logits_in}, fa.loss,
                [fa, shape = logits_in.shape(), sl = SavedTensor(logits, "CrossEntropyBackward")](
                    const Node&, TensorList& g) -> TensorList {
                  CrossEntropyBwdArgs ba;
                  ba.logits = sl.get();
                  ba.targets = fa.targets;
                  ba.lse = fa.lse;
                  ba.count = fa.count;
                  ba.dloss = g[0];
                  ba.dlogits = ba.logits.empty_like();
                  ba.ignore_index = fa.ignore_index;
                  ba.reduction = fa.reduction;
                  cross_entropy_bwd(ba);
                  return {ba.dlogits.view(shape)};
                });
}

}  // namespace seqmix
