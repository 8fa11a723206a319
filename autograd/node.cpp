#include "autograd/node.h"

#include <atomic>

#include "core/check.h"

namespace seqmix {

namespace {
std::atomic<uint64_t> g_next_seq{0};
}

Node::Node(uint32_t num_outputs) : num_outputs_(num_outputs), seq_(g_next_seq.fetch_add(1)) {}

const Tensor& SavedTensor::get() const {
  SEQMIX_CHECK(!released_,
               "{}: saved tensors were already freed; backward through the graph a "
               "second time needs retain_graph=true",
               owner_);
  if (t_.defined() && t_.version() != version_) {
    SEQMIX_THROW(Value,
                 "{}: a tensor saved for backward ({}) was modified by an in-place operation "
                 "(version {} at save, {} now)",
                 owner_, describe(t_), version_, t_.version());
  }
  return t_;
}

namespace detail {
[[noreturn]] void throw_released(const char* name) {
  SEQMIX_THROW(Value,
               "{}: saved tensors were already freed; backward through the graph a second time "
               "needs retain_graph=true",
               name);
}
}  // namespace detail

}  // namespace seqmix
