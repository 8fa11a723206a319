// NcclComm and the GradReducer on 2 GPUs of one machine (label multigpu; skips without NCCL or
// with fewer than 2 GPUs). Both ranks live in this process, one thread each, and meet through the
// real TCP rendezvous and ncclCommInitRank, so the whole start-up path runs.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "autograd/functions.h"
#include "core/cuda/runtime.h"
#include "core/ops/elementwise.h"
#include "layers/language_model.h"
#include "tests/testing/testing.h"
#include "train/distributed/communicator.h"
#include "train/distributed/reducer.h"

using namespace seqmix;
using namespace seqmix::dist;

namespace {

constexpr int kWorld = 2;

#define SEQMIX_REQUIRE_TWO_GPUS()                                     \
  do {                                                                \
    SEQMIX_REQUIRE_CUDA();                                            \
    if (!built_with_nccl()) GTEST_SKIP() << "this build has no NCCL"; \
    if (cuda::device_count() < kWorld)                                \
      GTEST_SKIP() << "needs 2 GPUs, found " << cuda::device_count(); \
  } while (0)

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

// Runs fn(rank, comm) on two threads with NCCL communicators on cuda:0 and cuda:1.
std::vector<std::string> run_nccl_ranks(const std::function<void(int, Communicator&)>& fn) {
  const int port = free_port();
  std::vector<std::string> errors(static_cast<size_t>(kWorld));
  std::vector<std::thread> ts;
  for (int r = 0; r < kWorld; ++r)
    ts.emplace_back([&, r] {
      try {
        cuda::set_device(r);
        ProcessGroupEnv env;
        env.rank = env.local_rank = r;
        env.world_size = env.local_world_size = kWorld;
        env.master_port = port;
        env.timeout_s = 60;
        std::unique_ptr<Communicator> comm = make_communicator(env, Device::cuda(r));
        EXPECT_STREQ(comm->backend(), "nccl");
        fn(r, *comm);
        cuda::synchronize(r);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (std::thread& t : ts) t.join();
  return errors;
}

}  // namespace

TEST(NcclComm, AllReduceBroadcastFlagBarrier) {
  SEQMIX_REQUIRE_TWO_GPUS();
  SEQMIX_TRACE_SEED();
  const Shape shape{3, 1001};
  std::vector<Tensor> in, in_b;
  for (int r = 0; r < kWorld; ++r) {
    in.push_back(tu::randn(shape, DType::F32));
    in_b.push_back(tu::randn(shape, DType::F32));
  }
  std::vector<Tensor> sum(kWorld), avg(kWorld), bf(kWorld), bc(kWorld);
  std::vector<int> flag(kWorld), none(kWorld);
  const std::vector<std::string> errors = run_nccl_ranks([&](int r, Communicator& c) {
    const Device d = Device::cuda(r);
    Tensor s = in[size_t(r)].to(d), a = in[size_t(r)].to(d), b = in[size_t(r)].to(d, DType::BF16);
    Tensor x = in_b[size_t(r)].to(d);
    c.all_reduce(s, ReduceOp::Sum);
    c.all_reduce(a, ReduceOp::Avg);
    c.all_reduce(b, ReduceOp::Sum);
    c.broadcast(x, 1);
    flag[size_t(r)] = c.all_reduce_flag(r == 0);
    none[size_t(r)] = c.all_reduce_flag(false);
    c.barrier();
    sum[size_t(r)] = s.cpu();
    avg[size_t(r)] = a.cpu();
    bf[size_t(r)] = b.cpu().to(DType::F32);
    bc[size_t(r)] = x.cpu();
  });
  for (const std::string& e : errors) ASSERT_EQ(e, "");
  Tensor want = in[0].clone();
  ops::add_(want, in[1]);
  Tensor want_avg = want.clone();
  ops::mul_(want_avg, 0.5);
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_TRUE(tu::close(sum[size_t(r)], want, 1e-6)) << r;
    EXPECT_TRUE(tu::close(avg[size_t(r)], want_avg, 1e-6)) << r;
    EXPECT_TRUE(tu::close(bf[size_t(r)], want, 1e-2)) << r;
    EXPECT_TRUE(tu::bitwise_equal(bc[size_t(r)], in_b[1])) << r;
    EXPECT_EQ(flag[size_t(r)], 1);
    EXPECT_EQ(none[size_t(r)], 0);
  }
  EXPECT_TRUE(tu::bitwise_equal(sum[0], sum[1]));
}

TEST(NcclComm, GradReducerMatchesTheConcatenatedBatch) {
  SEQMIX_REQUIRE_TWO_GPUS();
  SEQMIX_TRACE_SEED();
  nn::LmConfig cfg;
  cfg.vocab_size = 64;
  cfg.d_model = 64;
  cfg.layers.assign(2, nn::MixerSpec{"attention", {{"n_heads", "2"}}});
  cfg.mlp_hidden = 128;
  cfg.init_seed = tu::next_seed();
  const Tensor tokens = tu::randint({4, 33}, 0, cfg.vocab_size);
  const Tensor targets = tu::randint({4, 33}, 0, cfg.vocab_size);
  const nn::ForwardContext ctx{DType::F32, true, nullptr};

  // Reference: one process, the whole batch, on cuda:0.
  std::vector<Tensor> ref;
  {
    cuda::DeviceGuard g(0);
    nn::LanguageModel m(cfg);
    m.to(Device::cuda(0));
    m.loss(tokens.to(Device::cuda(0)), targets.to(Device::cuda(0)), ctx).backward();
    for (const auto& [n, p] : m.named_parameters()) ref.push_back(p.grad().cpu());
  }
  for (double mib : {0.0, 0.01, 100.0}) {
    SCOPED_TRACE("bucket " + std::to_string(mib) + " MiB");
    std::vector<std::vector<Tensor>> got(kWorld);
    std::vector<int64_t> hooks(kWorld), buckets(kWorld);
    const std::vector<std::string> errors = run_nccl_ranks([&](int r, Communicator& c) {
      const Device d = Device::cuda(r);
      nn::LanguageModel m(cfg);
      m.to(d);
      GradReducer red(m.named_parameters(), c, mib);
      for (int step = 0; step < 2; ++step) {
        red.zero_grad();
        const Tensor tk = tokens.narrow(0, 2 * r, 2).contiguous().to(d);
        const Tensor tg = targets.narrow(0, 2 * r, 2).contiguous().to(d);
        m.loss(tk, tg, ctx).backward();
        red.finish();
      }
      for (const Tensor& g : red.grads()) got[size_t(r)].push_back(g.cpu());
      hooks[size_t(r)] = red.reduced_by_hooks();
      buckets[size_t(r)] = int64_t(red.buckets().size());
    });
    for (const std::string& e : errors) ASSERT_EQ(e, "");
    for (int r = 0; r < kWorld; ++r) {
      ASSERT_EQ(got[size_t(r)].size(), ref.size());
      for (size_t i = 0; i < ref.size(); ++i) {
        EXPECT_TRUE(tu::close(got[size_t(r)][i], ref[i], 1e-4)) << "rank " << r << " param " << i;
        EXPECT_TRUE(tu::bitwise_equal(got[size_t(r)][i], got[0][i])) << "rank " << r;
      }
      EXPECT_EQ(hooks[size_t(r)], buckets[size_t(r)]);
    }
  }
}
