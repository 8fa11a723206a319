// train/distributed on the CPU: FakeComm collectives across 1-4 threads, SingleProcessComm, the TCP
// rendezvous (incl. a rank that never arrives), process-group detection for every launcher, and
// the GradReducer on a replicated tiny LanguageModel: averaged gradients equal the single-process
// gradients of the concatenated batch, for several bucket layouts, with gradient accumulation
// and with parameters unused on some ranks.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <thread>

#include "autograd/functions.h"
#include "core/ops/elementwise.h"
#include "layers/language_model.h"
#include "tests/testing/testing.h"
#include "train/distributed/communicator.h"
#include "train/distributed/process_group.h"
#include "train/distributed/reducer.h"

using namespace seqmix;
using namespace seqmix::dist;

namespace {

// Runs fn(rank) on `n` threads; returns each rank's error message ("" when it returned normally).
std::vector<std::string> run_ranks(int n, const std::function<void(int)>& fn) {
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> ts;
  for (int r = 0; r < n; ++r)
    ts.emplace_back([&, r] {
      try {
        fn(r);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (std::thread& t : ts) t.join();
  return errors;
}

void expect_no_errors(const std::vector<std::string>& errors) {
  for (size_t r = 0; r < errors.size(); ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

// The FakeComm result computed independently: rank-order sum, then * 1/N.
Tensor rank_order_reduce(const std::vector<Tensor>& xs, ReduceOp op) {
  if (!is_floating(xs[0].dtype())) {
    std::vector<int64_t> sum(size_t(xs[0].numel()), 0);
    for (const Tensor& x : xs) {
      const std::vector<int64_t> v = x.to_vector<int64_t>();
      for (size_t i = 0; i < v.size(); ++i) sum[i] += v[i];
    }
    return Tensor::from_vector(sum, xs[0].shape(), xs[0].dtype());
  }
  Tensor acc = xs[0].clone();
  for (size_t r = 1; r < xs.size(); ++r) ops::add_(acc, xs[r]);
  if (op == ReduceOp::Avg) ops::mul_(acc, 1.0 / double(xs.size()));
  return acc;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Communicators
// ---------------------------------------------------------------------------------------------

TEST(FakeComm, AllReduceBroadcastFlagBarrierAcrossOneToFourRanks) {
  SEQMIX_TRACE_SEED();
  for (int n = 1; n <= 4; ++n) {
    for (const Shape& shape : {Shape({1}), Shape({7}), Shape({3, 5}), Shape({2, 3, 17})}) {
      SCOPED_TRACE("world " + std::to_string(n) + " shape " + shape.str());
      auto comms = make_fake_group(n);
      std::vector<Tensor> in_sum, in_avg, in_b, in_i;
      for (int r = 0; r < n; ++r) {
        in_sum.push_back(tu::randn(shape, DType::F32));
        in_avg.push_back(tu::randn(shape, DType::F32));
        in_b.push_back(tu::randn(shape, DType::F32));
        in_i.push_back(tu::randint(shape, -1000, 1000, DType::I64));
      }
      std::vector<Tensor> out_sum(static_cast<size_t>(n)), out_avg(static_cast<size_t>(n)),
          out_b(static_cast<size_t>(n)), out_i(static_cast<size_t>(n));
      std::vector<int> flags_one(static_cast<size_t>(n)), flags_none(static_cast<size_t>(n));
      std::atomic<int> before{0};
      std::vector<int> seen_after(static_cast<size_t>(n));
      const int root = n - 1;
      expect_no_errors(run_ranks(n, [&](int r) {
        Communicator& c = *comms[size_t(r)];
        ASSERT_EQ(c.rank(), r);
        ASSERT_EQ(c.world_size(), n);
        out_sum[size_t(r)] = in_sum[size_t(r)].clone();
        c.all_reduce(out_sum[size_t(r)], ReduceOp::Sum);
        out_avg[size_t(r)] = in_avg[size_t(r)].clone();
        c.all_reduce(out_avg[size_t(r)], ReduceOp::Avg);
        out_i[size_t(r)] = in_i[size_t(r)].clone();
        c.all_reduce(out_i[size_t(r)], ReduceOp::Sum);
        out_b[size_t(r)] = in_b[size_t(r)].clone();
        c.broadcast(out_b[size_t(r)], root);
        flags_one[size_t(r)] = c.all_reduce_flag(r == n / 2);
        flags_none[size_t(r)] = c.all_reduce_flag(false);
        ++before;
        c.barrier();
        seen_after[size_t(r)] = before.load();
      }));
      const Tensor want_sum = rank_order_reduce(in_sum, ReduceOp::Sum);
      const Tensor want_avg = rank_order_reduce(in_avg, ReduceOp::Avg);
      const Tensor want_i = rank_order_reduce(in_i, ReduceOp::Sum);
      for (int r = 0; r < n; ++r) {
        // Bitwise: fixed rank-order summation, the same arithmetic on every rank.
        EXPECT_TRUE(tu::bitwise_equal(out_sum[size_t(r)], want_sum)) << "rank " << r;
        EXPECT_TRUE(tu::bitwise_equal(out_avg[size_t(r)], want_avg)) << "rank " << r;
        EXPECT_TRUE(tu::bitwise_equal(out_i[size_t(r)], want_i)) << "rank " << r;
        EXPECT_TRUE(tu::bitwise_equal(out_b[size_t(r)], in_b[size_t(root)])) << "rank " << r;
        EXPECT_EQ(flags_one[size_t(r)], 1) << "rank " << r;
        EXPECT_EQ(flags_none[size_t(r)], 0) << "rank " << r;
        EXPECT_EQ(seen_after[size_t(r)], n) << "rank " << r << " left the barrier early";
      }
      // The sum is also right in value (not just self-consistent): compare with an f64 sum.
      Tensor want64 = Tensor::zeros(shape, DType::F64);
      for (const Tensor& x : in_sum) ops::add_(want64, x.to(DType::F64));
      EXPECT_TRUE(tu::close(out_sum[0].to(DType::F64), want64, 1e-6));
    }
  }
}

TEST(FakeComm, MismatchedCallsFailOnEveryRankAndAbsentRanksTimeOut) {
  auto comms = make_fake_group(2);
  std::vector<std::string> errors = run_ranks(2, [&](int r) {
    Tensor t = Tensor::zeros({r == 0 ? 3 : 4}, DType::F32);
    comms[size_t(r)]->all_reduce(t, ReduceOp::Sum);
  });
  for (const std::string& e : errors)
    EXPECT_NE(e.find("mismatched collectives"), std::string::npos) << e;

  auto late = make_fake_group(3, std::chrono::milliseconds(200));
  errors = run_ranks(2, [&](int r) { late[size_t(r)]->barrier(); });  // rank 2 never comes
  for (const std::string& e : errors) {
    EXPECT_NE(e.find("rank(s) 2 never arrived"), std::string::npos) << e;
  }
  Tensor nc = Tensor::zeros({4, 4}, DType::F32).transpose(0, 1);
  SingleProcessComm single;
  EXPECT_THROW(single.all_reduce(nc, ReduceOp::Sum), Error);  // not contiguous
}

TEST(SingleProcessComm, IsTheIdentity) {
  SingleProcessComm c(3);
  EXPECT_EQ(c.world_size(), 1);
  EXPECT_EQ(c.local_rank(), 3);
  const Tensor x = tu::randn({5, 3}, DType::F32);
  Tensor y = x.clone();
  c.all_reduce(y, ReduceOp::Avg);
  EXPECT_TRUE(tu::bitwise_equal(y, x));
  c.broadcast(y, 0);
  EXPECT_TRUE(tu::bitwise_equal(y, x));
  EXPECT_THROW(c.broadcast(y, 1), Error);
  EXPECT_TRUE(c.all_reduce_flag(true));
  EXPECT_FALSE(c.all_reduce_flag(false));
}

TEST(MakeCommunicator, SingleProcessAndCpuWorldsOfSeveral) {
  ProcessGroupEnv one;
  EXPECT_STREQ(make_communicator(one, Device::cpu())->backend(), "single");
  ProcessGroupEnv two;
  two.world_size = 2;
  two.local_world_size = 2;
  try {
    make_communicator(two, Device::cpu());
    ADD_FAILURE() << "a CPU world of 2 must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(e.message().find("world size 2"), std::string::npos) << e.message();
  }
  EXPECT_EQ(device_for_rank(one), cuda::is_available() ? Device::cuda(0) : Device::cpu());
}

// ---------------------------------------------------------------------------------------------
// Rendezvous
// ---------------------------------------------------------------------------------------------

namespace {
// A port that was free a moment ago.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}
}  // namespace

TEST(Rendezvous, EveryRankReceivesRankZerosPayload) {
  const int port = free_port();
  const int n = 4;
  std::string id(128, '\0');
  for (size_t i = 0; i < id.size(); ++i) id[i] = char((tu::next_seed() + i * 7) & 0xFF);
  std::vector<std::string> got(static_cast<size_t>(n));
  expect_no_errors(run_ranks(n, [&](int r) {
    got[size_t(r)] = rendezvous_broadcast("127.0.0.1", port, r, n, r == 0 ? id : "junk", 20);
  }));
  for (int r = 0; r < n; ++r) EXPECT_EQ(got[size_t(r)], id) << "rank " << r;
}

TEST(Rendezvous, MissingRankAndUnreachableRootAreNamed) {
  const int port = free_port();
  const std::vector<std::string> errors = run_ranks(2, [&](int r) {
    rendezvous_broadcast("127.0.0.1", port, r, 3, "id", 1.0);  // rank 2 never starts
  });
  EXPECT_NE(errors[0].find("rank(s) 2 of world size 3 did not arrive"), std::string::npos)
      << errors[0];
  EXPECT_NE(errors[0].find("127.0.0.1:" + std::to_string(port)), std::string::npos) << errors[0];
  EXPECT_NE(errors[1], "");  // rank 1 is told that rank 0 never answered

  const int port2 = free_port();
  try {
    rendezvous_broadcast("127.0.0.1", port2, 1, 2, "", 0.5);
    ADD_FAILURE() << "no rank 0: must time out";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Internal);
    EXPECT_NE(
        e.message().find("rank 1 could not reach rank 0 at 127.0.0.1:" + std::to_string(port2)),
        std::string::npos)
        << e.message();
  }
}

TEST(Rendezvous, PortInUseIsAUsageError) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  const int port = ntohs(sa.sin_port);
  try {
    rendezvous_broadcast("127.0.0.1", port, 0, 2, "id", 0.5);
    ADD_FAILURE() << "the port is taken";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find(std::to_string(port)), std::string::npos) << e.message();
  }
  ::close(fd);
}

// ---------------------------------------------------------------------------------------------
// Process-group detection
// ---------------------------------------------------------------------------------------------

namespace {
using Env = std::map<std::string, std::string>;
ProcessGroupEnv detect(const Env& vars) {
  return detect_process_group([&](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end() || it->second.empty()) return std::nullopt;
    return it->second;
  });
}
// The Usage error message of detect(vars); fails when it does not raise one.
std::string usage_error(const Env& vars) {
  try {
    detect(vars);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.message();
    return e.message();
  }
  ADD_FAILURE() << "expected a usage error";
  return "";
}
}  // namespace

TEST(DetectProcessGroup, NoLauncherIsASingleProcess) {
  const ProcessGroupEnv pg = detect({{"PATH", "/usr/bin"}});
  EXPECT_EQ(pg.world_size, 1);
  EXPECT_EQ(pg.rank, 0);
  EXPECT_EQ(pg.launcher, "none");
  EXPECT_FALSE(pg.distributed());
}

TEST(DetectProcessGroup, TorchrunStyle) {
  const ProcessGroupEnv pg = detect({{"RANK", "5"},
                                     {"WORLD_SIZE", "8"},
                                     {"LOCAL_RANK", "1"},
                                     {"LOCAL_WORLD_SIZE", "4"},
                                     {"MASTER_ADDR", "node07"},
                                     {"MASTER_PORT", "1234"},
                                     {"SEQMIX_DIST_TIMEOUT", "17"},
                                     {"SLURM_PROCID", "0"},
                                     {"SLURM_NTASKS", "2"}});  // RANK wins over Slurm
  EXPECT_EQ(pg.launcher, "env");
  EXPECT_EQ(pg.rank, 5);
  EXPECT_EQ(pg.world_size, 8);
  EXPECT_EQ(pg.local_rank, 1);
  EXPECT_EQ(pg.local_world_size, 4);
  EXPECT_EQ(pg.master_addr, "node07");
  EXPECT_EQ(pg.master_port, 1234);
  EXPECT_EQ(pg.timeout_s, 17);
  EXPECT_TRUE(pg.distributed());

  const Env ok{{"RANK", "1"},
               {"WORLD_SIZE", "2"},
               {"LOCAL_RANK", "1"},
               {"MASTER_PORT", "9"},
               {"MASTER_ADDR", "127.0.0.1"}};
  EXPECT_EQ(detect(ok).local_world_size, 2);
  auto without = [&](const std::string& k) {
    Env e = ok;
    e.erase(k);
    return e;
  };
  auto with = [&](const std::string& k, const std::string& v) {
    Env e = ok;
    e[k] = v;
    return e;
  };
  EXPECT_NE(usage_error(without("MASTER_PORT")).find("MASTER_PORT"), std::string::npos);
  EXPECT_NE(usage_error(without("MASTER_ADDR")).find("MASTER_ADDR"), std::string::npos);
  EXPECT_NE(usage_error(without("LOCAL_RANK")).find("LOCAL_RANK"), std::string::npos);
  EXPECT_NE(usage_error(without("WORLD_SIZE")).find("WORLD_SIZE"), std::string::npos);
  EXPECT_NE(usage_error(without("RANK")).find("RANK"), std::string::npos);
  EXPECT_NE(usage_error(with("RANK", "2")).find("RANK=2 is not below WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(usage_error(with("RANK", "one")).find("RANK='one'"), std::string::npos);
  EXPECT_NE(usage_error(with("WORLD_SIZE", "0")).find("WORLD_SIZE=0"), std::string::npos);
  EXPECT_NE(usage_error(with("LOCAL_RANK", "2")).find("LOCAL_RANK=2"), std::string::npos);
  EXPECT_NE(usage_error(with("MASTER_PORT", "70000")).find("MASTER_PORT=70000"), std::string::npos);
  EXPECT_NE(usage_error(with("SEQMIX_DIST_TIMEOUT", "0")).find("SEQMIX_DIST_TIMEOUT"),
            std::string::npos);
  // A world of one needs no rendezvous address.
  const ProcessGroupEnv single = detect({{"RANK", "0"}, {"WORLD_SIZE", "1"}});
  EXPECT_FALSE(single.distributed());
  EXPECT_EQ(single.master_port, kDefaultMasterPort);
}

TEST(DetectProcessGroup, Slurm) {
  ProcessGroupEnv pg = detect({{"SLURM_PROCID", "3"},
                               {"SLURM_NTASKS", "4"},
                               {"SLURM_LOCALID", "3"},
                               {"SLURM_NNODES", "1"}});
  EXPECT_EQ(pg.launcher, "slurm");
  EXPECT_EQ(pg.rank, 3);
  EXPECT_EQ(pg.world_size, 4);
  EXPECT_EQ(pg.local_rank, 3);
  EXPECT_EQ(pg.master_addr, "127.0.0.1");  // one node: the local default
  EXPECT_EQ(pg.master_port, kDefaultMasterPort);

  const Env two_nodes{{"SLURM_PROCID", "5"},
                      {"SLURM_NTASKS", "8"},
                      {"SLURM_LOCALID", "1"},
                      {"SLURM_NNODES", "2"},
                      {"SLURM_NTASKS_PER_NODE", "4"}};
  EXPECT_NE(usage_error(two_nodes).find("MASTER_ADDR"), std::string::npos);
  Env given = two_nodes;
  given["MASTER_ADDR"] = "gpu-a01";
  given["MASTER_PORT"] = "29600";
  pg = detect(given);
  EXPECT_EQ(pg.master_addr, "gpu-a01");
  EXPECT_EQ(pg.master_port, 29600);
  EXPECT_EQ(pg.local_world_size, 4);
  given["SLURM_NTASKS_PER_NODE"] = "4(x2)";  // Slurm's compressed form is tolerated
  EXPECT_EQ(detect(given).local_world_size, 8);
  Env bad = given;
  bad["SLURM_PROCID"] = "8";
  EXPECT_NE(usage_error(bad).find("SLURM_PROCID=8"), std::string::npos);
  bad = given;
  bad["SLURM_LOCALID"] = "x";
  EXPECT_NE(usage_error(bad).find("SLURM_LOCALID"), std::string::npos);
}

TEST(DetectProcessGroup, Mpirun) {
  ProcessGroupEnv pg = detect({{"OMPI_COMM_WORLD_RANK", "1"},
                               {"OMPI_COMM_WORLD_SIZE", "2"},
                               {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                               {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
  EXPECT_EQ(pg.launcher, "mpirun");
  EXPECT_EQ(pg.rank, 1);
  EXPECT_EQ(pg.world_size, 2);
  EXPECT_EQ(pg.local_rank, 1);
  EXPECT_EQ(pg.master_addr, "127.0.0.1");
  const Env multi{{"OMPI_COMM_WORLD_RANK", "3"},
                  {"OMPI_COMM_WORLD_SIZE", "4"},
                  {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                  {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}};
  EXPECT_NE(usage_error(multi).find("MASTER_ADDR"), std::string::npos);
  EXPECT_NE(usage_error({{"OMPI_COMM_WORLD_RANK", "0"}}).find("OMPI_COMM_WORLD_SIZE"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// GradReducer
// ---------------------------------------------------------------------------------------------

namespace {

nn::LmConfig tiny_lm(uint64_t seed) {
  nn::LmConfig c;
  c.vocab_size = 23;
  c.d_model = 16;
  c.layers.assign(2, nn::MixerSpec{"attention", {{"n_heads", "2"}}});
  c.mlp_hidden = 32;
  c.tie_embeddings = false;
  c.init_seed = seed;
  return c;
}

struct Batch {
  Tensor tokens, targets;
  Batch rows(int64_t start, int64_t n) const {
    return Batch{tokens.narrow(0, start, n).contiguous(), targets.narrow(0, start, n).contiguous()};
  }
};

Batch random_batch(int64_t rows, int64_t t, int64_t vocab) {
  return Batch{tu::randint({rows, t}, 0, vocab), tu::randint({rows, t}, 0, vocab)};
}

// Gradients (registration order) of the mean loss over `micro` micro-batches of one model: the
// single-process reference.
std::vector<Tensor> reference_grads(const nn::LmConfig& cfg, const std::vector<Batch>& micro) {
  nn::LanguageModel m(cfg);
  for (const Batch& b : micro) {
    Variable loss = m.loss(b.tokens, b.targets, nn::ForwardContext{});
    mul(loss, 1.0 / double(micro.size())).backward();
  }
  std::vector<Tensor> g;
  for (const auto& [n, p] : m.named_parameters()) g.push_back(p.grad().clone());
  return g;
}

struct ReducerRun {
  std::vector<std::vector<Tensor>> grads;  // [rank][param]
  std::vector<std::vector<BucketInfo>> buckets;
  std::vector<int64_t> by_hooks, by_finish;
  std::vector<std::string> errors;
};

// Every rank: its own replica (identical init), its rows of each micro-batch, reducer enabled on
// the last micro-step only. `extra(rank, model)` may add a term to the loss (unused parameters).
ReducerRun run_reducer(const nn::LmConfig& cfg, int n, const std::vector<Batch>& micro,
                       double bucket_mib, int steps = 1,
                       const std::function<Variable(int, const Variable&)>& extra = {},
                       std::vector<Variable>* extra_params = nullptr) {
  auto comms = make_fake_group(n, std::chrono::seconds(30));
  ReducerRun out;
  out.grads.resize(static_cast<size_t>(n));
  out.buckets.resize(static_cast<size_t>(n));
  out.by_hooks.resize(static_cast<size_t>(n));
  out.by_finish.resize(static_cast<size_t>(n));
  out.errors = run_ranks(n, [&](int r) {
    nn::LanguageModel m(cfg);
    auto params = m.named_parameters();
    if (extra_params != nullptr)  // registered first: they land in the last bucket
      params.insert(params.begin(), {"extra", (*extra_params)[size_t(r)]});
    GradReducer red(params, *comms[size_t(r)], bucket_mib);
    for (int step = 0; step < steps; ++step) {
      red.zero_grad();
      for (size_t k = 0; k < micro.size(); ++k) {
        red.set_enabled(k + 1 == micro.size());
        const int64_t rows = micro[k].tokens.size(0) / n;
        const Batch b = micro[k].rows(r * rows, rows);
        Variable loss = m.loss(b.tokens, b.targets, nn::ForwardContext{});
        if (extra) loss = extra(r, loss);
        mul(loss, 1.0 / double(micro.size())).backward();
      }
      red.finish();
    }
    // grads() are the parameters' own gradient buffers.
    for (size_t i = 0; i < params.size(); ++i)
      EXPECT_TRUE(params[i].second.grad().is_same(red.grads()[i])) << params[i].first;
    for (const Tensor& g : red.grads()) out.grads[size_t(r)].push_back(g.clone());
    out.buckets[size_t(r)] = red.buckets();
    out.by_hooks[size_t(r)] = red.reduced_by_hooks();
    out.by_finish[size_t(r)] = red.reduced_by_finish();
  });
  return out;
}

void expect_matches_reference(const ReducerRun& run, const std::vector<Tensor>& ref,
                              const std::vector<std::string>& names) {
  for (size_t r = 0; r < run.grads.size(); ++r) {
    ASSERT_EQ(run.grads[r].size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_TRUE(tu::close(run.grads[r][i], ref[i], 1e-5)) << "rank " << r << " " << names[i];
      // Every rank holds bitwise the same averaged gradient.
      EXPECT_TRUE(tu::bitwise_equal(run.grads[r][i], run.grads[0][i]))
          << "rank " << r << " " << names[i];
    }
  }
}

std::vector<std::string> param_names(const nn::LmConfig& cfg) {
  nn::LanguageModel m(cfg);
  std::vector<std::string> out;
  for (const auto& [n, p] : m.named_parameters()) out.push_back(n);
  return out;
}

}  // namespace

TEST(GradReducer, AveragedGradientsEqualTheConcatenatedBatchForEveryBucketLayout) {
  SEQMIX_TRACE_SEED();
  const nn::LmConfig cfg = tiny_lm(tu::next_seed());
  const std::vector<std::string> names = param_names(cfg);
  const int64_t n_params = int64_t(names.size());
  for (int n : {1, 2, 3, 4}) {
    const Batch all = random_batch(2 * n, 9, cfg.vocab_size);
    const std::vector<Tensor> ref = reference_grads(cfg, {all});
    // Bitwise target: each rank's local gradients computed serially, averaged in rank order
    // exactly as FakeComm does (the reducer must add no arithmetic of its own).
    std::vector<std::vector<Tensor>> local;
    for (int r = 0; r < n; ++r) local.push_back(reference_grads(cfg, {all.rows(2 * r, 2)}));
    std::vector<Tensor> bitwise_ref;
    for (size_t i = 0; i < ref.size(); ++i) {
      std::vector<Tensor> per_rank;
      for (int r = 0; r < n; ++r) per_rank.push_back(local[size_t(r)][i]);
      bitwise_ref.push_back(rank_order_reduce(per_rank, ReduceOp::Avg));
    }
    // 0 MiB: one parameter per bucket; 0.004 MiB (~1000 floats): several mixed buckets;
    // 1000 MiB: one bucket.
    for (double mib : {0.0, 0.004, 1000.0}) {
      SCOPED_TRACE("world " + std::to_string(n) + " bucket " + std::to_string(mib) + " MiB");
      const ReducerRun run = run_reducer(cfg, n, {all}, mib, /*steps=*/2);
      expect_no_errors(run.errors);
      if (HasFatalFailure() || !run.errors[0].empty()) return;
      expect_matches_reference(run, ref, names);
      for (size_t i = 0; i < ref.size(); ++i)
        EXPECT_TRUE(tu::bitwise_equal(run.grads[0][i], bitwise_ref[i])) << names[i];
      const auto& b = run.buckets[0];
      if (mib == 0.0) {
        EXPECT_EQ(int64_t(b.size()), n_params);
      }
      if (mib == 1000.0) {
        EXPECT_EQ(b.size(), 1u);
      }
      if (mib == 0.004) {
        EXPECT_GT(b.size(), 2u);
        EXPECT_LT(int64_t(b.size()), n_params);
      }
      // Reverse registration order: bucket 0 starts with the last parameter.
      EXPECT_EQ(b.front().names.front(), names.back());
      EXPECT_EQ(b.back().names.back(), names.front());
      size_t total = 0;
      for (const BucketInfo& k : b) {
        total += k.names.size();
        EXPECT_EQ(k.numel % 16, 0);
        if (mib == 0.004 && k.names.size() > 1) {
          EXPECT_LE(k.numel * 4, int64_t(0.004 * 1048576));
        }
      }
      EXPECT_EQ(int64_t(total), n_params);
      // Every parameter gets a gradient: all buckets are launched from hooks during backward.
      EXPECT_EQ(run.by_hooks[0], int64_t(b.size()));
      EXPECT_EQ(run.by_finish[0], 0);
    }
  }
}

TEST(GradReducer, GradientAccumulationEqualsOneBigBatch) {
  SEQMIX_TRACE_SEED();
  const nn::LmConfig cfg = tiny_lm(tu::next_seed());
  const int n = 3, k = 3;
  std::vector<Batch> micro;
  for (int i = 0; i < k; ++i) micro.push_back(random_batch(n * 2, 7, cfg.vocab_size));
  const ReducerRun run = run_reducer(cfg, n, micro, 0.002);
  expect_no_errors(run.errors);
  expect_matches_reference(run, reference_grads(cfg, micro), param_names(cfg));
}

TEST(GradReducer, ParametersUnusedOnSomeRanksDoNotHang) {
  SEQMIX_TRACE_SEED();
  const nn::LmConfig cfg = tiny_lm(tu::next_seed());
  const int n = 3;
  const Tensor w0 = tu::randn({5}, DType::F32);
  std::vector<Variable> extra;
  for (int r = 0; r < n; ++r) extra.emplace_back(w0.clone(), true);
  const Batch all = random_batch(n, 6, cfg.vocab_size);
  // Only rank 1 uses the extra parameter: loss += 3 * sum(extra); its gradient there is 3.
  const ReducerRun run = run_reducer(
      cfg, n, {all}, 0.0, 1,
      [&](int r, const Variable& loss) {
        return r == 1 ? add(loss, mul(sum(extra[size_t(r)]), 3.0)) : loss;
      },
      &extra);
  expect_no_errors(run.errors);
  const std::vector<Tensor> ref = reference_grads(cfg, {all});
  for (int r = 0; r < n; ++r) {
    // grads()[0] is the extra parameter (registered first): (3 + 0 + 0) / 3.
    EXPECT_TRUE(tu::close(run.grads[size_t(r)][0], Tensor::full({5}, 1.0, DType::F32), 1e-6));
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_TRUE(tu::close(run.grads[size_t(r)][i + 1], ref[i], 1e-5)) << "rank " << r;
  }
  EXPECT_EQ(run.by_finish[0], 1);  // the extra bucket was reduced by finish() on ranks 0 and 2
  EXPECT_EQ(run.by_finish[1], 0);
  EXPECT_EQ(run.by_finish[2], 1);
}

TEST(GradReducer, MisuseIsReported) {
  SEQMIX_TRACE_SEED();
  const nn::LmConfig cfg = tiny_lm(tu::next_seed());
  nn::LanguageModel m(cfg);
  SingleProcessComm comm;
  GradReducer red(m.named_parameters(), comm, 0.01);
  const Batch b = random_batch(2, 5, cfg.vocab_size);
  m.loss(b.tokens, b.targets, nn::ForwardContext{}).backward();
  EXPECT_THROW(red.set_enabled(false), Error);  // a round is in progress
  // A second backward without finish(): the first hook to fire again raises.
  EXPECT_THROW(m.loss(b.tokens, b.targets, nn::ForwardContext{}).backward(), Error);
  red.finish();
  red.zero_grad();
  for (const Tensor& g : red.grads())
    EXPECT_EQ(g.to_vector<float>(), std::vector<float>(size_t(g.numel()), 0.f));
  // Detaching a gradient from its bucket is caught at the next backward.
  m.named_parameters().back().second.zero_grad(/*set_to_none=*/true);
  try {
    m.loss(b.tokens, b.targets, nn::ForwardContext{}).backward();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find(m.named_parameters().back().first), std::string::npos);
  }
  std::vector<std::pair<std::string, Variable>> bad{
      {"w", Variable(Tensor::zeros({3}, DType::F64), true)}};
  EXPECT_THROW(GradReducer(bad, comm), Error);
}
