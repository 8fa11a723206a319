// Test helpers shared by the layer and mixer suites (CPU, f64): finite-difference gradient checks
// of a module, parameter perturbation, the kind of a raised error, and the named mixer
// configurations the suites loop over.
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "core/error.h"
#include "layers/mixers/mixer.h"
#include "tests/testing/testing.h"

namespace seqmix::tu {

// Analytic gradients of L = sum(f(x) * w) for every parameter of `m` and for x, against central
// differences (f64). Everything must be f64. With `every_param_matters`, a parameter whose
// numerical gradient is zero everywhere fails (an identically zero gradient passes trivially).
inline void check_module_grads(nn::Module& m, const std::function<Variable(const Variable&)>& f,
                               const Tensor& x0, double tol = 1e-6,
                               bool every_param_matters = true) {
  Variable x(x0.clone(), true);
  const Variable out = f(x);
  const Variable w(randn(out.shape(), DType::F64));
  for (const Variable& p : m.parameters()) p.zero_grad();
  sum(mul(out, w)).backward();
  auto loss_at = [&]() {
    NoGradGuard ng;
    return sum(mul(f(Variable(x.data())), w)).data().item();
  };
  std::vector<std::pair<std::string, Variable>> all = m.named_parameters();
  all.emplace_back("x", x);
  const double eps = 1e-6;
  int64_t checked = 0;
  for (const auto& [name, v] : all) {
    SCOPED_TRACE(name);
    ASSERT_EQ(v.dtype(), DType::F64);
    ASSERT_TRUE(v.grad().defined()) << "no gradient for " << name;
    const std::vector<double> g = v.grad().to_vector<double>();
    double* p = v.data().data<double>();
    double max_abs_grad = 0;
    for (int64_t i = 0; i < v.numel(); ++i) {
      const double keep = p[i];
      p[i] = keep + eps;
      const double lp = loss_at();
      p[i] = keep - eps;
      const double lm = loss_at();
      p[i] = keep;
      const double num = (lp - lm) / (2 * eps);
      ASSERT_NEAR(g[size_t(i)], num, tol + 1e-5 * std::abs(num)) << name << "[" << i << "]";
      max_abs_grad = std::max(max_abs_grad, std::abs(num));
      ++checked;
    }
    if (every_param_matters) {
      EXPECT_GT(max_abs_grad, 1e-8) << name << " has no effect on the output";
    }
  }
  EXPECT_GT(checked, 0);
}

// Adds N(0, 0.3²) to every parameter (f64 tests: away from the special values of the init).
inline void perturb(nn::Module& m) {
  NoGradGuard ng;
  for (const auto& [n, v] : m.named_parameters())
    v.data().copy_(
        ops::binary(ops::BinaryOp::Add, v.data(), randn(v.shape(), v.dtype(), Device::cpu(), 0.3)));
}

// The kind of the seqmix::Error that `f` raises (a test failure when it raises none); its message
// into `message` when given.
template <class F>
ErrorKind error_kind_of(F&& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.message();
    return e.kind();
  }
  ADD_FAILURE() << "expected an error";
  return ErrorKind::Internal;
}

// A named mixer configuration of a suite's loop.
struct MixerCase {
  std::string name;
  nn::MixerSpec spec;
};

// Every case's gradients (parameters and input) against finite differences, at d_model `d`, f64.
inline void check_mixer_grads(const std::vector<MixerCase>& cases, int64_t d) {
  for (const MixerCase& c : cases) {
    SCOPED_TRACE(c.name);
    auto mix = nn::make_mixer(d, c.spec, next_seed());
    mix->to(DType::F64);
    perturb(*mix);
    const nn::ForwardContext ctx{DType::F64, true, nullptr};
    check_module_grads(
        *mix, [&](const Variable& x) { return mix->forward(x, ctx); },
        randn({2, 5, d}, DType::F64));
  }
}

}  // namespace seqmix::tu
