// Communicators for data-parallel training (ARCHITECTURE.md §6): a group of `world_size`
// processes (or, for tests, threads), each with a rank, that all-reduce / broadcast tensors in
// place and agree on host-level flags. Every member must issue the same collectives in the same
// order (like NCCL); a collective blocks the host only where documented.
//
//   SingleProcessComm   world 1, every call a no-op (the default without a launcher)
//   FakeComm            N communicators in one process, used from N threads (unit tests): shared
//                       slots + a barrier; sums in fixed rank order 0, 1, ..., N-1, so results
//                       are bit-reproducible and identical on every rank
//   NcclComm            one process per GPU (CUDA builds with NCCL; nccl_comm_cuda.cpp)
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "train/distributed/process_group.h"

namespace seqmix::dist {

enum class ReduceOp { Sum, Avg };
const char* reduce_op_name(ReduceOp op);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;
  virtual const char* backend() const = 0;  // "single", "fake", "nccl"

  // In place on `t` (contiguous, floating or integer), on its device; on a GPU the work is queued
  // on the current stream of that device (no host synchronisation). Avg divides the sum by the
  // world size.
  virtual void all_reduce(Tensor& t, ReduceOp op) = 0;
  // Copies rank `root`'s `t` into every rank's `t` (same shape and dtype everywhere).
  virtual void broadcast(Tensor& t, int root) = 0;
  // Returns when every rank has called it (host-level; on GPUs it also waits for the queued work
  // of the current stream).
  virtual void barrier() = 0;
  // Host-level agreement: true on every rank when `any` is true on at least one. May synchronise.
  virtual bool all_reduce_flag(bool any) = 0;
};

// World of one: all_reduce and barrier do nothing, broadcast requires root 0.
class SingleProcessComm final : public Communicator {
 public:
  explicit SingleProcessComm(int local_rank = 0) : local_rank_(local_rank) {}
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return local_rank_; }
  const char* backend() const override { return "single"; }
  void all_reduce(Tensor& t, ReduceOp op) override;
  void broadcast(Tensor& t, int root) override;
  void barrier() override {}
  bool all_reduce_flag(bool any) override { return any; }

 private:
  int local_rank_;
};

// `n` communicators sharing one in-process group; member r must be used by one thread only.
// A rank that waits longer than `timeout` at a collective raises Error(Internal) naming the ranks
// that did not arrive, so a test that would deadlock fails instead. Tensors may live on any
// device; sums are taken in rank order with the tensor ops of core/ (f32 adds for f32 data, like
// NCCL's ring reduction but with one fixed order).
std::vector<std::unique_ptr<Communicator>> make_fake_group(
    int n, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// True when this build can create NcclComm (a CUDA build that found NCCL).
bool built_with_nccl();

// The communicator for this process: SingleProcessComm for a world of one; NcclComm for a world
// > 1 on `device` (CUDA, index = the local rank's GPU). Errors: Unsupported for a multi-process
// world on the CPU or in a build without NCCL; Usage when `device` is not a CUDA device that
// exists; Internal when the rendezvous with rank 0 times out (naming the address and the ranks).
std::unique_ptr<Communicator> make_communicator(const ProcessGroupEnv& env, Device device);

// The device a rank trains on: cuda:<local_rank> when CUDA is available (Usage error when the
// local rank has no GPU), else the CPU.
Device device_for_rank(const ProcessGroupEnv& env);

}  // namespace seqmix::dist
