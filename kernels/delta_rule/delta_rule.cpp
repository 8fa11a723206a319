// Delta-rule family (DeltaNet, Gated DeltaNet, KDA): validation (shapes per gate mode, dtypes,
// devices, contiguity, cu_seqlens checked on the host; errors name the operand), algorithm choice
// and device dispatch, and the autograd node of delta_rule(...) (saves q, k, v, beta, g, h0; the
// backward recomputes the states).
//   S_t = (I − β_t k_t k_tᵀ) D_t S_{t−1} + β_t k_t v_tᵀ,  o_t = scale · S_tᵀ q_t
//   (see delta_rule.h and README.md)
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "autograd/function.h"
#include "core/check.h"
#include "core/ops/common.h"
#include "kernels/common/validate.h"
#include "kernels/delta_rule/delta_rule.h"

namespace seqmix {

namespace {
constexpr const char* kOp = "delta_rule";
// Auto picks the chunked CUDA kernels when the (mean) sequence length is at least this.
constexpr int64_t kChunkedMinLen = 64;

DType state_dtype(DType x) {
  return linear_rnn_state_dtype(x);
}

// Optional tensors (outputs, gradients, h0, ...) must match `shape`/`dtype`, be contiguous and
// live on `dev`.
void check_like(const char* name, const Tensor& t, const Shape& shape, DType dtype, Device dev) {
  check_optional_like(kOp, name, t, shape, dtype, dev, "q");
}

struct Dims : QkvDims {
  Shape g_shape;  // expected shape of g (empty for None)
};

// Everything about the inputs shared by forward and backward. Reads cu_seqlens on the host.
Dims validate_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& beta,
                     const Tensor& g, const Tensor& h0, const Tensor& cu, DeltaGate gate,
                     double scale) {
  Dims d;
  static_cast<QkvDims&>(d) = check_qkv(kOp, q, k, v, cu, scale);
  const DType sd = state_dtype(q.dtype());
  // β: one writing strength per token and head.
  SEQMIX_CHECK(beta.defined(), "{}: 'beta' [B, T, H] is required", kOp);
  check_like("beta", beta, {d.b, d.t, d.h}, sd, d.dev);
  // Gates.
  switch (gate) {
    case DeltaGate::None:
      SEQMIX_CHECK(!g.defined(), "{}: 'g' must be undefined for gate none, got {}", kOp,
                   describe(g));
      break;
    case DeltaGate::HeadScalar:
      d.g_shape = {d.b, d.t, d.h};
      break;
    case DeltaGate::KeyVector:
      d.g_shape = {d.b, d.t, d.h, d.k};
      break;
  }
  if (gate != DeltaGate::None) {
    SEQMIX_CHECK(g.defined(), "{}: the log-gate 'g' is required for gate {}", kOp,
                 delta_gate_name(gate));
    check_like("g", g, d.g_shape, sd, d.dev);
  }
  check_like("h0", h0, d.state(), sd, d.dev);
  return d;
}

DeltaFwdArgs as_fwd(const DeltaBwdArgs& a) {
  DeltaFwdArgs f;
  f.q = a.q;
  f.k = a.k;
  f.v = a.v;
  f.beta = a.beta;
  f.g = a.g;
  f.h0 = a.h0;
  f.cu_seqlens = a.cu_seqlens;
  f.o = a.dout;
  f.gate = a.gate;
  f.scale = a.scale;
  f.l2norm_qk = a.l2norm_qk;
  f.algo = a.algo;
  return f;
}

// The CUDA algorithm for this request (raises Unsupported with the reason when none fits).
// Whether Auto prefers the chunked kernels for long sequences (see choose_cuda_algo).
constexpr bool kAutoPicksChunked = true;

#if SEQMIX_WITH_CUDA
// SEQMIX_DELTA_ALGO=recurrent|chunked overrides what Auto prefers (to isolate a kernel when
// hunting a bug); a path that cannot take the request is still never picked silently.
DeltaAlgo auto_override() {
  static const DeltaAlgo v = [] {
    const char* e = std::getenv("SEQMIX_DELTA_ALGO");
    if (e == nullptr || *e == '\0' || std::string_view(e) == "auto") return DeltaAlgo::Auto;
    if (std::string_view(e) == "recurrent") return DeltaAlgo::Recurrent;
    if (std::string_view(e) == "chunked") return DeltaAlgo::Chunked;
    SEQMIX_THROW(Value, "SEQMIX_DELTA_ALGO={}: expected auto, recurrent or chunked", e);
  }();
  return v;
}
#endif

DeltaAlgo choose_cuda_algo(const DeltaFwdArgs& a, const Dims& d) {
  const Support s = delta_rule_supports(a);
  SEQMIX_CHECK_KIND(Unsupported, s.ok, "{}: {}", kOp, s.why);
  if (a.algo != DeltaAlgo::Auto) return a.algo;
#if SEQMIX_WITH_CUDA
  // Auto: the chunked kernels for long sequences (mean length >= kChunkedMinLen) when they take
  // the request, else the recurrent ones; SEQMIX_DELTA_ALGO moves the preference.
  const DeltaAlgo pref = auto_override();
  const bool long_seqs = d.mean_len() >= kChunkedMinLen;
  if (pref == DeltaAlgo::Recurrent && delta_rule_recurrent_supports(a)) return DeltaAlgo::Recurrent;
  if (pref == DeltaAlgo::Chunked && delta_rule_chunk_supports(a)) return DeltaAlgo::Chunked;
  // KeyVector (KDA) stays on the recurrent kernels under Auto: the chunked KeyVector kernels
  // overflow when 8 consecutive log-gates sum below about -80 (README "KeyVector (KDA) chunked
  // kernels"), and KDA's gate -A·softplus(.) with A up to 16 reaches that at initialisation.
  const bool auto_ok = a.gate != DeltaGate::KeyVector;
  if (kAutoPicksChunked && auto_ok && delta_rule_chunk_supports(a) &&
      (long_seqs || !delta_rule_recurrent_supports(a)))
    return DeltaAlgo::Chunked;
  if (delta_rule_chunk_supports(a) && !delta_rule_recurrent_supports(a)) return DeltaAlgo::Chunked;
#else
  (void)d;
#endif
  return DeltaAlgo::Recurrent;
}

void dispatch_fwd(const DeltaFwdArgs& a, const Dims& d) {
  if (d.dev.is_cpu()) {
    const Support s = delta_rule_supports(a);
    SEQMIX_CHECK_KIND(Unsupported, s.ok, "{}: {}", kOp, s.why);
    if (a.o.numel() > 0 || a.ht.defined()) delta_rule_fwd_ref(a);
  } else {
    const DeltaAlgo algo = choose_cuda_algo(a, d);
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard guard(d.dev.index);
    if (algo == DeltaAlgo::Chunked)
      delta_rule_chunk_fwd_cuda(a);
    else
      delta_rule_recurrent_fwd_cuda(a);
#else
    (void)algo;
#endif
  }
  a.o.bump_version();
  if (a.ht.defined()) a.ht.bump_version();
}

void dispatch_bwd(const DeltaBwdArgs& a, const Dims& d) {
  const DeltaFwdArgs f = as_fwd(a);
  if (d.dev.is_cpu()) {
    const Support s = delta_rule_supports(f);
    SEQMIX_CHECK_KIND(Unsupported, s.ok, "{}: {}", kOp, s.why);
    delta_rule_bwd_ref(a);
  } else {
    const DeltaAlgo algo = choose_cuda_algo(f, d);
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard guard(d.dev.index);
    if (algo == DeltaAlgo::Chunked)
      delta_rule_chunk_bwd_cuda(a);
    else
      delta_rule_recurrent_bwd_cuda(a);
#else
    (void)algo;
#endif
  }
  for (const Tensor* x : {&a.dq, &a.dk, &a.dv, &a.dbeta, &a.dg, &a.dh0})
    if (x->defined()) x->bump_version();
}

}  // namespace

