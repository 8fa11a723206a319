// The backward engine: define-by-run graph, executed in dependency order.
#pragma once
#include <vector>

#include "autograd/variable.h"

namespace seqmix {

// Computes gradients of `roots` (seeded with `grads`, or 1 for one-element roots) and
// accumulates them into the leaves that require grad. Each node runs once, after every node that
// sends it a gradient; among ready nodes the most recently created runs first. Saved tensors are
// released unless retain_graph.
void run_backward(const std::vector<Variable>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph = false);

}  // namespace seqmix
