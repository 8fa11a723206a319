// Softmax attention: validation (shapes, dtypes, devices, contiguity; errors name the operand),
// device dispatch, and the autograd node (saves q, k, v, o, lse; backward recomputes P from lse).
#include <cmath>
#include <cstdint>
#include <string>

#include "autograd/function.h"
#include "core/check.h"
#include "core/ops/common.h"
#include "kernels/attention/attention.h"

namespace seqmix {

namespace {
constexpr const char* kOp = "attention";

DType lse_dtype(DType x) {
  return x == DType::F64 ? DType::F64 : DType::F32;
}

void check_4d(const char* name, const Tensor& t) {
  SEQMIX_CHECK(t.dim() == 4, "{}: '{}' must be 4-d [B, T, heads, D], got {}", kOp, name,
               t.shape_str());
}

// Optional tensors (outputs, gradients) must match `shape`/`dtype`, be contiguous and on `dev`.
void check_like(const char* name, const Tensor& t, const Shape& shape, DType dtype, Device dev) {
  if (!t.defined()) return;
  ops::check_shape(kOp, name, t, shape);
  ops::check_dtype(kOp, name, t, dtype);
  SEQMIX_CHECK(t.is_contiguous(), "{}: '{}' must be contiguous", kOp, name);
  SEQMIX_CHECK(t.device() == dev, "{}: '{}' is on {} but q is on {}", kOp, name, t.device().str(),
               dev.str());
}

// Shapes, dtypes, devices and options shared by forward and backward. Returns q's device.
Device check_qkv(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                 int64_t window) {
  SEQMIX_CHECK(q.defined() && k.defined() && v.defined(), "{}: q, k and v are required", kOp);
  const Device dev = ops::common_device(kOp, {{"q", &q}, {"k", &k}, {"v", &v}});
  check_4d("q", q);
  check_4d("k", k);
  check_4d("v", v);
  SEQMIX_CHECK(is_floating(q.dtype()), "{}: 'q' must be floating, got {}", kOp,
               dtype_name(q.dtype()));
  ops::check_dtype(kOp, "k", k, q.dtype());
  ops::check_dtype(kOp, "v", v, q.dtype());
  for (const auto& [name, t] : {std::pair{"q", &q}, std::pair{"k", &k}, std::pair{"v", &v}})
    SEQMIX_CHECK(t->is_contiguous(), "{}: '{}' must be contiguous", kOp, name);
  const int64_t b = q.size(0), t = q.size(1), h = q.size(2), d = q.size(3);
  SEQMIX_CHECK(d > 0, "{}: the head dim D of 'q' must be positive, got {}", kOp, q.shape_str());
  SEQMIX_CHECK(h > 0, "{}: 'q' has no heads: {}", kOp, q.shape_str());
  SEQMIX_CHECK(k.size(0) == b && k.size(1) == t && k.size(3) == d,
               "{}: 'k' must be [B={}, T={}, Hkv, D={}] like q {}, got {}", kOp, b, t, d,
               q.shape_str(), k.shape_str());
  ops::check_shape(kOp, "v", v, k.shape());
  const int64_t hkv = k.size(2);
  SEQMIX_CHECK(hkv > 0 && h % hkv == 0,
               "{}: the {} query heads of 'q' are not a multiple of the {} kv heads of 'k'", kOp, h,
               hkv);
  SEQMIX_CHECK(std::isfinite(scale) && scale >= 0,
               "{}: scale must be finite and >= 0 (0 = 1/sqrt(D)), got {}", kOp, scale);
  SEQMIX_CHECK(window >= 0, "{}: window must be >= 0, got {}", kOp, window);
  SEQMIX_CHECK(window == 0 || causal, "{}: a sliding window (window={}) needs causal attention",
               kOp, window);
  return dev;
}

void check_support(const AttentionFwdArgs& f) {
  const Support s = attention_supports(f);
  SEQMIX_CHECK_KIND(Unsupported, s.ok, "{}: {}", kOp, s.why);
}
}  // namespace

Support attention_supports(const AttentionFwdArgs& a) {
  const DType t = a.q.dtype();
  if (!is_floating(t)) return Support::no("q must be floating");
  if (!a.q.device().is_cuda()) return Support::yes();  // the reference takes every float dtype
#if !SEQMIX_WITH_CUDA
  return Support::no("seqmix was built without CUDA");
#else
  const int64_t d = a.q.dim() == 4 ? a.q.size(3) : 0;
  if (a.q.dim() == 4 && (a.q.size(0) > 65535 || a.q.size(2) > 65535))
    return Support::no("the CUDA kernels take at most 65535 batch entries and heads (grid limit)");
  if (t == DType::BF16) {
    if (d != 64 && d != 128)
      return Support::no("the bf16 CUDA kernel supports head dims 64 and 128, got " +
                         std::to_string(d));
    for (const Tensor* x : {&a.q, &a.k, &a.v, &a.o})
      if (x->defined() && (reinterpret_cast<uintptr_t>(x->data_ptr()) & 15u) != 0)
        return Support::no("the bf16 CUDA kernel needs 16-byte aligned q, k, v, o");
    return Support::yes();
  }
  if (t == DType::F32) {
    if (d > 256) return Support::no("the f32 CUDA kernel supports head dims up to 256");
    return Support::yes();
  }
  return Support::no(std::string("CUDA attention takes bf16 or f32 inputs, got ") + dtype_name(t));
#endif
}

void attention_fwd(const AttentionFwdArgs& a) {
  const Device dev = check_qkv(a.q, a.k, a.v, a.scale, a.causal, a.window);
  SEQMIX_CHECK(a.o.defined(), "{}: the output 'o' is required", kOp);
  const int64_t b = a.q.size(0), t = a.q.size(1), h = a.q.size(2);
  check_like("o", a.o, a.q.shape(), a.q.dtype(), dev);
  check_like("lse", a.lse, {b, h, t}, lse_dtype(a.q.dtype()), dev);
  check_support(a);
  if (a.q.numel() > 0) {
    if (dev.is_cpu()) {
      attention_fwd_ref(a);
    } else {
#if SEQMIX_WITH_CUDA
      cuda::DeviceGuard g(dev.index);
      attention_fwd_cuda(a);
#endif
    }
  }
  a.o.bump_version();
  if (a.lse.defined()) a.lse.bump_version();
}

void attention_bwd(const AttentionBwdArgs& a) {
  const Device dev = check_qkv(a.q, a.k, a.v, a.scale, a.causal, a.window);
  SEQMIX_CHECK(a.o.defined() && a.lse.defined() && a.dout.defined(),
               "{}_bwd: o, lse and dout are required", kOp);
  const int64_t b = a.q.size(0), t = a.q.size(1), h = a.q.size(2);
  check_like("o", a.o, a.q.shape(), a.q.dtype(), dev);
  check_like("dout", a.dout, a.q.shape(), a.q.dtype(), dev);
  check_like("lse", a.lse, {b, h, t}, lse_dtype(a.q.dtype()), dev);
  check_like("dq", a.dq, a.q.shape(), a.q.dtype(), dev);
  check_like("dk", a.dk, a.k.shape(), a.q.dtype(), dev);
  check_like("dv", a.dv, a.v.shape(), a.q.dtype(), dev);
  AttentionFwdArgs f;
  f.q = a.q;
  f.k = a.k;
  f.v = a.v;
  f.o = a.dout;  // same layout and alignment rule as o
  check_support(f);
  if (a.q.numel() > 0) {
    if (dev.is_cpu()) {
      attention_bwd_ref(a);
    } else {
#if SEQMIX_WITH_CUDA
      cuda::DeviceGuard g(dev.index);
      attention_bwd_cuda(a);
#endif
    }
  }
  for (const Tensor* x : {&a.dq, &a.dk, &a.dv})
    if (x->defined()) x->bump_version();
}

Variable attention(const Variable& q, const Variable& k, const Variable& v,
                   const AttentionOptions& opt) {
  SEQMIX_CHECK(q.defined() && k.defined() && v.defined(), "{}: q, k and v are required", kOp);
  AttentionFwdArgs fa;
  fa.q = q.data().contiguous();
  fa.k = k.data().contiguous();
  fa.v = v.data().contiguous();
  fa.scale = opt.scale;
  fa.causal = opt.causal;
  fa.window = opt.window;
  fa.o = fa.q.empty_like();
  if (fa.q.dim() == 4)
    fa.lse = Tensor::empty({fa.q.size(0), fa.q.size(2), fa.q.size(1)}, lse_dtype(fa.q.dtype()),
                           fa.q.device());
  attention_fwd(fa);
  return record(
      "AttentionBackward", {&q, &k, &v}, fa.o,
      [sq = SavedTensor(fa.q, "AttentionBackward"), sk = SavedTensor(fa.k, "AttentionBackward"),
       sv = SavedTensor(fa.v, "AttentionBackward"), so = SavedTensor(fa.o, "AttentionBackward"),
       sl = SavedTensor(fa.lse, "AttentionBackward"),
       opt](const Node& self, TensorList& g) -> TensorList {
        AttentionBwdArgs ba;
        ba.q = sq.get();
        ba.k = sk.get();
        ba.v = sv.get();
        ba.o = so.get();
        ba.lse = sl.get();
        ba.dout = g[0].to(ba.q.dtype()).contiguous();
        ba.scale = opt.scale;
        ba.causal = opt.causal;
        ba.window = opt.window;
        if (self.needs_input_grad(0)) ba.dq = ba.q.empty_like();
        if (self.needs_input_grad(1)) ba.dk = ba.k.empty_like();
        if (self.needs_input_grad(2)) ba.dv = ba.v.empty_like();
        attention_bwd(ba);
        return {ba.dq, ba.dk, ba.dv};
      });
}

}  // namespace seqmix
