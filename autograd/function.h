// Recording an operation in the graph. An op computes its output tensor, then calls record() with
// its inputs and a backward lambda `TensorList(const Node& self, TensorList& grads)` that returns
// one gradient per input (undefined where self.needs_input_grad(i) is false). Nothing is recorded
// under NoGradGuard or when no input requires grad.
#pragma once
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/variable.h"

namespace seqmix {

inline bool any_requires_grad(std::initializer_list<const Variable*> vs) {
  if (!GradMode::is_enabled()) return false;
  for (const Variable* v : vs)
    if (v->requires_grad()) return true;
  return false;
}

inline bool any_requires_grad(const std::vector<Variable>& vs) {
  if (!GradMode::is_enabled()) return false;
  for (const Variable& v : vs)
    if (v.requires_grad()) return true;
  return false;
}

template <typename F>
Variable record(const char* name, std::initializer_list<const Variable*> inputs, Tensor out,
                F&& backward) {
  if (!any_requires_grad(inputs)) return Variable(std::move(out));
  auto node = std::make_shared<LambdaNode<std::decay_t<F>>>(name, std::forward<F>(backward), 1);
  for (const Variable* v : inputs) node->add_next_edge(v->gradient_edge());
  return Variable::make_output(std::move(out), std::move(node), 0);
}

template <typename F>
Variable record(const char* name, const std::vector<Variable>& inputs, Tensor out, F&& backward) {
  if (!any_requires_grad(inputs)) return Variable(std::move(out));
  auto node = std::make_shared<LambdaNode<std::decay_t<F>>>(name, std::forward<F>(backward), 1);
  for (const Variable& v : inputs) node->add_next_edge(v.gradient_edge());
  return Variable::make_output(std::move(out), std::move(node), 0);
}

// Records a node with several outputs; returns one Variable per output.
template <typename F>
std::vector<Variable> record_multi(const char* name, std::initializer_list<const Variable*> inputs,
                                   std::vector<Tensor> outs, F&& backward) {
  std::vector<Variable> result;
  result.reserve(outs.size());
  if (!any_requires_grad(inputs)) {
    for (Tensor& t : outs) result.emplace_back(std::move(t));
    return result;
  }
  auto node = std::make_shared<LambdaNode<std::decay_t<F>>>(name, std::forward<F>(backward),
                                                            uint32_t(outs.size()));
  for (const Variable* v : inputs) node->add_next_edge(v->gradient_edge());
  for (size_t i = 0; i < outs.size(); ++i)
    result.push_back(Variable::make_output(std::move(outs[i]), node, uint32_t(i)));
  return result;
}

// Shape and dtype of an input, to bring a broadcast/promoted gradient back to it.
struct InputMeta {
  Shape shape;
  DType dtype;
  explicit InputMeta(const Tensor& t) : shape(t.shape()), dtype(t.dtype()) {}
};
// sum_to(g, meta.shape) cast to meta.dtype.
Tensor fit_grad(const Tensor& g, const InputMeta& meta);

}  // namespace seqmix
