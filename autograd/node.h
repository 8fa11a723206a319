// Graph nodes. A Node is the backward of one forward operation: it receives the gradients of the
// operation's outputs and returns the gradients of its inputs, which flow along its next edges.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace seqmix {

using TensorList = std::vector<Tensor>;
class Node;

// Where a gradient goes: input slot `input_nr` of node `fn`. An edge without fn is "no gradient".
struct Edge {
  std::shared_ptr<Node> fn;
  uint32_t input_nr = 0;
  bool valid() const { return fn != nullptr; }
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  explicit Node(uint32_t num_outputs = 1);
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // grads[i] is the gradient of forward output i (undefined when none flowed there). Returns one
  // gradient per next edge, in order (undefined = zero / not needed).
  virtual TensorList apply(TensorList&& grads) = 0;
  virtual const char* name() const = 0;
  // Drops saved tensors after backward (unless the graph is retained).
  virtual void release_saved() {}

  const std::vector<Edge>& next_edges() const { return next_; }
  void add_next_edge(Edge e) { next_.push_back(std::move(e)); }
  // True when input i of the forward needs a gradient.
  bool needs_input_grad(size_t i) const { return i < next_.size() && next_[i].valid(); }
  uint32_t num_outputs() const { return num_outputs_; }
  // Creation order; the engine runs later-created nodes first among those ready.
  uint64_t sequence_nr() const { return seq_; }

 private:
  std::vector<Edge> next_;
  uint32_t num_outputs_;
  uint64_t seq_;
};

// A tensor saved for backward, with the storage version at save time: unpacking after an in-place
// change of that storage raises instead of silently using the new values.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, const char* owner)
      : t_(t), version_(t.defined() ? t.version() : 0), owner_(owner), saved_(true) {}
  const Tensor& get() const;
  void reset() {
    t_ = Tensor();
    released_ = true;
  }

 private:
  Tensor t_;
  uint64_t version_ = 0;
  const char* owner_ = "";
  bool saved_ = false;
  bool released_ = false;
};

// A node whose backward is a lambda `TensorList(const Node&, TensorList& grads)` that captures
// what it saved; the lambda (and so the saved tensors) is dropped on release.
template <typename F>
class LambdaNode final : public Node {
 public:
  LambdaNode(const char* name, F f, uint32_t num_outputs)
      : Node(num_outputs), name_(name), f_(std::move(f)) {}
  TensorList apply(TensorList&& grads) override;
  const char* name() const override { return name_; }
  void release_saved() override { f_.reset(); }

 private:
  const char* name_;
  std::optional<F> f_;
};

namespace detail {
[[noreturn]] void throw_released(const char* name);
}

template <typename F>
TensorList LambdaNode<F>::apply(TensorList&& grads) {
  if (!f_) detail::throw_released(name_);
  return (*f_)(static_cast<const Node&>(*this), grads);
}

}  // namespace seqmix
