// SingleProcessComm, the in-process FakeComm group (tests), and the communicator factory.
// FakeComm protocol per collective: every rank publishes a pointer to its tensor and a signature
// of the call, waits at a barrier, checks that all signatures agree (every rank raises the same
// error when they do not, so none is left waiting), computes the result from all slots in rank
// order 0..N-1 into a temporary, waits at a second barrier (after which nobody reads the slots),
// and writes its own tensor. Identical arithmetic on every rank makes the results bitwise equal.
#include "train/distributed/communicator.h"

#include <condition_variable>
#include <mutex>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/ops/elementwise.h"
#include "train/distributed/nccl_comm.h"

namespace seqmix::dist {

const char* reduce_op_name(ReduceOp op) {
  return op == ReduceOp::Sum ? "sum" : "avg";
}

namespace {
void check_collective_tensor(const char* what, const Tensor& t) {
  SEQMIX_CHECK(t.defined(), "{}: undefined tensor", what);
  SEQMIX_CHECK(t.is_contiguous(), "{}: the tensor must be contiguous, got strides {} for {}", what,
               t.strides(), t.str());
}
}  // namespace

void SingleProcessComm::all_reduce(Tensor& t, ReduceOp op) {
  check_collective_tensor("all_reduce", t);
  (void)op;  // the sum and the average over one rank are the tensor itself
}

void SingleProcessComm::broadcast(Tensor& t, int root) {
  check_collective_tensor("broadcast", t);
  SEQMIX_CHECK(root == 0, "broadcast: root {} in a world of size 1", root);
}

// ---------------------------------------------------------------------------------------------
// FakeComm
// ---------------------------------------------------------------------------------------------

namespace {

struct FakeGroup {
  FakeGroup(int n, std::chrono::milliseconds t)
      : size(n),
        timeout(t),
        arrived(size_t(n), false),
        slots(size_t(n)),
        flags(size_t(n)),
        sigs(size_t(n)) {}

  // Returns when all ranks have arrived; raises Internal after `timeout`, naming the absent ranks.
  void barrier(int rank, const std::string& what) {
    std::unique_lock<std::mutex> lock(mu);
    const int64_t gen = generation;
    arrived[size_t(rank)] = true;
    if (++count == size) {
      count = 0;
      std::fill(arrived.begin(), arrived.end(), false);
      ++generation;
      cv.notify_all();
      return;
    }
    if (!cv.wait_for(lock, timeout, [&] { return generation != gen; })) {
      std::string missing;
      for (int r = 0; r < size; ++r)
        if (!arrived[size_t(r)]) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      SEQMIX_THROW(Internal, "FakeComm: rank {} waited {} ms in {}; rank(s) {} never arrived", rank,
                   timeout.count(), what, missing);
    }
  }

  // Every rank raises the same error when the ranks' calls differ.
  void check_signatures(const std::string& what) {
    for (int r = 1; r < size; ++r)
      SEQMIX_CHECK(sigs[size_t(r)] == sigs[0],
                   "FakeComm: mismatched collectives in {}: rank 0 called {}, rank {} called {}",
                   what, sigs[0], r, sigs[size_t(r)]);
  }

  const int size;
  const std::chrono::milliseconds timeout;
  std::mutex mu;
  std::condition_variable cv;
  int64_t generation = 0;
  int count = 0;
  std::vector<bool> arrived;
  std::vector<const Tensor*> slots;
  std::vector<bool> flags;
  std::vector<std::string> sigs;
};

class FakeComm final : public Communicator {
 public:
  FakeComm(std::shared_ptr<FakeGroup> g, int rank) : g_(std::move(g)), rank_(rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return g_->size; }
  int local_rank() const override { return rank_; }
  const char* backend() const override { return "fake"; }