const char* delta_gate_name(DeltaGate g) {
  switch (g) {
    case DeltaGate::None:
      return "none";
    case DeltaGate::HeadScalar:
      return "head_scalar";
    case DeltaGate::KeyVector:
      return "key_vector";
  }
  return "?";
}

double delta_scale(double scale, int64_t k) {
  return scale != 0 ? scale : 1.0 / std::sqrt(double(k));
}

Support delta_rule_supports(const DeltaFwdArgs& a) {
  return linear_rnn_supports(a, &delta_rule_chunk_supports, &delta_rule_recurrent_supports);
}

#if !SEQMIX_WITH_CUDA
// CPU-only build: the CUDA implementations exist as refusals, so code (and tests) naming them
// link everywhere.
Support delta_rule_recurrent_supports(const DeltaFwdArgs&) {
  return Support::no("seqmix was built without CUDA");
}
Support delta_rule_chunk_supports(const DeltaFwdArgs&) {
  return Support::no("seqmix was built without CUDA");
}
void delta_rule_recurrent_fwd_cuda(const DeltaFwdArgs&) {
  SEQMIX_THROW(Unsupported, "{}: seqmix was built without CUDA", kOp);
}
void delta_rule_recurrent_bwd_cuda(const DeltaBwdArgs&) {
  SEQMIX_THROW(Unsupported, "{}: seqmix was built without CUDA", kOp);
}
void delta_rule_chunk_fwd_cuda(const DeltaFwdArgs&) {
  SEQMIX_THROW(Unsupported, "{}: seqmix was built without CUDA", kOp);
}
void delta_rule_chunk_bwd_cuda(const DeltaBwdArgs&) {
  SEQMIX_THROW(Unsupported, "{}: seqmix was built without CUDA", kOp);
}
#endif

