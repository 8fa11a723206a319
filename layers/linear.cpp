// Linear, Embedding, RMSNorm and SwiGLU (see linear.h for the formulas and precision policy).
#include "layers/linear.h"

#include "autograd/functions.h"
#include "core/check.h"
#include "kernels/embedding/embedding.h"
#include "kernels/norm/norm.h"
#include "layers/init.h"

namespace seqmix::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, double init_std, uint64_t seed)
    : in_(in_features), out_(out_features) {
  SEQMIX_CHECK(in_features > 0 && out_features > 0, "Linear: sizes must be positive, got {} -> {}",
               in_features, out_features);
  weight_ = register_parameter("weight", init_normal({out_, in_}, init_std, seed), true);
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({out_}, DType::F32), false);
}

Variable Linear::forward(const Variable& x) const {
  SEQMIX_CHECK(x.dim() >= 1 && x.size(-1) == in_, "Linear: x must be [..., {}], got {}", in_,
               x.data().shape_str());
  // The transposed weight is a view; the matmul passes it to the BLAS as a transpose.
  Variable y = matmul(x, transpose(cast(weight_, x.dtype()), 0, 1));
  if (bias_.defined()) y = add(y, cast(bias_, x.dtype()));
  return y;
}

Embedding::Embedding(int64_t vocab_size, int64_t dim, double init_std, uint64_t seed) {
  SEQMIX_CHECK(vocab_size > 0 && dim > 0, "Embedding: sizes must be positive, got [{}, {}]",
               vocab_size, dim);
  weight_ = register_parameter("weight", init_normal({vocab_size, dim}, init_std, seed), true);
}

Variable Embedding::forward(const Tensor& tokens, const ForwardContext& ctx) const {
  return embedding(weight_, tokens, ctx.compute);
}

RMSNorm::RMSNorm(int64_t dim, double eps) : eps_(eps) {
  SEQMIX_CHECK(dim > 0 && eps > 0, "RMSNorm: need dim > 0 and eps > 0, got {} and {}", dim, eps);
  weight_ = register_parameter("weight", Tensor::ones({dim}, DType::F32), false);
}

Variable RMSNorm::forward(const Variable& x) const {
  // kernels/norm accepts an f32 weight with any x dtype, and an f64 weight with f64 x.
  const bool cast_w = x.dtype() == DType::F64 || weight_.dtype() != DType::F32;
  return rms_norm(x, cast_w ? cast(weight_, x.dtype()) : weight_, eps_);
}

int64_t default_swiglu_hidden(int64_t d_model) {
  const int64_t h = (8 * d_model + 2) / 3;  // ceil(8 d / 3)
  return (h + 63) / 64 * 64;
}

SwiGLU::SwiGLU(int64_t d_model, int64_t hidden, double init_std, double out_std, uint64_t seed) {
  gate_ = register_module("gate_proj", std::make_shared<Linear>(d_model, hidden, false, init_std,
                                                                derive_seed(seed, 0)));
  up_ = register_module(
      "up_proj", std::make_shared<Linear>(d_model, hidden, false, init_std, derive_seed(seed, 1)));
  down_ = register_module(
      "down_proj", std::make_shared<Linear>(hidden, d_model, false, out_std, derive_seed(seed, 2)));
}

Variable SwiGLU::forward(const Variable& x) const {
  return down_->forward(mul(silu(gate_->forward(x)), up_->forward(x)));
}

}  // namespace seqmix::nn