  void all_reduce(Tensor& t, ReduceOp op) override {
    check_collective_tensor("all_reduce", t);
    if (op == ReduceOp::Avg)
      SEQMIX_CHECK(is_floating(t.dtype()), "all_reduce(avg) needs a floating tensor, got {}",
                   t.str());
    publish(&t, fmt::format("all_reduce({}, {})", t.str(), reduce_op_name(op)));
    g_->barrier(rank_, "all_reduce");
    g_->check_signatures("all_reduce");
    Tensor acc;
    if (is_floating(t.dtype())) {
      acc = g_->slots[0]->clone();
      for (int r = 1; r < g_->size; ++r) ops::add_(acc, *g_->slots[size_t(r)]);
      if (op == ReduceOp::Avg) ops::mul_(acc, 1.0 / double(g_->size));
    } else {
      // Integer sums on the host in i64 (the tensor ops are floating-only).
      std::vector<int64_t> sum(size_t(t.numel()), 0);
      for (int r = 0; r < g_->size; ++r) {
        const std::vector<int64_t> x = g_->slots[size_t(r)]->to_vector<int64_t>();
        for (size_t i = 0; i < sum.size(); ++i) sum[i] += x[i];
      }
      acc = Tensor::from_vector(sum, t.shape(), t.dtype(), t.device());
    }
    g_->barrier(rank_, "all_reduce");
    t.copy_(acc);
  }

  void broadcast(Tensor& t, int root) override {
    check_collective_tensor("broadcast", t);
    SEQMIX_CHECK(root >= 0 && root < g_->size, "broadcast: root {} outside world size {}", root,
                 g_->size);
    publish(&t, fmt::format("broadcast({}, root {})", t.str(), root));
    g_->barrier(rank_, "broadcast");
    g_->check_signatures("broadcast");
    Tensor value = rank_ == root ? Tensor() : g_->slots[size_t(root)]->clone();
    g_->barrier(rank_, "broadcast");
    if (value.defined()) t.copy_(value);
  }

  void barrier() override {
    publish(nullptr, "barrier");
    g_->barrier(rank_, "barrier");
    g_->check_signatures("barrier");
    g_->barrier(rank_, "barrier");
  }

  bool all_reduce_flag(bool any) override {
    {
      std::lock_guard<std::mutex> lock(g_->mu);
      g_->flags[size_t(rank_)] = any;
    }
    publish(nullptr, "all_reduce_flag");
    g_->barrier(rank_, "all_reduce_flag");
    g_->check_signatures("all_reduce_flag");
    bool result = false;
    {
      std::lock_guard<std::mutex> lock(g_->mu);
      for (bool f : g_->flags) result = result || f;
    }
    g_->barrier(rank_, "all_reduce_flag");
    return result;
  }

 private:
  void publish(const Tensor* t, std::string sig) {
    std::lock_guard<std::mutex> lock(g_->mu);
    g_->slots[size_t(rank_)] = t;
    g_->sigs[size_t(rank_)] = std::move(sig);
  }

  std::shared_ptr<FakeGroup> g_;
  int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_fake_group(int n,
                                                           std::chrono::milliseconds timeout) {
  SEQMIX_CHECK(n >= 1, "make_fake_group: world size {} must be at least 1", n);
  auto g = std::make_shared<FakeGroup>(n, timeout);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < n; ++r) out.push_back(std::make_unique<FakeComm>(g, r));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Factory
// ---------------------------------------------------------------------------------------------

bool built_with_nccl() {
  return SEQMIX_WITH_NCCL != 0;
}

Device device_for_rank(const ProcessGroupEnv& env) {
  if (!cuda::is_available()) return Device::cpu();
  const int n = cuda::device_count();
  SEQMIX_CHECK_KIND(Usage, env.local_rank < n,
                    "local rank {} needs GPU {}, but only {} CUDA device(s) are visible (check "
                    "CUDA_VISIBLE_DEVICES and the number of processes per node)",
                    env.local_rank, env.local_rank, n);
  return Device::cuda(env.local_rank);
}

std::unique_ptr<Communicator> make_communicator(const ProcessGroupEnv& env, Device device) {
  if (!env.distributed()) return std::make_unique<SingleProcessComm>(env.local_rank);
  SEQMIX_CHECK_KIND(Unsupported, device.is_cuda(),
                    "data-parallel training needs one CUDA device per rank (world size {}), but "
                    "rank {} runs on {}",
                    env.world_size, env.rank, device.str());
  SEQMIX_CHECK_KIND(Unsupported, built_with_nccl(),
                    "data-parallel training (world size {}) needs NCCL; this build has none "
                    "(rebuild with the CUDA preset on a machine with NCCL installed)",
                    env.world_size);
  SEQMIX_CHECK_KIND(Usage, device.index < cuda::device_count(),
                    "rank {}: device {} does not exist ({} visible)", env.rank, device.str(),
                    cuda::device_count());
#if SEQMIX_WITH_NCCL
  return make_nccl_comm(env, device.index);
#else
  SEQMIX_THROW(Unsupported, "built without NCCL");
#endif
}

}  // namespace seqmix::dist
