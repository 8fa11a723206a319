// GradClipper: validation, chunk table, CPU reduction (fp64, OpenMP over chunks) and dispatch to
// the CUDA launchers in optim_cuda.cu.
#include "train/optim/grad_norm.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/ops/common.h"
#include "train/optim/optim_kernels.h"

namespace seqmix {

using optim_detail::kOptimChunk;
using optim_detail::NormChunk;

namespace {
// Fixed pairwise tree over v[0..n) (the same shape for a given n, whatever the thread count).
double tree_sum(const double* v, int64_t n) {
  if (n <= 8) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += v[i];
    return s;
  }
  const int64_t h = n / 2;
  return tree_sum(v, h) + tree_sum(v + h, n - h);
}

void finalize(double sumsq, double max_norm, float* norm, float* scale, int32_t* nonfinite) {
  const double nrm = std::sqrt(sumsq);
  *norm = float(nrm);
  *nonfinite = std::isfinite(sumsq) ? 0 : 1;
  *scale = max_norm > 0 ? float(std::min(1.0, max_norm / (nrm + 1e-6))) : 1.0f;
}
}  // namespace

GradClipper::GradClipper(std::vector<Tensor> grads, double max_norm)
    : grads_(std::move(grads)), max_norm_(max_norm) {
  SEQMIX_CHECK(!grads_.empty(), "GradClipper: the gradient list is empty");
  SEQMIX_CHECK(std::isfinite(max_norm), "GradClipper: max_norm must be finite, got {}", max_norm);
  for (size_t i = 0; i < grads_.size(); ++i) {
    const Tensor& g = grads_[i];
    SEQMIX_CHECK(g.defined(), "GradClipper: gradient {} is undefined", i);
    SEQMIX_CHECK(g.dtype() == DType::F32, "GradClipper: gradient {} must be f32, got {}", i,
                 g.str());
    SEQMIX_CHECK(g.is_contiguous(), "GradClipper: gradient {} ({}) must be contiguous", i, g.str());
    SEQMIX_CHECK(g.device() == grads_[0].device(),
                 "GradClipper: gradient {} is on {} but gradient 0 is on {}", i, g.device().str(),
                 grads_[0].device().str());
  }
  device_ = grads_[0].device();
  std::vector<NormChunk> chunks;
  for (const Tensor& g : grads_) {
    numel_ += g.numel();
    const float* base = g.numel() ? g.data<float>() : nullptr;
    for (int64_t off = 0; off < g.numel(); off += kOptimChunk)
      chunks.push_back({base + off, std::min(kOptimChunk, g.numel() - off)});
  }
  nchunks_ = int64_t(chunks.size());
  const int64_t table_bytes = nchunks_ * int64_t(sizeof(NormChunk));
  table_ = Tensor::from_host(chunks.data(), DType::U8, {table_bytes}, DType::U8, device_);
  partials_ = Tensor::zeros({std::max<int64_t>(nchunks_, 1)}, DType::F64, device_);
  norm_ = Tensor::zeros({}, DType::F32, device_);
  scale_ = Tensor::ones({}, DType::F32, device_);
  nonfinite_ = Tensor::zeros({}, DType::I32, device_);
}

void GradClipper::compute() {
  if (device_.is_cpu()) {
    const auto* chunks = static_cast<const NormChunk*>(table_.data_ptr());
    double* part = partials_.data<double>();
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks_; ++c) {
      double s = 0;
      for (int64_t i = 0; i < chunks[c].n; ++i) {
        const double x = chunks[c].g[i];
        s += x * x;
      }
      part[c] = s;
    }
    finalize(tree_sum(part, nchunks_), max_norm_, norm_.data<float>(), scale_.data<float>(),
             nonfinite_.data<int32_t>());
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard guard(device_.index);
    cudaStream_t stream = ops::stream_of(device_);
    if (nchunks_ > 0)
      optim_detail::grad_norm_partials_cuda(static_cast<const NormChunk*>(table_.data_ptr()),
                                            nchunks_, partials_.data<double>(), stream);
    optim_detail::grad_norm_finalize_cuda(partials_.data<double>(), nchunks_, max_norm_,
                                          norm_.data<float>(), scale_.data<float>(),
                                          nonfinite_.data<int32_t>(), stream);
#else
    SEQMIX_THROW(Unsupported, "GradClipper: seqmix was built without CUDA");
#endif
  }
  norm_.bump_version();
  scale_.bump_version();
  nonfinite_.bump_version();
}

double GradClipper::read_norm() const {
  return norm_.item();
}
double GradClipper::read_scale() const {
  return scale_.item();
}
bool GradClipper::read_nonfinite() const {
  return nonfinite_.item() != 0;
}

}  // namespace seqmix
