// MQAR generator (Zoology's multiquery_ar), one Philox stream per example. Definition and
// determinism contract in mqar.h.
#include "data/mqar.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "core/check.h"
#include "data/philox_stream.h"

namespace seqmix::data {

void validate(const MqarConfig& c) {
  SEQMIX_CHECK_KIND(Config, c.vocab_size >= 4, "mqar.vocab_size must be >= 4, got {}",
                    c.vocab_size);
  SEQMIX_CHECK_KIND(Config, c.seq_len >= 4, "mqar.seq_len must be >= 4, got {}", c.seq_len);
  SEQMIX_CHECK_KIND(Config, c.num_kv_pairs >= 1, "mqar.num_kv_pairs must be >= 1, got {}",
                    c.num_kv_pairs);
  SEQMIX_CHECK_KIND(Config, 2 * c.num_kv_pairs <= c.seq_len,
                    "mqar: 2 * num_kv_pairs = {} exceeds seq_len = {} (the context alone does not "
                    "fit)",
                    2 * c.num_kv_pairs, c.seq_len);
  SEQMIX_CHECK_KIND(
      Config, 4 * c.num_kv_pairs <= c.seq_len,
      "mqar: 4 * num_kv_pairs = {} exceeds seq_len = {} (each of the {} queries needs "
      "its own gap among (seq_len - 2 * num_kv_pairs) / 2 = {})",
      4 * c.num_kv_pairs, c.seq_len, c.num_kv_pairs, (c.seq_len - 2 * c.num_kv_pairs) / 2);
  const int64_t n_keys = c.vocab_size / 2 - 1, n_values = c.vocab_size - c.vocab_size / 2;
  SEQMIX_CHECK_KIND(Config, c.num_kv_pairs <= n_keys,
                    "mqar: vocab_size {} has only {} keys ([1, {})) for num_kv_pairs = {}",
                    c.vocab_size, n_keys, c.vocab_size / 2, c.num_kv_pairs);
  SEQMIX_CHECK_KIND(Config, c.num_kv_pairs <= n_values,
                    "mqar: vocab_size {} has only {} values for num_kv_pairs = {}", c.vocab_size,
                    n_values, c.num_kv_pairs);
  SEQMIX_CHECK_KIND(Config, std::isfinite(c.power_a) && c.power_a > 0,
                    "mqar.power_a must be > 0 and finite, got {}", c.power_a);
}

MqarSource::MqarSource(const MqarConfig& cfg, int64_t batch_size, int rank, int world_size)
    : cfg_(cfg), batch_size_(batch_size), rank_(rank), world_size_(world_size) {
  validate(cfg_);
  SEQMIX_CHECK(batch_size >= 1, "mqar: batch_size must be >= 1, got {}", batch_size);
  SEQMIX_CHECK(world_size >= 1 && rank >= 0 && rank < world_size,
               "mqar: rank {} is not in [0, world_size = {})", rank, world_size);
  const int64_t space = (cfg_.seq_len - 2 * cfg_.num_kv_pairs) / 2;
  inv_weight_.resize(size_t(space));
  for (int64_t g = 0; g < space; ++g)
    inv_weight_[size_t(g)] = 1.0 / std::pow(double(g + 1), cfg_.power_a - 1.0);
}

void MqarSource::fill(uint64_t index, int64_t* inputs, int64_t* targets) const {
  const int64_t V = cfg_.vocab_size, T = cfg_.seq_len, n = cfg_.num_kv_pairs, ctx = 2 * n;
  const int64_t space = int64_t(inv_weight_.size());
  PhiloxStream s(cfg_.seed ^ kMqarStreamTag, index);

  std::vector<int64_t> keys(static_cast<size_t>(n)), values(static_cast<size_t>(n));
  sample_distinct(s, 1, V / 2 - 1, n, keys.data());
  sample_distinct(s, V / 2, V - V / 2, n, values.data());

  // Weighted sampling without replacement (Efraimidis-Spirakis): key_g = log(u_g) / w_g; the n
  // largest keys, in decreasing order, are distributed as n successive weighted draws.
  std::vector<double> gkey(static_cast<size_t>(space));
  for (int64_t g = 0; g < space; ++g)
    gkey[size_t(g)] = std::log(s.next_double_open0()) * inv_weight_[size_t(g)];
  std::vector<int64_t> order(static_cast<size_t>(space));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::partial_sort(order.begin(), order.begin() + n, order.end(), [&](int64_t a, int64_t b) {
    return gkey[size_t(a)] != gkey[size_t(b)] ? gkey[size_t(a)] > gkey[size_t(b)] : a < b;
  });

  // Positions 0..T-1 of the input; -1 marks filler.
  std::fill(inputs, inputs + T, int64_t(-1));
  std::fill(targets, targets + T, kIgnoreIndex);
  for (int64_t i = 0; i < n; ++i) {
    inputs[2 * i] = keys[size_t(i)];
    inputs[2 * i + 1] = values[size_t(i)];
    const int64_t q = ctx + 2 * order[size_t(i)];  // < T since 2 * (space - 1) + ctx <= T - 2
    inputs[q] = keys[size_t(i)];
    targets[q] = values[size_t(i)];
  }
  for (int64_t t = 0; t < T; ++t)
    if (inputs[t] < 0) inputs[t] = cfg_.random_non_queries ? int64_t(s.below(uint64_t(V))) : 0;
}

MqarExample MqarSource::example(uint64_t index) const {
  MqarExample e;
  e.inputs.resize(size_t(cfg_.seq_len));
  e.targets.resize(size_t(cfg_.seq_len));
  fill(index, e.inputs.data(), e.targets.data());
  return e;
}

Batch MqarSource::next() {
  const int64_t B = batch_size_, T = cfg_.seq_len;
  Batch b;
  b.inputs = Tensor::empty({B, T}, DType::I64);
  b.targets = Tensor::empty({B, T}, DType::I64);
  int64_t* in = b.inputs.data<int64_t>();
  int64_t* tg = b.targets.data<int64_t>();
  for (int64_t j = 0; j < B; ++j) {
    const uint64_t g = consumed_ + uint64_t(rank_) + uint64_t(j) * uint64_t(world_size_);
    fill(g, in + j * T, tg + j * T);
  }
  consumed_ += uint64_t(B) * uint64_t(world_size_);
  return b;
}

void MqarSource::restore(const LoaderState& s) {
  SEQMIX_CHECK_KIND(Data, s.seed == cfg_.seed,
                    "mqar state: seed {} does not match this source's seed {}", s.seed, cfg_.seed);
  SEQMIX_CHECK_KIND(Data, s.epoch == 0, "mqar state: epoch must be 0, got {}", s.epoch);
  consumed_ = s.samples_consumed;
}

}  // namespace seqmix::data
