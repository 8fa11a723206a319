#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "core/check.h"
#include "core/ops/random.h"

namespace seqmix {

namespace {
double weighted_sum(const std::vector<Variable>& outs, const std::vector<Tensor>& w) {
  double total = 0;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (!outs[k].defined()) continue;
    const auto a = outs[k].data().to_vector<double>();
    const auto b = w[k].to_vector<double>();
    for (size_t i = 0; i < a.size(); ++i) total += a[i] * b[i];
  }
  return total;
}
}  // namespace

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs,
                          std::vector<bool> differentiable, GradcheckOptions opts) {
  if (differentiable.empty()) {
    for (const Tensor& t : inputs) differentiable.push_back(is_floating(t.dtype()));
  }
  SEQMIX_CHECK(differentiable.size() == inputs.size(), "gradcheck: {} flags for {} inputs",
               differentiable.size(), inputs.size());
  std::vector<Variable> leaves;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (differentiable[i])
      SEQMIX_CHECK(t.device().is_cpu() && t.dtype() == DType::F64,
                   "gradcheck: differentiable input {} must be a CPU f64 tensor, got {}", i,
                   describe(t));
    leaves.emplace_back(t.clone(), bool(differentiable[i]));
  }

  // Analytic.
  std::vector<Variable> outs = f(leaves);
  Generator gen(opts.seed);
  std::vector<Tensor> w;
  Variable loss;
  for (const Variable& o : outs) {
    if (!o.defined()) {
      w.emplace_back();
      continue;
    }
    Tensor wk = Tensor::empty(o.shape(), DType::F64, Device::cpu());
    ops::normal_(wk, 0.0, 1.0, gen);
    w.push_back(wk);
    Variable term = sum(mul(cast(o, DType::F64), Variable(wk)));
    loss = loss.defined() ? add(loss, term) : term;
  }
  SEQMIX_CHECK(loss.defined(), "gradcheck: the function returned no outputs");
  if (loss.requires_grad()) loss.backward();

  GradcheckResult res;
  double worst_excess = 0;
  for (size_t i = 0; i < leaves.size(); ++i) {
    if (!differentiable[i]) continue;
    const Tensor& x = leaves[i].data();
    const Tensor ga = leaves[i].grad();
    const std::vector<double> analytic =
        ga.defined() ? ga.to_vector<double>() : std::vector<double>(size_t(x.numel()), 0.0);
    double* px = x.data<double>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double v = px[j];
      double lp, lm;
      {
        NoGradGuard ng;
        px[j] = v + opts.eps;
        lp = weighted_sum(f(leaves), w);
        px[j] = v - opts.eps;
        lm = weighted_sum(f(leaves), w);
        px[j] = v;
      }
      const double numeric = (lp - lm) / (2 * opts.eps);
      const double err = std::fabs(analytic[size_t(j)] - numeric);
      const double tol = opts.atol + opts.rtol * std::fabs(numeric);
      res.max_abs_error = std::max(res.max_abs_error, err);
      res.checked += 1;
      if (err > tol && err - tol > worst_excess) {
        worst_excess = err - tol;
        res.ok = false;
        res.message = fmt::format(
            "input {} element {}: analytic {:.10g} vs numeric {:.10g} (|diff| {:.3g} > tol {:.3g})",
            i, j, analytic[size_t(j)], numeric, err, tol);
      }
    }
  }
  return res;
}

}  // namespace seqmix
