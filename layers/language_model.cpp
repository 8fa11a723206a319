// Pre-norm residual blocks and the language model (see language_model.h).
#include "layers/language_model.h"

#include <cmath>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "core/check.h"
#include "kernels/cross_entropy/cross_entropy.h"
#include "kernels/dropout/dropout.h"
#include "kernels/embedding/embedding.h"
#include "kernels/short_conv/short_conv.h"
#include "layers/init.h"
#include "layers/mixers/linear_rnn_util.h"

namespace seqmix::nn {

namespace {
// Seed keys: one stream per role, so adding a layer never changes the others' values.
constexpr uint64_t kEmbeddingKey = 1, kHeadKey = 2, kBlockKeyBase = 1000;

Variable apply_dropout(const Variable& y, double p, const ForwardContext& ctx, bool training) {
  if (p <= 0.0 || !ctx.training || !training) return y;
  SEQMIX_CHECK_KIND(Usage, ctx.rng != nullptr,
                    "language model: dropout = {} in training needs ForwardContext::rng", p);
  return dropout(y, p, *ctx.rng, true);
}

void scale_in_place(const Variable& w, double s) {
  NoGradGuard ng;
  ops::unary_out(ops::UnaryOp::MulScalar, w.data(), w.data(), s);
}
}  // namespace

Block::Block(const LmConfig& cfg, int64_t layer, int64_t n_layers) : dropout_(cfg.dropout) {
  const uint64_t seed = derive_seed(cfg.init_seed, kBlockKeyBase + uint64_t(layer));
  const double out_scale = 1.0 / std::sqrt(2.0 * double(n_layers));
  mixer_norm_ = register_module("mixer_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  if (cfg.short_conv > 0) {
    // PyTorch's default Conv1d init U(-1/sqrt(W), 1/sqrt(W)) (depthwise: fan_in = W).
    const double cb = 1.0 / std::sqrt(double(cfg.short_conv));
    conv_weight_ = register_parameter(
        "conv_weight", init_uniform({cfg.d_model, cfg.short_conv}, -cb, cb, derive_seed(seed, 2)),
        false);
    conv_bias_ = register_parameter(
        "conv_bias", init_uniform({cfg.d_model}, -cb, cb, derive_seed(seed, 3)), false);
  }
  mixer_ = register_module(
      "mixer", make_mixer(cfg.d_model, cfg.layers.at(size_t(layer)), derive_seed(seed, 0)));
  // Mixers draw with kMixerInitStd; bring them to the model's init_std (and scale outputs).
  for (const Variable& w : mixer_->init_scaled_weights()) {
    bool residual = false;
    for (const Variable& r : mixer_->residual_output_weights()) residual |= r.is_same(w);
    const double s = cfg.init_std / kMixerInitStd * (residual ? out_scale : 1.0);
    if (s != 1.0) scale_in_place(w, s);
  }
  if (cfg.mlp) {
    const int64_t hidden = cfg.mlp_hidden > 0 ? cfg.mlp_hidden : default_swiglu_hidden(cfg.d_model);
    mlp_norm_ = register_module("mlp_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
    mlp_ = register_module(
        "mlp", std::make_shared<SwiGLU>(cfg.d_model, hidden, cfg.init_std, cfg.init_std * out_scale,
                                        derive_seed(seed, 1)));
  }
}

Variable Block::branch_dropout(const Variable& y, const ForwardContext& ctx) const {
  return apply_dropout(y, dropout_, ctx, is_training());
}

Variable Block::forward(const Variable& x, const ForwardContext& ctx) {
  Variable u = mixer_norm_->forward(x);
  if (conv_weight_.defined())
    u = short_conv(u, conv_weight_, conv_bias_, Variable(), Tensor(), /*silu=*/false).first;
  Variable h = add(x, branch_dropout(mixer_->forward(u, ctx), ctx));
  if (mlp_) h = add(h, branch_dropout(mlp_->forward(mlp_norm_->forward(h)), ctx));
  return h;
}

LanguageModel::LanguageModel(const LmConfig& cfg) : cfg_(cfg) {
  SEQMIX_CHECK_KIND(Config, cfg.vocab_size > 0, "model: vocab_size must be positive, got {}",
                    cfg.vocab_size);
  SEQMIX_CHECK_KIND(Config, cfg.d_model > 0, "model: d_model must be positive, got {}",
                    cfg.d_model);
  SEQMIX_CHECK_KIND(Config, !cfg.layers.empty(), "model: layers must not be empty");
  SEQMIX_CHECK_KIND(Config, cfg.mlp_hidden >= 0, "model: mlp_hidden must be >= 0, got {}",
                    cfg.mlp_hidden);
  SEQMIX_CHECK_KIND(Config, cfg.norm_eps > 0, "model: norm_eps must be positive, got {}",
                    cfg.norm_eps);
  SEQMIX_CHECK_KIND(Config, cfg.dropout >= 0 && cfg.dropout < 1,
                    "model: dropout must be in [0, 1), got {}", cfg.dropout);
  SEQMIX_CHECK_KIND(Config, cfg.init_std > 0, "model: init_std must be positive, got {}",
                    cfg.init_std);
  const int64_t n = int64_t(cfg.layers.size());
  embedding_ = register_module(
      "embedding", std::make_shared<Embedding>(cfg.vocab_size, cfg.d_model, cfg.init_std,
                                               derive_seed(cfg.init_seed, kEmbeddingKey)));
  block_list_ = register_module("blocks", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < n; ++i)
    blocks_.push_back(block_list_->push_back(std::make_shared<Block>(cfg, i, n)));
  norm_ = register_module("norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  if (!cfg.tie_embeddings)
    head_ = register_module(
        "head", std::make_shared<Linear>(cfg.d_model, cfg.vocab_size, false, cfg.init_std,
                                         derive_seed(cfg.init_seed, kHeadKey)));
}

Variable LanguageModel::hidden(const Tensor& tokens, const ForwardContext& ctx) {
  SEQMIX_CHECK(tokens.dim() == 2 && (tokens.dtype() == DType::I64 || tokens.dtype() == DType::I32),
               "language model: tokens must be i64 [B, T], got {}", describe(tokens));
  SEQMIX_CHECK(is_floating(ctx.compute), "language model: compute dtype must be floating, got {}",
               dtype_name(ctx.compute));
  const Device dev = embedding_->weight().device();
  SEQMIX_CHECK(tokens.device() == dev, "language model: tokens are on {}, the model on {}",
               tokens.device().str(), dev.str());
  Variable h = apply_dropout(embedding_->forward(tokens, ctx), cfg_.dropout, ctx, is_training());
  for (const auto& b : blocks_) h = b->forward(h, ctx);
  return norm_->forward(h);
}

Variable LanguageModel::head(const Variable& h) {
  if (head_) return head_->forward(h);
  return matmul(h, transpose(cast(embedding_->weight(), h.dtype()), 0, 1));
}

Variable LanguageModel::logits(const Tensor& tokens, const ForwardContext& ctx) {
  return head(hidden(tokens, ctx));
}

Variable LanguageModel::loss(const Tensor& tokens, const Tensor& targets,
                             const ForwardContext& ctx) {
  SEQMIX_CHECK(targets.shape() == tokens.shape(),
               "language model: targets {} must have the shape of tokens {}", targets.shape_str(),
               tokens.shape_str());
  return cross_entropy(logits(tokens, ctx), targets, -100);
}

Variable LanguageModel::loss_at(const Tensor& tokens, const Tensor& rows, const Tensor& row_targets,
                                const ForwardContext& ctx) {
  SEQMIX_CHECK(rows.dim() == 1 && rows.dtype() == DType::I64 && row_targets.dim() == 1 &&
                   row_targets.numel() == rows.numel() && rows.numel() > 0,
               "language model: loss_at needs i64 rows [n] and row_targets [n] (n > 0), got {} "
               "and {}",
               describe(rows), describe(row_targets));
  const Variable h = hidden(tokens, ctx);
  const int64_t d = h.size(2);
  // The row gather is an embedding lookup into the [B·T, d] hidden states (deterministic
  // backward: the gathered rows' gradients land in their rows, every other row gets zero).
  const Variable picked = embedding(reshape(h, {h.size(0) * h.size(1), d}), rows);
  return cross_entropy(head(picked), row_targets, -100);
}

}  // namespace seqmix::nn