void delta_rule_fwd(const DeltaFwdArgs& a) {
  const Dims d = validate_inputs(a.q, a.k, a.v, a.beta, a.g, a.h0, a.cu_seqlens, a.gate, a.scale);
  SEQMIX_CHECK(a.o.defined(), "{}: the output 'o' is required", kOp);
  check_like("o", a.o, a.v.shape(), a.q.dtype(), d.dev);
  check_like("ht", a.ht, d.state(), state_dtype(a.q.dtype()), d.dev);
  dispatch_fwd(a, d);
}

void delta_rule_bwd(const DeltaBwdArgs& a) {
  const Dims d = validate_inputs(a.q, a.k, a.v, a.beta, a.g, a.h0, a.cu_seqlens, a.gate, a.scale);
  const DType dt = a.q.dtype(), sd = state_dtype(dt);
  SEQMIX_CHECK(a.dout.defined(), "{}_bwd: the output gradient 'dout' is required", kOp);
  check_like("dout", a.dout, a.v.shape(), dt, d.dev);
  check_like("dht", a.dht, d.state(), sd, d.dev);
  check_like("dq", a.dq, a.q.shape(), dt, d.dev);
  check_like("dk", a.dk, a.q.shape(), dt, d.dev);
  check_like("dv", a.dv, a.v.shape(), dt, d.dev);
  check_like("dbeta", a.dbeta, a.beta.shape(), sd, d.dev);
  if (a.dg.defined()) {
    SEQMIX_CHECK(a.gate != DeltaGate::None, "{}_bwd: 'dg' must be undefined for gate none", kOp);
    check_like("dg", a.dg, d.g_shape, sd, d.dev);
  }
  check_like("dh0", a.dh0, d.state(), sd, d.dev);
  dispatch_bwd(a, d);
}

