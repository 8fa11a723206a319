// Test helper shared by the layer and mixer suites: train a tiny LanguageModel on one fixed random
// batch with Adam written out on the f32 masters, until the loss is below 0.05 or `max_steps`.
#pragma once
#include <cmath>
#include <vector>

#include "layers/language_model.h"
#include "tests/testing/testing.h"

namespace seqmix::tu {

struct OverfitResult {
  double first = 0, last = 0;  // loss at the first and the last step
  int steps = 0;
};

// Random tokens and targets over `vocab` (4 rows of 16); rows start with distinct tokens so no two
// positions share a context (the batch is learnable to zero loss).
inline OverfitResult overfit_one_batch(nn::LanguageModel& m, int64_t vocab, int max_steps) {
  const Tensor tokens = randint({4, 16}, 0, vocab), targets = randint({4, 16}, 0, vocab);
  tokens.narrow(1, 0, 1).copy_(Tensor::arange(4, DType::I64).view({4, 1}));
  const auto params = m.parameters();
  std::vector<std::vector<float>> mom(params.size()), var(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    mom[i].assign(size_t(params[i].numel()), 0.f);
    var[i].assign(size_t(params[i].numel()), 0.f);
  }
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f;
  OverfitResult r;
  for (r.steps = 1; r.steps <= max_steps; ++r.steps) {
    for (const Variable& p : params) p.zero_grad();
    const Variable loss = m.loss(tokens, targets, nn::ForwardContext{});
    r.last = loss.data().item();
    if (r.steps == 1) r.first = r.last;
    if (r.last < 0.05) break;
    loss.backward();
    const float c1 = 1 - std::pow(b1, float(r.steps)), c2 = 1 - std::pow(b2, float(r.steps));
    for (size_t i = 0; i < params.size(); ++i) {
      float* w = params[i].data().data<float>();
      const auto g = params[i].grad().to_vector<float>();
      for (size_t j = 0; j < g.size(); ++j) {
        mom[i][j] = b1 * mom[i][j] + (1 - b1) * g[j];
        var[i][j] = b2 * var[i][j] + (1 - b2) * g[j] * g[j];
        w[j] -= lr * (mom[i][j] / c1) / (std::sqrt(var[i][j] / c2) + 1e-8f);
      }
    }
  }
  return r;
}

}  // namespace seqmix::tu
