// Building blocks: Linear, Embedding, RMSNorm, the SwiGLU MLP.
//   Linear:    y = x W^T (+ b)          W: [out, in] f32, b: [out] f32; x: [..., in] -> [..., out]
//   Embedding: y[..., :] = E[tok, :]    E: [V, C] f32; tokens i64 [...] -> [..., C]
//   RMSNorm:   y = x / rms(x) * w       w: [C] f32 (ones); over the last dim
//   SwiGLU:    y = down(silu(gate(x)) * up(x)),  gate/up: C -> H, down: H -> C, no biases
// Precision: parameters are f32 masters; each forward casts the weight to the activation dtype
// (x's dtype for Linear, ctx.compute for Embedding) through the differentiable `cast`, so the
// master receives f32 gradients. Norms take x in its dtype with the f32 weight (kernels/norm).
#pragma once
#include <cstdint>

#include "layers/module.h"

namespace seqmix::nn {

class Linear : public Module {
 public:
  // W ~ N(0, init_std^2) drawn from `seed`; b = 0. The weight decays, the bias does not.
  Linear(int64_t in_features, int64_t out_features, bool bias, double init_std, uint64_t seed);
  Variable forward(const Variable& x) const;
  const Variable& weight() const { return weight_; }
  const Variable& bias() const { return bias_; }  // undefined without bias
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_, out_;
  Variable weight_, bias_;
};

class Embedding : public Module {
 public:
  Embedding(int64_t vocab_size, int64_t dim, double init_std, uint64_t seed);
  // tokens: i64/i32 [...] on the weight's device -> [..., C] in ctx.compute.
  Variable forward(const Tensor& tokens, const ForwardContext& ctx) const;
  const Variable& weight() const { return weight_; }

 private:
  Variable weight_;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-5);
  Variable forward(const Variable& x) const;  // same dtype as x
  const Variable& weight() const { return weight_; }
  double eps() const { return eps_; }

 private:
  Variable weight_;
  double eps_;
};

// 8/3 * d rounded up to a multiple of 64 (the usual SwiGLU width at equal parameter count).
int64_t default_swiglu_hidden(int64_t d_model);

class SwiGLU : public Module {
 public:
  // `out_std` initialises down_proj (the residual output projection, scaled by the caller).
  SwiGLU(int64_t d_model, int64_t hidden, double init_std, double out_std, uint64_t seed);
  Variable forward(const Variable& x) const;
  const Linear& down_proj() const { return *down_; }

 private:
  std::shared_ptr<Linear> gate_, up_, down_;
};

}  // namespace seqmix::nn
