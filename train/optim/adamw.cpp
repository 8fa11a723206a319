// AdamW: validation, state, chunk table, CPU update (OpenMP over chunks) and dispatch to the
// CUDA launcher (optim_cuda.cu). The per-element math is optim_detail::adamw_element.
#include "train/optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/ops/common.h"
#include "train/optim/grad_norm.h"
#include "train/optim/optim_kernels.h"

namespace seqmix {

using optim_detail::AdamWChunk;
using optim_detail::AdamWScalars;
using optim_detail::kOptimChunk;

namespace {
bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}
}  // namespace

AdamW::AdamW(std::vector<ParamRef> params, AdamWConfig cfg)
    : params_(std::move(params)), cfg_(cfg) {
  SEQMIX_CHECK(!params_.empty(), "AdamW: the parameter list is empty");
  SEQMIX_CHECK(cfg_.beta1 >= 0 && cfg_.beta1 < 1, "AdamW: beta1 must be in [0, 1), got {}",
               cfg_.beta1);
  SEQMIX_CHECK(cfg_.beta2 >= 0 && cfg_.beta2 < 1, "AdamW: beta2 must be in [0, 1), got {}",
               cfg_.beta2);
  SEQMIX_CHECK(cfg_.eps > 0 && std::isfinite(cfg_.eps), "AdamW: eps must be > 0, got {}", cfg_.eps);
  SEQMIX_CHECK(cfg_.weight_decay >= 0 && std::isfinite(cfg_.weight_decay),
               "AdamW: weight_decay must be >= 0, got {}", cfg_.weight_decay);
  std::set<std::string> names;
  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamRef& r = params_[i];
    SEQMIX_CHECK(!r.name.empty(), "AdamW: parameter {} has an empty name", i);
    SEQMIX_CHECK(names.insert(r.name).second, "AdamW: duplicate parameter name '{}'", r.name);
    SEQMIX_CHECK(r.param.defined() && r.grad.defined(),
                 "AdamW: parameter '{}' needs both param and grad tensors", r.name);
    SEQMIX_CHECK(r.param.dtype() == DType::F32 && r.grad.dtype() == DType::F32,
                 "AdamW: parameter '{}' must have f32 param and grad, got {} and {}", r.name,
                 r.param.str(), r.grad.str());
    SEQMIX_CHECK(r.param.is_contiguous() && r.grad.is_contiguous(),
                 "AdamW: parameter '{}': param and grad must be contiguous", r.name);
    SEQMIX_CHECK(r.param.shape() == r.grad.shape(),
                 "AdamW: parameter '{}': grad shape {} differs from param shape {}", r.name,
                 r.grad.shape_str(), r.param.shape_str());
    SEQMIX_CHECK(r.param.device() == params_[0].param.device() &&
                     r.grad.device() == params_[0].param.device(),
                 "AdamW: parameter '{}' (param on {}, grad on {}) is not on {} like '{}'", r.name,
                 r.param.device().str(), r.grad.device().str(), params_[0].param.device().str(),
                 params_[0].name);
  }
  device_ = params_[0].param.device();
  std::vector<AdamWChunk> chunks;
  for (const ParamRef& r : params_) {
    m_.push_back(Tensor::zeros(r.param.shape(), DType::F32, device_));
    v_.push_back(Tensor::zeros(r.param.shape(), DType::F32, device_));
    const int64_t n = r.param.numel();
    if (n == 0) continue;
    float* p = r.param.data<float>();
    const float* g = r.grad.data<float>();
    float* m = m_.back().data<float>();
    float* v = v_.back().data<float>();
    for (int64_t off = 0; off < n; off += kOptimChunk) {
      AdamWChunk c{p + off,         g + off, m + off, v + off, std::min(kOptimChunk, n - off),
                   r.decay ? 1 : 0, 0};
      c.vec = aligned16(c.p) && aligned16(c.g) && aligned16(c.m) && aligned16(c.v) ? 1 : 0;
      chunks.push_back(c);
    }
  }
  nchunks_ = int64_t(chunks.size());
  table_ = Tensor::from_host(chunks.data(), DType::U8, {nchunks_ * int64_t(sizeof(AdamWChunk))},
                             DType::U8, device_);
  count_ = Tensor::zeros({2}, DType::I64, device_);
}

void AdamW::step(double lr, const GradClipper& clip) {
  step(lr, clip.scale(), clip.nonfinite());
}

