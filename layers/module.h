// Module: a tree of named parameters (fp32 master Variables that require grad) and child modules.
// Dotted names ("blocks.3.mixer.q_proj.weight") follow registration order and are what
// checkpoints and optimizers key on, so they must stay stable. ForwardContext carries the
// per-call precision, train/eval mode and the dropout generator through forward().
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "core/ops/random.h"
#include "core/tensor.h"

namespace seqmix::nn {

struct ForwardContext {
  DType compute = DType::F32;  // activation dtype: BF16 on GPU, F32 on CPU (F64 for gradchecks)
  bool training = true;        // dropout is active only when this and Module::is_training() hold
  Generator* rng = nullptr;    // dropout draws; required when training with dropout > 0
};

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module();

  // Every parameter of this module and its descendants, depth first in registration order.
  std::vector<std::pair<std::string, Variable>> named_parameters() const;
  std::vector<Variable> parameters() const;
  // The weight-decay flag given at registration; raises Value for an unknown name.
  bool decays(const std::string& dotted_name) const;
  int64_t num_parameters() const;

  // Moves every parameter (and its gradient, when defined) to `d` in place: the Variables stay
  // the same objects, so optimizer state keyed on them remains valid.
  void to(Device d);
  // Converts every floating parameter to `dtype` in place (f64 for gradient checks; training keeps
  // the f32 masters). Gradients are dropped.
  void to(DType dtype);
  void train(bool on = true);
  bool is_training() const { return training_; }

  // (dotted name, parameter value) pairs; the tensors are the live parameter storage, not copies.
  std::vector<std::pair<std::string, Tensor>> state_dict() const;
  // Copies values into the parameters (casting dtype and moving device as needed). Shape
  // mismatches always raise; missing or unexpected keys raise when `strict`. Errors are
  // ErrorKind::Checkpoint and name the keys.
  void load_state_dict(const std::vector<std::pair<std::string, Tensor>>& state,
                       bool strict = true);

 protected:
  // Registers `init` (converted to a contiguous f32 tensor when floating) as a leaf parameter.
  Variable register_parameter(const std::string& name, Tensor init, bool decay);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

 private:
  struct Entry {
    std::string name;
    Variable param;                 // defined for a parameter entry
    bool decay = false;             // parameters only
    std::shared_ptr<Module> child;  // defined for a child entry
  };
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix,
               std::vector<std::pair<std::string, const Entry*>>& out) const;

  std::vector<Entry> entries_;
  bool training_ = true;
};

}  // namespace seqmix::nn