std::pair<Variable, Variable> delta_rule(const Variable& q, const Variable& k, const Variable& v,
                                         const Variable& beta, const Variable& g,
                                         const Variable& h0, const Tensor& cu_seqlens,
                                         const DeltaOptions& opt, bool want_final_state) {
  SEQMIX_CHECK(q.defined() && k.defined() && v.defined(), "{}: q, k and v are required", kOp);
  SEQMIX_CHECK(beta.defined(), "{}: 'beta' [B, T, H] is required", kOp);
  DeltaFwdArgs fa;
  fa.q = q.data().contiguous();
  fa.k = k.data().contiguous();
  fa.v = v.data().contiguous();
  fa.beta = beta.data().contiguous();
  if (g.defined()) fa.g = g.data().contiguous();
  if (h0.defined()) fa.h0 = h0.data().contiguous();
  fa.cu_seqlens = cu_seqlens;
  fa.gate = opt.gate;
  fa.scale = opt.scale;
  fa.l2norm_qk = opt.l2norm_qk;
  fa.algo = opt.algo;
  const Dims d =
      validate_inputs(fa.q, fa.k, fa.v, fa.beta, fa.g, fa.h0, fa.cu_seqlens, fa.gate, fa.scale);
  fa.o = fa.v.empty_like();
  if (want_final_state) fa.ht = Tensor::empty(d.state(), state_dtype(fa.q.dtype()), d.dev);
  // When a gradient will be needed, the chunked CUDA forward keeps its chunk states, U and prep
  // outputs (W, T, ...) for the backward, which then skips its recompute of the prep and the
  // forward state pass; the node releases them once its backward has run.
  auto keep = std::make_shared<DeltaChunkKeep>();
  if (d.dev.is_cuda() && any_requires_grad({&q, &k, &v, &beta, &g, &h0})) {
    keep->want_dg = (opt.gate == DeltaGate::HeadScalar || opt.gate == DeltaGate::KeyVector) &&
                    g.requires_grad();
    fa.keep = keep.get();
  }
  dispatch_fwd(fa, d);

  std::vector<Tensor> outs{fa.o};
  if (want_final_state) outs.push_back(fa.ht);
  constexpr const char* kNode = "DeltaRuleBackward";
  std::vector<Variable> res = record_multi(
      kNode, {&q, &k, &v, &beta, &g, &h0}, std::move(outs),
      [sq = SavedTensor(fa.q, kNode), sk = SavedTensor(fa.k, kNode), sv = SavedTensor(fa.v, kNode),
       sb = SavedTensor(fa.beta, kNode), sg = SavedTensor(fa.g, kNode),
       sh0 = SavedTensor(fa.h0, kNode), cu = fa.cu_seqlens, opt, d,
       keep](const Node& self, TensorList& gr) -> TensorList {
        DeltaBwdArgs ba;
        ba.q = sq.get();
        ba.k = sk.get();
        ba.v = sv.get();
        ba.beta = sb.get();
        ba.g = sg.get();
        ba.h0 = sh0.get();
        ba.cu_seqlens = cu;
        ba.gate = opt.gate;
        ba.scale = opt.scale;
        ba.l2norm_qk = opt.l2norm_qk;
        ba.algo = opt.algo;
        const DType sd = state_dtype(ba.q.dtype());
        ba.dout = gr[0].defined() ? gr[0].to(ba.q.dtype()).contiguous() : ba.v.zeros_like();
        if (gr.size() > 1 && gr[1].defined()) ba.dht = gr[1].to(sd).contiguous();
        if (self.needs_input_grad(0)) ba.dq = ba.q.empty_like();
        if (self.needs_input_grad(1)) ba.dk = ba.k.empty_like();
        if (self.needs_input_grad(2)) ba.dv = ba.v.empty_like();
        if (self.needs_input_grad(3)) ba.dbeta = ba.beta.empty_like();
        if (self.needs_input_grad(4) && opt.gate != DeltaGate::None) ba.dg = ba.g.empty_like();
        if (self.needs_input_grad(5) && ba.h0.defined()) ba.dh0 = ba.h0.empty_like();
        if (keep->hs.defined()) ba.keep = keep.get();
        dispatch_bwd(ba, d);
        *keep = DeltaChunkKeep{};  // a second backward (retained graph) recomputes
        return {ba.dq, ba.dk, ba.dv, ba.dbeta, ba.dg, ba.dh0};
      });
  return {res[0], want_final_state ? res[1] : Variable()};
}

}  // namespace seqmix
