// Gated linear attention family: validation (shapes per gate mode, dtypes, devices, contiguity,
// cu_seqlens checked on the host; errors name the operand), algorithm choice and device dispatch,
// and the autograd node of gla(...) (saves q, k, v, g, h0 and, when the forward ran the chunked
// CUDA kernels, its chunk-start states and, with a data-dependent gate, its chunk-local
// cumulative gates, so that the backward recomputes neither).
//   S_t = exp(g_t) ⊙ S_{t-1} + k_tᵀ v_t,  o_t = scale · q_t S_t    (see gla.h and README.md)
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/function.h"
#include "core/check.h"
#include "core/ops/common.h"
#include "kernels/common/validate.h"
#include "kernels/gla/gla.h"

namespace seqmix {

namespace {
constexpr const char* kOp = "gla";
// Auto picks the chunked CUDA kernels when the (mean) sequence length is at least this.
constexpr int64_t kChunkedMinLen = 64;

DType state_dtype(DType x) {
  return linear_rnn_state_dtype(x);
}

bool gated(GlaGate g) {
  return g == GlaGate::HeadScalar || g == GlaGate::KeyVector;
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
Dims validate_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                     const Tensor& h0, const Tensor& cu, GlaGate gate, double scale) {
  Dims d;
  static_cast<QkvDims&>(d) = check_qkv(kOp, q, k, v, cu, scale);
  // Gates.
  const DType sd = state_dtype(q.dtype());
  switch (gate) {
    case GlaGate::None:
      SEQMIX_CHECK(!g.defined(), "{}: 'g' must be undefined for gate None, got {}", kOp,
                   describe(g));
      break;
    case GlaGate::HeadConst:
      d.g_shape = {d.h};
      break;
    case GlaGate::HeadScalar:
      d.g_shape = {d.b, d.t, d.h};
      break;
    case GlaGate::KeyVector:
      d.g_shape = {d.b, d.t, d.h, d.k};
      break;
  }
  if (gate != GlaGate::None) {
    SEQMIX_CHECK(g.defined(), "{}: the log-gate 'g' is required for gate {}", kOp,
                 gla_gate_name(gate));
    check_like("g", g, d.g_shape, sd, d.dev);
  }
  check_like("h0", h0, d.state(), sd, d.dev);
  return d;
}

// The kept tensors are read and written by the chunked kernels in 16-byte pieces.
void check_aligned16(const char* name, const Tensor& t) {
  SEQMIX_CHECK(aligned16(t),
               "{}: '{}' must start at a 16-byte aligned address (a fresh tensor does)", kOp, name);
}

// The optional cumulative gates shared by forward and backward: like g (data-dependent gates).
void check_gc(const Tensor& gc, GlaGate gate, const Dims& d) {
  if (!gc.defined()) return;
  SEQMIX_CHECK(gated(gate), "{}: 'gc' must be undefined for gate {} (no data-dependent gate)", kOp,
               gla_gate_name(gate));
  check_like("gc", gc, d.g_shape, DType::F32, d.dev);
  check_aligned16("gc", gc);
}

// The optional chunk-start states shared by forward and backward (bf16).
void check_hs(const Tensor& hs, const Tensor& q, const Tensor& v, const Tensor& cu, const Dims& d) {
  if (!hs.defined()) return;
  check_like("hs", hs, gla_chunk_states_shape(q, v, cu), DType::BF16, d.dev);
  check_aligned16("hs", hs);
}

GlaFwdArgs as_fwd(const GlaBwdArgs& a) {
  GlaFwdArgs f;
  f.q = a.q;
  f.k = a.k;
  f.v = a.v;
  f.g = a.g;
  f.h0 = a.h0;
  f.cu_seqlens = a.cu_seqlens;
  f.o = a.dout;
  f.gate = a.gate;
  f.scale = a.scale;
  f.algo = a.algo;
  return f;
}

// The CUDA algorithm for this request (raises Unsupported with the reason when none fits).
GlaAlgo choose_cuda_algo(const GlaFwdArgs& a, const Dims& d) {
  const Support s = gla_supports(a);
  SEQMIX_CHECK_KIND(Unsupported, s.ok, "{}: {}", kOp, s.why);
  if (a.algo != GlaAlgo::Auto) return a.algo;
#if SEQMIX_WITH_CUDA
  const bool long_seqs = d.mean_len() >= kChunkedMinLen;
  if (gla_chunk_supports(a) && (long_seqs || !gla_recurrent_supports(a))) return GlaAlgo::Chunked;
#else
  (void)d;
#endif
  return GlaAlgo::Recurrent;
}

// The algorithm the forward will run: choose_cuda_algo on CUDA, Recurrent (the reference) on the
// CPU.
GlaAlgo planned_algo(const GlaFwdArgs& a, const Dims& d) {
  return d.dev.is_cuda() ? choose_cuda_algo(a, d) : GlaAlgo::Recurrent;
}

// Runs `algo` (from planned_algo) and returns it (Recurrent stands for the CPU reference too).
GlaAlgo dispatch_fwd(const GlaFwdArgs& a, const Dims& d, GlaAlgo algo) {
  GlaAlgo ran = GlaAlgo::Recurrent;
  if (d.dev.is_cpu()) {
    const Support s = gla_supports(a);
    SEQMIX_CHECK_KIND(Unsupported, s.ok, "{}: {}", kOp, s.why);
    if (a.o.numel() > 0 || a.ht.defined()) gla_fwd_ref(a);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard guard(d.dev.index);
    if (algo == GlaAlgo::Chunked)
      gla_chunk_fwd_cuda(a);
    else
      gla_recurrent_fwd_cuda(a);
#endif
    ran = algo;
  }
  a.o.bump_version();
  if (a.ht.defined()) a.ht.bump_version();
  if (a.gc.defined() && ran == GlaAlgo::Chunked) a.gc.bump_version();
  if (a.hs.defined() && ran == GlaAlgo::Chunked) a.hs.bump_version();
  return ran;
}

void dispatch_bwd(const GlaBwdArgs& a, const Dims& d) {
  const GlaFwdArgs f = as_fwd(a);
  if (d.dev.is_cpu()) {
    const Support s = gla_supports(f);
    SEQMIX_CHECK_KIND(Unsupported, s.ok, "{}: {}", kOp, s.why);
    gla_bwd_ref(a);
  } else {
    const GlaAlgo algo = choose_cuda_algo(f, d);
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard guard(d.dev.index);
    if (algo == GlaAlgo::Chunked)
      gla_chunk_bwd_cuda(a);
    else
      gla_recurrent_bwd_cuda(a);
#else
    (void)algo;
#endif
  }
  for (const Tensor* x : {&a.dq, &a.dk, &a.dv, &a.dg, &a.dh0})
    if (x->defined()) x->bump_version();
}

}  // namespace

const char* gla_gate_name(GlaGate g) {
  switch (g) {
    case GlaGate::None:
      return "none";
    case GlaGate::HeadConst:
      return "head_const";
    case GlaGate::HeadScalar:
      return "head_scalar";
    case GlaGate::KeyVector:
      return "key_vector";
  }
  return "?";
}

double gla_scale(double scale, int64_t k) {
  return scale != 0 ? scale : 1.0 / std::sqrt(double(k));
}

Shape gla_chunk_states_shape(const Tensor& q, const Tensor& v, const Tensor& cu_seqlens) {
  SEQMIX_CHECK(q.dim() == 4 && v.dim() == 4, "{}: q and v must be 4-d, got {} and {}", kOp,
               describe(q), describe(v));
  const int64_t b = q.size(0), t = q.size(1);
  const int64_t chunks = cu_seqlens.defined() ? t / kGlaChunk + (cu_seqlens.numel() - 1)
                                              : b * ((t + kGlaChunk - 1) / kGlaChunk);
  return {chunks, q.size(2), q.size(3), v.size(3)};
}

Support gla_supports(const GlaFwdArgs& a) {
  return linear_rnn_supports(a, &gla_chunk_supports, &gla_recurrent_supports);
}

#if !SEQMIX_WITH_CUDA
// CPU-only build: the CUDA implementations exist as refusals, so code (and tests) naming them
// link everywhere.
Support gla_recurrent_supports(const GlaFwdArgs&) {
  return Support::no("seqmix was built without CUDA");
}
Support gla_chunk_supports(const GlaFwdArgs&) {
  return Support::no("seqmix was built without CUDA");
}
void gla_recurrent_fwd_cuda(const GlaFwdArgs&) {
  SEQMIX_THROW(Unsupported, "{}: seqmix was built without CUDA", kOp);
}
void gla_recurrent_bwd_cuda(const GlaBwdArgs&) {
  SEQMIX_THROW(Unsupported, "{}: seqmix was built without CUDA", kOp);
}
void gla_chunk_fwd_cuda(const GlaFwdArgs&) {
  SEQMIX_THROW(Unsupported, "{}: seqmix was built without CUDA", kOp);
}
void gla_chunk_bwd_cuda(const GlaBwdArgs&) {
  SEQMIX_THROW(Unsupported, "{}: seqmix was built without CUDA", kOp);
}
#endif

void gla_fwd(const GlaFwdArgs& a) {
  const Dims d = validate_inputs(a.q, a.k, a.v, a.g, a.h0, a.cu_seqlens, a.gate, a.scale);
  SEQMIX_CHECK(a.o.defined(), "{}: the output 'o' is required", kOp);
  check_like("o", a.o, a.v.shape(), a.q.dtype(), d.dev);
  check_like("ht", a.ht, d.state(), state_dtype(a.q.dtype()), d.dev);
  check_gc(a.gc, a.gate, d);
  check_hs(a.hs, a.q, a.v, a.cu_seqlens, d);
  dispatch_fwd(a, d, planned_algo(a, d));
}

void gla_bwd(const GlaBwdArgs& a) {
  const Dims d = validate_inputs(a.q, a.k, a.v, a.g, a.h0, a.cu_seqlens, a.gate, a.scale);
  const DType dt = a.q.dtype(), sd = state_dtype(dt);
  SEQMIX_CHECK(a.dout.defined(), "{}_bwd: the output gradient 'dout' is required", kOp);
  check_like("dout", a.dout, a.v.shape(), dt, d.dev);
  check_like("dht", a.dht, d.state(), sd, d.dev);
  check_like("dq", a.dq, a.q.shape(), dt, d.dev);
  check_like("dk", a.dk, a.q.shape(), dt, d.dev);
  check_like("dv", a.dv, a.v.shape(), dt, d.dev);
  if (a.dg.defined()) {
    SEQMIX_CHECK(gated(a.gate), "{}_bwd: 'dg' must be undefined for gate {} (no learnable gate)",
                 kOp, gla_gate_name(a.gate));
    check_like("dg", a.dg, d.g_shape, sd, d.dev);
  }
  check_like("dh0", a.dh0, d.state(), sd, d.dev);
  check_gc(a.gc, a.gate, d);
  check_hs(a.hs, a.q, a.v, a.cu_seqlens, d);
  dispatch_bwd(a, d);
}

std::pair<Variable, Variable> gla(const Variable& q, const Variable& k, const Variable& v,
                                  const Variable& g, const Variable& h0, const Tensor& cu_seqlens,
                                  const GlaOptions& opt, bool want_final_state) {
  SEQMIX_CHECK(q.defined() && k.defined() && v.defined(), "{}: q, k and v are required", kOp);
  SEQMIX_CHECK(!(opt.gate == GlaGate::HeadConst && g.defined() && g.requires_grad()),
               "{}: 'g' of gate head_const holds fixed decays and takes no gradient; pass it "
               "without requires_grad (or use head_scalar for learnable decays)",
               kOp);
  GlaFwdArgs fa;
  fa.q = q.data().contiguous();
  fa.k = k.data().contiguous();
  fa.v = v.data().contiguous();
  if (g.defined()) fa.g = g.data().contiguous();
  if (h0.defined()) fa.h0 = h0.data().contiguous();
  fa.cu_seqlens = cu_seqlens;
  fa.gate = opt.gate;
  fa.scale = opt.scale;
  fa.algo = opt.algo;
  const Dims d = validate_inputs(fa.q, fa.k, fa.v, fa.g, fa.h0, fa.cu_seqlens, fa.gate, fa.scale);
  fa.o = fa.v.empty_like();
  if (want_final_state) fa.ht = Tensor::empty(d.state(), state_dtype(fa.q.dtype()), d.dev);
  // The chunked forward's cumulative gates are kept for the backward (f32, the size of g; the
  // forward allocates them anyway, so this only extends their lifetime to the backward's). When
  // a gradient will be needed, so are its chunk-start states (bf16 [chunks, H, K, V], K·V / 32
  // bytes per token and head, which the forward also allocates anyway): the backward then skips
  // its recompute of the forward state pass. The node releases the states once its backward ran.
  if (gated(opt.gate) && d.dev.is_cuda()) fa.gc = Tensor::empty(d.g_shape, DType::F32, d.dev);
  const GlaAlgo algo = planned_algo(fa, d);
  auto hs = std::make_shared<Tensor>();
  if (algo == GlaAlgo::Chunked && any_requires_grad({&q, &k, &v, &g, &h0}))
    fa.hs = Tensor::empty(gla_chunk_states_shape(fa.q, fa.v, fa.cu_seqlens), DType::BF16, d.dev);
  if (dispatch_fwd(fa, d, algo) != GlaAlgo::Chunked) {
    fa.gc = Tensor();
    fa.hs = Tensor();
  }
  *hs = fa.hs;

  std::vector<Tensor> outs{fa.o};
  if (want_final_state) outs.push_back(fa.ht);
  constexpr const char* kNode = "GlaBackward";
  std::vector<Variable> res = record_multi(
      kNode, {&q, &k, &v, &g, &h0}, std::move(outs),
      [sq = SavedTensor(fa.q, kNode), sk = SavedTensor(fa.k, kNode), sv = SavedTensor(fa.v, kNode),
       sg = SavedTensor(fa.g, kNode), sh0 = SavedTensor(fa.h0, kNode), gc = fa.gc,
       cu = fa.cu_seqlens, opt, d, hs](const Node& self, TensorList& gr) -> TensorList {
        GlaBwdArgs ba;
        ba.q = sq.get();
        ba.k = sk.get();
        ba.v = sv.get();
        ba.g = sg.get();
        ba.h0 = sh0.get();
        ba.gc = gc;
        ba.hs = *hs;
        ba.cu_seqlens = cu;
        ba.gate = opt.gate;
        ba.scale = opt.scale;
        ba.algo = opt.algo;
        const DType sd = state_dtype(ba.q.dtype());
        ba.dout = gr[0].defined() ? gr[0].to(ba.q.dtype()).contiguous() : ba.v.zeros_like();
        if (gr.size() > 1 && gr[1].defined()) ba.dht = gr[1].to(sd).contiguous();
        if (self.needs_input_grad(0)) ba.dq = ba.q.empty_like();
        if (self.needs_input_grad(1)) ba.dk = ba.k.empty_like();
        if (self.needs_input_grad(2)) ba.dv = ba.v.empty_like();
        if (self.needs_input_grad(3) && gated(opt.gate)) ba.dg = ba.g.empty_like();
        if (self.needs_input_grad(4) && ba.h0.defined()) ba.dh0 = ba.h0.empty_like();
        dispatch_bwd(ba, d);
        *hs = Tensor();  // a second backward (retained graph) recomputes the states
        return {ba.dq, ba.dk, ba.dv, ba.dg, ba.dh0};
      });
  return {res[0], want_final_state ? res[1] : Variable()};
}

}  // namespace seqmix
