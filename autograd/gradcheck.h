// Gradient checking: analytic gradients from backward against fp64 central differences.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace seqmix {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  double atol = 1e-6;  // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-5;
  uint64_t seed = 1234;  // for the random output weights
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;  // worst |analytic - numeric| over all checked elements
  int64_t checked = 0;       // number of input elements checked
  std::string message;       // the worst mismatch, when !ok
};

using GradcheckFn = std::function<std::vector<Variable>(const std::vector<Variable>&)>;

// `inputs` are CPU f64 tensors (or non-floating tensors such as indices, which are never
// differentiated). The scalar checked is sum_k <out_k, w_k> with fixed random weights w_k, so
// every output (a final state too) and every element contributes. `differentiable[i]` selects the
// inputs to check (default: every floating input).
GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs,
                          std::vector<bool> differentiable = {}, GradcheckOptions opts = {});

}  // namespace seqmix
