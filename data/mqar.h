// MQAR: multi-query associative recall (Arora, Eyuboglu et al., "Zoology", 2023), generated
// in-process as a BatchSource. Same definition as Zoology's `multiquery_ar` generator:
//
//   V = vocab_size, T = seq_len, n = num_kv_pairs, ctx = 2n, space = (T - ctx) / 2
//   keys   k_0..k_{n-1}: distinct, uniform from [1, V/2)          (V/2 = integer division)
//   values v_0..v_{n-1}: distinct, uniform from [V/2, V)
//   gaps   g_0..g_{n-1}: distinct, from [0, space), drawn one after another without replacement
//                        with probability proportional to (g + 1)^(power_a - 1) among those left
//                        (a power law: short gaps are likely; power_a = 1 is uniform)
//   full sequence s[0, T+1): s[2i] = k_i, s[2i+1] = v_i (the context), s[ctx + 2 g_i] = k_i (the
//                        query of pair i), every other position 0
//   labels l[0, T+1):    l[ctx + 2 g_i + 1] = v_i, every other position -100
//   example:             inputs = s[0, T), targets = l[1, T+1)  (shifted by one, as Zoology)
//
// so targets[t] = v_i exactly at the query positions t = ctx + 2 g_i, and -100 elsewhere. With
// random_non_queries, every input position that is neither context nor a query (the zeros above)
// is replaced by a token uniform in [0, V), as Zoology does (such filler may repeat a key).
//
// Determinism: example i is a pure function of (seed, i): it reads the Philox stream
// (key = seed ^ kMqarStreamTag, offset = i) (philox_stream.h): keys (Floyd's sampling, then a
// shuffle), values (same), gaps (Efraimidis-Spirakis keys log(u)/w, which has the distribution of
// successive weighted draws without replacement; the largest key is the first draw), then
// fillers. Sharding and resume are as in batch.h: global sample g is example g, rank
// g % world_size, state = samples consumed (epoch is always 0). Gap keys use the host `log`, so
// example streams are reproducible on one platform (libm), not guaranteed across libms.
//
// Limits (MqarConfig validation, Error(Config) naming the key): vocab_size >= 4, seq_len >= 4,
// num_kv_pairs >= 1, 4 * num_kv_pairs <= seq_len (every pair needs a distinct query gap among
// (seq_len - 2 * num_kv_pairs) / 2), num_kv_pairs <= V/2 - 1 keys and <= V - V/2 values,
// power_a > 0 and finite.
#pragma once
#include <cstdint>
#include <vector>

#include "data/batch.h"

namespace seqmix::data {

inline constexpr uint64_t kMqarStreamTag = 0x6D71617200000000ull;  // "mqar"

struct MqarConfig {
  int64_t vocab_size = 8192;
  int64_t seq_len = 64;
  int64_t num_kv_pairs = 4;
  double power_a = 0.01;
  bool random_non_queries = true;
  uint64_t seed = 0;
};

// Throws Error(Config) naming the bad key and the limit.
void validate(const MqarConfig& cfg);

struct MqarExample {
  std::vector<int64_t> inputs;   // [T]
  std::vector<int64_t> targets;  // [T], -100 except at query positions
};

class MqarSource : public BatchSource {
 public:
  // Validates cfg; Error(Value) for batch_size < 1 or a bad rank/world_size.
  MqarSource(const MqarConfig& cfg, int64_t batch_size, int rank = 0, int world_size = 1);

  // Example `index` (a pure function of (cfg.seed, index)).
  MqarExample example(uint64_t index) const;
  // This rank's next batch_size examples (see batch.h): I64 [B, T].
  Batch next() override;
  LoaderState state() const override { return {cfg_.seed, 0, consumed_}; }
  // Error(Data) when the state's seed differs from cfg.seed or its epoch is not 0.
  void restore(const LoaderState& state) override;
  int64_t vocab_size() const override { return cfg_.vocab_size; }
  const MqarConfig& config() const { return cfg_; }

 private:
  void fill(uint64_t index, int64_t* inputs, int64_t* targets) const;

  MqarConfig cfg_;
  int64_t batch_size_;
  int rank_, world_size_;
  uint64_t consumed_ = 0;
  std::vector<double> inv_weight_;  // 1 / (g + 1)^(power_a - 1), g in [0, space)
};

}  // namespace seqmix::data
