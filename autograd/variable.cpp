// Variables and the AccumulateGrad node of leaves.
#include "autograd/variable.h"

#include "autograd/engine.h"
#include "core/check.h"
#include "core/ops/elementwise.h"

namespace seqmix {

namespace {

// Adds incoming gradients into a leaf's grad, then runs its grad-ready hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<VariableImpl> v) : Node(1), var_(std::move(v)) {}
  const char* name() const override { return "AccumulateGrad"; }

  TensorList apply(TensorList&& grads) override {
    Tensor& g = grads[0];
    if (!g.defined()) return {};
    VariableImpl& v = *var_;
    SEQMIX_CHECK(g.shape() == v.data.shape(),
                 "AccumulateGrad: gradient of shape {} for a leaf of shape {}", g.shape_str(),
                 v.data.shape_str());
    if (!v.grad.defined()) {
      // Take the incoming buffer when nothing else references it; otherwise copy.
      if (g.dtype() == v.data.dtype() && g.is_contiguous() && g.storage().use_count() == 1 &&
          g.device() == v.data.device())
        v.grad = std::move(g);
      else
        v.grad = g.to(v.data.device(), v.data.dtype()).clone();
    } else {
      ops::add_(v.grad, g);
    }
    if (!v.hooks.empty()) {
      Variable self = wrap();
      for (auto& h : v.hooks) h(self);
    }
    return {};
  }

 private:
  Variable wrap() const;
  std::shared_ptr<VariableImpl> var_;
};

}  // namespace

namespace {
Variable AccumulateGrad::wrap() const {
  return Variable::from_impl(var_);
}
}  // namespace

Variable Variable::from_impl(std::shared_ptr<VariableImpl> impl) {
  Variable v;
  v.impl_ = std::move(impl);
  return v;
}

Variable::Variable(Tensor data, bool requires_grad) : impl_(std::make_shared<VariableImpl>()) {
  SEQMIX_CHECK(data.defined(), "Variable: undefined data");
  if (requires_grad)
    SEQMIX_CHECK(is_floating(data.dtype()),
                 "Variable: only floating tensors can require grad, got {}",
                 dtype_name(data.dtype()));
  impl_->data = std::move(data);
  impl_->requires_grad = requires_grad;
}

Variable Variable::make_output(Tensor data, std::shared_ptr<Node> fn, uint32_t output_nr) {
  Variable v(std::move(data), false);
  v.impl_->grad_fn = std::move(fn);
  v.impl_->output_nr = output_nr;
  v.impl_->requires_grad = v.impl_->grad_fn != nullptr;
  return v;
}

#define SEQMIX_VAR_DEFINED() SEQMIX_CHECK(impl_ != nullptr, "use of an undefined Variable")

const Tensor& Variable::data() const {
  SEQMIX_VAR_DEFINED();
  return impl_->data;
}
void Variable::set_data(Tensor t) const {
  SEQMIX_VAR_DEFINED();
  impl_->data = std::move(t);
}
const Tensor& Variable::grad() const {
  SEQMIX_VAR_DEFINED();
  return impl_->grad;
}
void Variable::set_grad(Tensor g) const {
  SEQMIX_VAR_DEFINED();
  if (g.defined())
    SEQMIX_CHECK(g.shape() == impl_->data.shape(), "set_grad: shape {} for a variable of shape {}",
                 g.shape_str(), impl_->data.shape_str());
  impl_->grad = std::move(g);
}
void Variable::zero_grad(bool set_to_none) const {
  SEQMIX_VAR_DEFINED();
  if (set_to_none)
    impl_->grad = Tensor();
  else if (impl_->grad.defined())
    impl_->grad.zero_();
}
bool Variable::requires_grad() const {
  return impl_ != nullptr && impl_->requires_grad;
}
void Variable::set_requires_grad(bool on) const {
  SEQMIX_VAR_DEFINED();
  SEQMIX_CHECK(is_leaf(), "set_requires_grad: only leaves can change requires_grad");
  if (on) SEQMIX_CHECK(is_floating(impl_->data.dtype()), "only floating tensors can require grad");
  impl_->requires_grad = on;
}
bool Variable::is_leaf() const {
  SEQMIX_VAR_DEFINED();
  return impl_->grad_fn == nullptr;
}
const std::shared_ptr<Node>& Variable::grad_fn() const {
  SEQMIX_VAR_DEFINED();
  return impl_->grad_fn;
}
uint32_t Variable::output_nr() const {
  SEQMIX_VAR_DEFINED();
  return impl_->output_nr;
}

Edge Variable::gradient_edge() const {
  if (!impl_) return Edge{};  // an absent optional input
  if (impl_->grad_fn) return Edge{impl_->grad_fn, impl_->output_nr};
  if (!impl_->requires_grad) return Edge{};
  std::shared_ptr<Node> acc = impl_->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(impl_);
    impl_->grad_accumulator = acc;
  }
  return Edge{acc, 0};
}

void Variable::backward(const Tensor& grad, bool retain_graph) const {
  run_backward({*this}, {grad}, retain_graph);
}

void Variable::register_grad_ready_hook(GradReadyHook hook) const {
  SEQMIX_VAR_DEFINED();
  SEQMIX_CHECK(is_leaf() && impl_->requires_grad,
               "grad-ready hooks can only be registered on leaves that require grad");
  impl_->hooks.push_back(std::move(hook));
}

Variable Variable::detach() const {
  return Variable(data(), false);
}

const std::string& Variable::name() const {
  SEQMIX_VAR_DEFINED();
  return impl_->name;
}
void Variable::set_name(std::string n) const {
  SEQMIX_VAR_DEFINED();
  impl_->name = std::move(n);
}

}  // namespace seqmix
