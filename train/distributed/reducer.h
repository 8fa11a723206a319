// GradReducer: data-parallel gradient averaging in buckets, overlapped with backward.
//
// Given the model's parameters in registration order, the reducer
//   1. groups the parameters that require grad into buckets in REVERSE registration order (the
//      order gradients become ready in backward): a bucket takes parameters until the next one
//      would push it past `bucket_mib` MiB; a parameter larger than that gets a bucket of its own;
//   2. allocates one flat f32 buffer per bucket (each parameter at an offset aligned to 16
//      elements; padding stays zero) and makes every parameter's gradient a view into it, so the
//      engine's accumulation adds into the bucket in place;
//   3. registers a grad-ready hook per parameter: when the last gradient of a bucket is ready the
//      bucket is all-reduced (average), buckets strictly in index order 0, 1, 2, ... so every
//      rank issues the same collectives in the same order even when readiness differs. On a GPU
//      the all-reduce runs on a separate communication stream that first waits (CUDA event) for
//      the compute stream's work so far; no host synchronisation. On the CPU it runs inline.
//
// Per optimizer step:  zero_grad(); for each micro-batch { set_enabled(last micro-batch);
// forward; backward; }  finish();  then clip / AdamW on grads().
// finish() reduces every bucket whose hooks did not all fire (unused parameters, possibly
// only on some ranks), then makes the compute stream wait for all reductions. It must follow
// every backward run while enabled (a gradient ready twice before finish() is an error).
// Disabled backward runs only accumulate locally (gradient accumulation); the final enabled
// one reduces the accumulated sum. See train/distributed/README.md.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "train/distributed/communicator.h"

namespace seqmix::dist {

inline constexpr double kDefaultBucketMiB = 25.0;

struct BucketInfo {
  std::vector<std::string> names;  // in the order their gradients are expected (reverse reg.)
  int64_t numel = 0;               // elements of the flat buffer (with padding)
};

class GradReducer {
 public:
  // `params`: (name, parameter) in registration order; parameters that do not require grad are
  // skipped. All must be f32 leaves on one device. `comm` must outlive the reducer.
  // bucket_mib >= 0 (0: one parameter per bucket). Existing gradients are replaced by zeroed views.
  GradReducer(const std::vector<std::pair<std::string, Variable>>& params, Communicator& comm,
              double bucket_mib = kDefaultBucketMiB);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // When false, hooks do nothing (gradient-accumulation micro-steps); finish() does nothing.
  void set_enabled(bool on);
  bool enabled() const;

  // After backward: reduces buckets not yet reduced (in order), makes the current stream of the
  // device wait for every reduction, and re-arms the hooks for the next backward.
  void finish();

  // Zeroes every bucket (on the current stream). Use this, not Variable::zero_grad(true), which
  // would detach a parameter's gradient from its bucket.
  void zero_grad();

  // The gradient views, one per reduced parameter, in registration order (fixed buffers).
  const std::vector<Tensor>& grads() const;
  // The parameters behind grads(), same order.
  const std::vector<std::string>& names() const;
  // Bucket layout (index 0 is reduced first).
  std::vector<BucketInfo> buckets() const;
  // Buckets all-reduced during the last enabled backward + finish() (from hooks vs. finish()),
  // for tests and logs.
  int64_t reduced_by_hooks() const;
  int64_t reduced_by_finish() const;

  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace seqmix::dist
