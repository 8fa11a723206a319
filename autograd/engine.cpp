// Backward execution: discover the graph from the roots, count each node's incoming edges, then
// run nodes whose count has dropped to zero (latest-created first), summing the gradients that
// arrive at the same input slot.
#include "autograd/engine.h"

#include <queue>
#include <unordered_map>

#include "autograd/grad_mode.h"
#include "core/check.h"
#include "core/ops/elementwise.h"

namespace seqmix {

namespace {

struct ByNewest {
  bool operator()(const Node* a, const Node* b) const {
    return a->sequence_nr() < b->sequence_nr();
  }
};

void accumulate(TensorList& buf, uint32_t slot, Tensor&& g) {
  if (!g.defined()) return;
  if (!buf[slot].defined()) {
    buf[slot] = std::move(g);
  } else {
    // Out of place: the buffered tensor may be shared with another consumer.
    buf[slot] = ops::add(buf[slot], g);
  }
}

}  // namespace

void run_backward(const std::vector<Variable>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph) {
  SEQMIX_CHECK(roots.size() == grads.size(), "backward: {} roots but {} gradients", roots.size(),
               grads.size());
  NoGradGuard no_grad;  // backward formulas run on plain tensors

  std::unordered_map<Node*, int> deps;
  std::unordered_map<Node*, TensorList> buffers;
  std::vector<std::shared_ptr<Node>> root_nodes;

  for (size_t i = 0; i < roots.size(); ++i) {
    const Variable& r = roots[i];
    SEQMIX_CHECK(r.defined(), "backward: root {} is undefined", i);
    const Edge e = r.gradient_edge();
    SEQMIX_CHECK(e.valid(),
                 "backward: root {} does not require grad and has no grad_fn (was it computed "
                 "under NoGradGuard, or from inputs that do not require grad?)",
                 i);
    Tensor g = grads[i];
    if (!g.defined()) {
      SEQMIX_CHECK(r.numel() == 1,
                   "backward: a gradient must be given for root {} of shape {} (only one-element "
                   "roots default to 1)",
                   i, r.shape().str());
      g = Tensor::ones(r.shape(), r.dtype(), r.device());
    } else {
      SEQMIX_CHECK(g.shape() == r.shape(), "backward: gradient of shape {} for root of shape {}",
                   g.shape_str(), r.shape().str());
    }
    TensorList& buf = buffers[e.fn.get()];
    if (buf.empty()) buf.resize(e.fn->num_outputs());
    accumulate(buf, e.input_nr, std::move(g));
    root_nodes.push_back(e.fn);
  }

  // Dependency counts over the reachable graph.
  std::vector<Node*> stack;
  std::unordered_map<Node*, bool> seen;
  for (auto& n : root_nodes) {
    if (!seen[n.get()]) {
      seen[n.get()] = true;
      stack.push_back(n.get());
    }
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges()) {
      if (!e.valid()) continue;
      deps[e.fn.get()] += 1;
      if (!seen[e.fn.get()]) {
        seen[e.fn.get()] = true;
        stack.push_back(e.fn.get());
      }
    }
  }

  std::priority_queue<Node*, std::vector<Node*>, ByNewest> ready;
  for (auto& n : root_nodes) {
    if (deps[n.get()] == 0 && seen[n.get()]) {
      ready.push(n.get());
      seen[n.get()] = false;  // queued once
    }
  }

  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    TensorList in;
    if (auto it = buffers.find(n); it != buffers.end()) {
      in = std::move(it->second);
      buffers.erase(it);
    }
    in.resize(n->num_outputs());
    TensorList out = n->apply(std::move(in));
    if (!retain_graph) n->release_saved();
    const auto& edges = n->next_edges();
    SEQMIX_CHECK(out.size() == edges.size() || out.empty(),
                 "internal error: {} returned {} gradients for {} inputs", n->name(), out.size(),
                 edges.size());
    for (size_t i = 0; i < edges.size(); ++i) {
      const Edge& e = edges[i];
      if (!e.valid()) continue;
      if (i < out.size() && out[i].defined()) {
        TensorList& buf = buffers[e.fn.get()];
        if (buf.empty()) buf.resize(e.fn->num_outputs());
        accumulate(buf, e.input_nr, std::move(out[i]));
      }
      if (--deps[e.fn.get()] == 0) ready.push(e.fn.get());
    }
  }
}

}  // namespace seqmix