void AdamW::step(double lr, const Tensor& scale, const Tensor& nonfinite) {
  SEQMIX_CHECK(std::isfinite(lr) && lr >= 0, "AdamW::step: lr must be finite and >= 0, got {}", lr);
  if (scale.defined()) {
    SEQMIX_CHECK(scale.dtype() == DType::F32 && scale.numel() == 1 && scale.device() == device_,
                 "AdamW::step: scale must be an f32 scalar on {}, got {}", device_.str(),
                 scale.str());
  }
  if (nonfinite.defined()) {
    SEQMIX_CHECK(
        nonfinite.dtype() == DType::I32 && nonfinite.numel() == 1 && nonfinite.device() == device_,
        "AdamW::step: nonfinite must be an i32 scalar on {}, got {}", device_.str(),
        nonfinite.str());
  }
  AdamWScalars s;
  s.lr = float(lr);
  s.beta1 = float(cfg_.beta1);
  s.beta2 = float(cfg_.beta2);
  s.one_minus_beta1 = float(1.0 - cfg_.beta1);
  s.one_minus_beta2 = float(1.0 - cfg_.beta2);
  s.eps = float(cfg_.eps);
  s.weight_decay = float(cfg_.weight_decay);
  s.beta1_d = cfg_.beta1;
  s.beta2_d = cfg_.beta2;
  const int slot_in = int(attempted_ & 1);
  int64_t* count = count_.data<int64_t>();
  const float* scale_p = scale.defined() ? scale.data<float>() : nullptr;
  const int32_t* flag_p = nonfinite.defined() ? nonfinite.data<int32_t>() : nullptr;
  if (device_.is_cpu()) {
    const bool skip = flag_p && *flag_p != 0;
    count[1 - slot_in] = count[slot_in] + (skip ? 0 : 1);
    if (!skip) {
      const int64_t t = count[slot_in] + 1;
      const float bc1 = float(1.0 - optim_detail::pow_int(s.beta1_d, t));
      const float bc2 = float(1.0 - optim_detail::pow_int(s.beta2_d, t));
      const float sc = scale_p ? *scale_p : 1.0f;
      const auto* chunks = static_cast<const AdamWChunk*>(table_.data_ptr());
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < nchunks_; ++c) {
        const AdamWChunk& k = chunks[c];
        const float wd = k.decay ? s.weight_decay : 0.0f;
        for (int64_t i = 0; i < k.n; ++i)
          optim_detail::adamw_element(k.p[i], k.g[i], k.m[i], k.v[i], sc, bc1, bc2, wd, s);
      }
    }
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard guard(device_.index);
    optim_detail::adamw_step_cuda(static_cast<const AdamWChunk*>(table_.data_ptr()), nchunks_, s,
                                  scale_p, flag_p, count + slot_in, count + (1 - slot_in),
                                  ops::stream_of(device_));
#else
    SEQMIX_THROW(Unsupported, "AdamW: seqmix was built without CUDA");
#endif
  }
  ++attempted_;
  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i].param.bump_version();
    m_[i].bump_version();
    v_[i].bump_version();
  }
  count_.bump_version();
}

int64_t AdamW::read_applied_steps() const {
  return int64_t(count_.select(0, attempted_ & 1).item());
}

std::vector<std::pair<std::string, Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("m." + params_[i].name, m_[i]);
    out.emplace_back("v." + params_[i].name, v_[i]);
  }
  out.emplace_back("step", Tensor::full({}, double(read_applied_steps()), DType::I64));
  out.emplace_back("attempted_steps", Tensor::full({}, double(attempted_), DType::I64));
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, Tensor>>& state) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [k, t] : state) by_name[k] = &t;
  auto get = [&](const std::string& key, const Shape& shape) -> const Tensor& {
    auto it = by_name.find(key);
    SEQMIX_CHECK_KIND(Checkpoint, it != by_name.end() && it->second->defined(),
                      "AdamW::load_state: optimizer state '{}' is missing", key);
    SEQMIX_CHECK_KIND(Checkpoint, it->second->shape() == shape,
                      "AdamW::load_state: optimizer state '{}' has shape {}, expected {}", key,
                      it->second->shape_str(), shape.str());
    return *it->second;
  };
  // Validate everything before changing anything.
  std::vector<const Tensor*> ms, vs;
  for (const ParamRef& r : params_) {
    ms.push_back(&get("m." + r.name, r.param.shape()));
    vs.push_back(&get("v." + r.name, r.param.shape()));
    for (const Tensor* t : {ms.back(), vs.back()})
      SEQMIX_CHECK_KIND(Checkpoint, t->dtype() == DType::F32,
                        "AdamW::load_state: optimizer state of '{}' must be f32, got {}", r.name,
                        t->str());
  }
  const Tensor& step_t = get("step", Shape{});
  const Tensor& att_t = get("attempted_steps", Shape{});
  const int64_t applied = int64_t(step_t.item()), attempted = int64_t(att_t.item());
  SEQMIX_CHECK_KIND(Checkpoint, applied >= 0 && attempted >= applied,
                    "AdamW::load_state: inconsistent step counts (step {}, attempted_steps {})",
                    applied, attempted);
  for (size_t i = 0; i < params_.size(); ++i) {
    m_[i].copy_(*ms[i]);
    v_[i].copy_(*vs[i]);
  }
  attempted_ = attempted;
  const int64_t counts[2] = {applied, applied};
  count_.copy_(Tensor::from_host(counts, DType::I64, {2}, DType::I64));
}

}  // namespace seqmix
