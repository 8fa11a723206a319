// The language model: token embedding, L pre-norm residual blocks, a final norm and the LM head.
//   h_0 = dropout(E[tokens])
//   u   = h + dropout(mixer(norm_mixer(h)))         (per block; mixer from the mixer table)
//   h'  = u + dropout(mlp(norm_mlp(u)))             (SwiGLU; omitted when mlp = false)
//   logits = norm(h_L) W_head^T                      (W_head = E when tie_embeddings)
// Parameter names: embedding.weight, blocks.<i>.mixer_norm.weight, blocks.<i>.mixer.<...>,
// blocks.<i>.mlp_norm.weight, blocks.<i>.mlp.{gate_proj,up_proj,down_proj}.weight,
// norm.weight, head.weight (untied only).
// Init (deterministic from init_seed, drawn on the CPU): matrices N(0, init_std^2); the residual
// output projections (mixer output, mlp.down_proj) N(0, init_std^2 / (2 L)); norms 1; biases 0.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "layers/linear.h"
#include "layers/mixers/mixer.h"
#include "layers/module.h"

namespace seqmix::nn {

struct LmConfig {
  int64_t vocab_size = 0, d_model = 256;
  std::vector<MixerSpec> layers;  // one entry per layer (the config expands patterns)
  bool mlp = true;
  int64_t mlp_hidden = 0;  // 0: SwiGLU hidden = 8/3 d rounded up to a multiple of 64
  // Width of a causal depthwise convolution applied to the normalised mixer input in every
  // block (Zoology's MQAR models put a short convolution before each sequence mixer); 0: none.
  int64_t short_conv = 0;
  double norm_eps = 1e-5;
  bool tie_embeddings = true;
  double dropout = 0.0;
  double init_std = 0.02;
  uint64_t init_seed = 0;
};

class Block : public Module {
 public:
  // `layer` is the block index (for the init seed), `n_layers` the depth L (for output scaling).
  Block(const LmConfig& cfg, int64_t layer, int64_t n_layers);
  // x: [B, T, C] in ctx.compute.
  Variable forward(const Variable& x, const ForwardContext& ctx);
  Mixer& mixer() { return *mixer_; }

 private:
  Variable branch_dropout(const Variable& y, const ForwardContext& ctx) const;

  double dropout_;
  std::shared_ptr<RMSNorm> mixer_norm_, mlp_norm_;
  std::shared_ptr<Mixer> mixer_;
  std::shared_ptr<SwiGLU> mlp_;
  Variable conv_weight_, conv_bias_;  // [C, W], [C] when LmConfig::short_conv > 0
};

// Holds the blocks so their names read "blocks.<i>....".
class ModuleList : public Module {
 public:
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    return register_module(std::to_string(size_++), std::move(m));
  }
  int64_t size() const { return size_; }

 private:
  int64_t size_ = 0;
};

class LanguageModel : public Module {
 public:
  explicit LanguageModel(const LmConfig& cfg);
  // tokens: i64 [B, T] on the parameters' device -> logits [B, T, V] in ctx.compute.
  Variable logits(const Tensor& tokens, const ForwardContext& ctx);
  // Mean cross-entropy over targets != -100: 0-d f32 (f64 when ctx.compute is f64).
  Variable loss(const Tensor& tokens, const Tensor& targets, const ForwardContext& ctx);
  // The same loss when only the positions `rows` (flattened b * T + t, i64 [n], on the model's
  // device) have a target, `row_targets` (i64 [n]): the head and the cross-entropy run on those
  // n rows alone. Equal to loss() with every other target -100 (an ignored position adds nothing
  // to the loss or to any gradient), up to the rounding of the smaller head GEMM. Synthetic
  // recall tasks label a few positions per example (MQAR at T = 512: 1 in 8), where the
  // [B, T, V] head is most of a step.
  Variable loss_at(const Tensor& tokens, const Tensor& rows, const Tensor& row_targets,
                   const ForwardContext& ctx);
  const LmConfig& config() const { return cfg_; }
  int64_t num_layers() const { return int64_t(blocks_.size()); }
  Block& block(int64_t i) { return *blocks_.at(size_t(i)); }

 private:
  Variable hidden(const Tensor& tokens, const ForwardContext& ctx);  // final-norm output
  Variable head(const Variable& h);                                  // [..., d] -> [..., V]
  LmConfig cfg_;
  std::shared_ptr<Embedding> embedding_;
  std::shared_ptr<ModuleList> block_list_;
  std::vector<std::shared_ptr<Block>> blocks_;
  std::shared_ptr<RMSNorm> norm_;
  std::shared_ptr<Linear> head_;  // null when tied
};

}  // namespace seqmix::nn
