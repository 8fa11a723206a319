// Variable: a tensor in the autograd graph. A leaf (no grad_fn) that requires grad accumulates
// its gradient into grad(); a non-leaf remembers the node that produced it. Copies of a Variable
// share one state (like shared_ptr).
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "autograd/node.h"
#include "core/tensor.h"

namespace seqmix {

class Variable;
using GradReadyHook = std::function<void(const Variable&)>;

struct VariableImpl {
  Tensor data;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;
  bool requires_grad = false;
  std::weak_ptr<Node> grad_accumulator;
  std::vector<GradReadyHook> hooks;
  std::string name;
};

class Variable {
 public:
  Variable() = default;
  // A leaf.
  explicit Variable(Tensor data, bool requires_grad = false);
  // The output `output_nr` of node `fn`.
  static Variable make_output(Tensor data, std::shared_ptr<Node> fn, uint32_t output_nr = 0);

  bool defined() const { return impl_ != nullptr; }
  const Tensor& data() const;
  // Replaces the value (same shape not required); the graph is untouched.
  void set_data(Tensor t) const;

  const Tensor& grad() const;
  // Sets the gradient buffer (e.g. a view into a flat bucket); accumulation adds into it in place.
  void set_grad(Tensor g) const;
  // Clears the gradient: undefined (set_to_none) or filled with zeros.
  void zero_grad(bool set_to_none = true) const;

  bool requires_grad() const;             // false for an undefined Variable
  void set_requires_grad(bool on) const;  // leaves only
  bool is_leaf() const;
  const std::shared_ptr<Node>& grad_fn() const;
  uint32_t output_nr() const;
  // Where a gradient of this variable must be sent; invalid when it needs none (or undefined).
  Edge gradient_edge() const;

  // Runs backward from this variable. `grad` defaults to 1 for a one-element variable.
  void backward(const Tensor& grad = {}, bool retain_graph = false) const;
  // Called after this leaf's gradient has been accumulated for the current backward pass.
  void register_grad_ready_hook(GradReadyHook hook) const;
  // A new leaf sharing the value, outside the graph.
  Variable detach() const;

  const std::string& name() const;
  void set_name(std::string n) const;

  // Value shorthands.
  const Shape& shape() const { return data().shape(); }
  int dim() const { return data().dim(); }
  int64_t size(int64_t d) const { return data().size(d); }
  int64_t numel() const { return data().numel(); }
  DType dtype() const { return data().dtype(); }
  Device device() const { return data().device(); }

  VariableImpl* impl() const { return impl_.get(); }
  // A handle sharing an existing state.
  static Variable from_impl(std::shared_ptr<VariableImpl> impl);
  bool is_same(const Variable& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<VariableImpl> impl_;
};

}  // namespace seqmix
