// The common interface of everything that feeds training and evaluation: token-window loaders
// over HDF5 datasets (loader.h) and in-process synthetic tasks (mqar.h).
//
//   Batch.inputs:  I64 [B, T] on the CPU, token ids in [0, vocab_size)
//   Batch.targets: I64 [B, T] on the CPU, the id to predict at each position, -100 = ignored
//
// Every source hands out an infinite (training) or finite (evaluation) sequence of *global*
// samples 0, 1, 2, ...; in a run of world_size ranks, global sample g belongs to rank
// g % world_size and each call of next() on a rank returns that rank's next batch_size samples
// (so one step of all ranks consumes batch_size * world_size global samples). The state counts
// global samples, so a run resumes identically with the same or a different world size.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace seqmix::data {

inline constexpr int64_t kIgnoreIndex = -100;

struct Batch {
  Tensor inputs;   // I64 [B, T]
  Tensor targets;  // I64 [B, T], kIgnoreIndex = no loss at this position
};

struct LoaderState {
  uint64_t seed = 0;              // the seed of the data order / synthetic examples
  uint64_t epoch = 0;             // informative: the epoch of the next sample (0 for MQAR)
  uint64_t samples_consumed = 0;  // global samples handed out over all ranks
  bool operator==(const LoaderState&) const = default;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next() = 0;
  virtual LoaderState state() const = 0;
  virtual void restore(const LoaderState& state) = 0;
  virtual int64_t vocab_size() const = 0;
};

}  // namespace seqmix::data
