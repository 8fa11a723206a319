// Generators of the synthetic recall / state-tracking tasks, one Philox stream per example.
// Definitions and the determinism contract in tasks.h.
#include "data/tasks.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>
#include <utility>

#include "core/check.h"
#include "data/philox_stream.h"

namespace seqmix::data {

namespace {

int64_t draw(PhiloxStream& s, int64_t lo, int64_t hi) {  // uniform in [lo, hi)
  return lo + int64_t(s.below(uint64_t(hi - lo)));
}

template <typename Config>
const Config& validated(const Config& c) {
  validate(c);
  return c;
}

}  // namespace

// ------------------------------------------------------------------------------------------
// TaskSource

TaskSource::TaskSource(std::string name, uint64_t stream_tag, int64_t vocab_size, int64_t seq_len,
                       uint64_t seed, int64_t batch_size, int rank, int world_size)
    : name_(std::move(name)),
      stream_tag_(stream_tag),
      seed_(seed),
      vocab_size_(vocab_size),
      seq_len_(seq_len),
      batch_size_(batch_size),
      rank_(rank),
      world_size_(world_size) {
  SEQMIX_CHECK(batch_size >= 1, "{}: batch_size must be >= 1, got {}", name_, batch_size);
  SEQMIX_CHECK(world_size >= 1 && rank >= 0 && rank < world_size,
               "{}: rank {} is not in [0, world_size = {})", name_, rank, world_size);
}

void TaskSource::fill_index(uint64_t index, int64_t* inputs, int64_t* targets) const {
  PhiloxStream s(seed_ ^ stream_tag_, index);
  std::fill(targets, targets + seq_len_, kIgnoreIndex);
  fill(s, inputs, targets);
}

TaskExample TaskSource::example(uint64_t index) const {
  TaskExample e;
  e.inputs.resize(size_t(seq_len_));
  e.targets.resize(size_t(seq_len_));
  fill_index(index, e.inputs.data(), e.targets.data());
  return e;
}

Batch TaskSource::next() {
  const int64_t B = batch_size_, T = seq_len_;
  Batch b;
  b.inputs = Tensor::empty({B, T}, DType::I64);
  b.targets = Tensor::empty({B, T}, DType::I64);
  int64_t* in = b.inputs.data<int64_t>();
  int64_t* tg = b.targets.data<int64_t>();
  for (int64_t j = 0; j < B; ++j) {
    const uint64_t g = consumed_ + uint64_t(rank_) + uint64_t(j) * uint64_t(world_size_);
    fill_index(g, in + j * T, tg + j * T);
  }
  consumed_ += uint64_t(B) * uint64_t(world_size_);
  return b;
}

void TaskSource::restore(const LoaderState& s) {
  SEQMIX_CHECK_KIND(Data, s.seed == seed_, "{} state: seed {} does not match this source's seed {}",
                    name_, s.seed, seed_);
  SEQMIX_CHECK_KIND(Data, s.epoch == 0, "{} state: epoch must be 0, got {}", name_, s.epoch);
  consumed_ = s.samples_consumed;
}

// ------------------------------------------------------------------------------------------
// sqar

void validate(const SqarConfig& c) {
  SEQMIX_CHECK_KIND(Config, c.vocab_size >= 4, "sqar.vocab_size must be >= 4, got {}",
                    c.vocab_size);
  SEQMIX_CHECK_KIND(Config, c.num_kv_pairs >= 1, "sqar.num_kv_pairs must be >= 1, got {}",
                    c.num_kv_pairs);
  const int64_t n_keys = c.vocab_size / 2 - 1, n_values = c.vocab_size - c.vocab_size / 2;
  SEQMIX_CHECK_KIND(Config, c.num_kv_pairs <= n_keys,
                    "sqar.num_kv_pairs = {} exceeds the {} keys ([1, {})) of vocab_size {}",
                    c.num_kv_pairs, n_keys, c.vocab_size / 2, c.vocab_size);
  SEQMIX_CHECK_KIND(Config, c.num_kv_pairs <= n_values,
                    "sqar.num_kv_pairs = {} exceeds the {} values of vocab_size {}", c.num_kv_pairs,
                    n_values, c.vocab_size);
  SEQMIX_CHECK_KIND(Config, c.seq_len >= 2 * c.num_kv_pairs + 1,
                    "sqar.seq_len = {} is too short: the context of {} pairs and the query need "
                    "2 * num_kv_pairs + 1 = {}",
                    c.seq_len, c.num_kv_pairs, 2 * c.num_kv_pairs + 1);
}

SqarSource::SqarSource(const SqarConfig& cfg, int64_t batch_size, int rank, int world_size)
    : TaskSource("sqar", kSqarStreamTag, validated(cfg).vocab_size, cfg.seq_len, cfg.seed,
                 batch_size, rank, world_size),
      cfg_(cfg) {}

void SqarSource::fill(PhiloxStream& s, int64_t* in, int64_t* tg) const {
  const int64_t V = cfg_.vocab_size, T = cfg_.seq_len, n = cfg_.num_kv_pairs;
  std::vector<int64_t> keys(static_cast<size_t>(n)), values(static_cast<size_t>(n));
  sample_distinct(s, 1, V / 2 - 1, n, keys.data());
  sample_distinct(s, V / 2, V - V / 2, n, values.data());
  for (int64_t i = 0; i < n; ++i) {
    in[2 * i] = keys[size_t(i)];
    in[2 * i + 1] = values[size_t(i)];
  }
  const int64_t q = draw(s, 0, n);
  const int64_t key = keys[size_t(q)];
  for (int64_t t = 2 * n; t < T - 1; ++t) {
    if (!cfg_.random_filler) {
      in[t] = 0;
      continue;
    }
    int64_t f = draw(s, 0, V - 1);  // uniform over [0, V) \ {key}
    if (f >= key) ++f;
    in[t] = f;
  }
  in[T - 1] = key;
  tg[T - 1] = values[size_t(q)];
}

// ------------------------------------------------------------------------------------------
// set_disjoint

SetOrder parse_set_order(std::string_view s) {
  if (s == "short_first") return SetOrder::ShortFirst;
  if (s == "long_first") return SetOrder::LongFirst;
  SEQMIX_THROW(Config, "set_disjoint.order must be short_first or long_first, got '{}'", s);
}

const char* set_order_name(SetOrder order) {
  return order == SetOrder::ShortFirst ? "short_first" : "long_first";
}

void validate(const SetDisjointConfig& c) {
  SEQMIX_CHECK_KIND(Config, c.short_size >= 1, "set_disjoint.short_size must be >= 1, got {}",
                    c.short_size);
  SEQMIX_CHECK_KIND(Config, c.long_size >= c.short_size,
                    "set_disjoint.long_size = {} must be >= short_size = {}", c.long_size,
                    c.short_size);
  SEQMIX_CHECK_KIND(Config, c.vocab_size >= kSetFirstElement + c.short_size + c.long_size,
                    "set_disjoint.vocab_size = {} is too small: {} special tokens + {} distinct "
                    "set elements need >= {}",
                    c.vocab_size, kSetFirstElement, c.short_size + c.long_size,
                    kSetFirstElement + c.short_size + c.long_size);
  SEQMIX_CHECK_KIND(Config, c.seq_len >= c.short_size + c.long_size + 2,
                    "set_disjoint.seq_len = {} is too short: the two sets, the separator and the "
                    "query need short_size + long_size + 2 = {}",
                    c.seq_len, c.short_size + c.long_size + 2);
  SEQMIX_CHECK_KIND(Config, c.order == SetOrder::ShortFirst || c.order == SetOrder::LongFirst,
                    "set_disjoint.order is not short_first or long_first");
}

SetDisjointSource::SetDisjointSource(const SetDisjointConfig& cfg, int64_t batch_size, int rank,
                                     int world_size)
    : TaskSource("set_disjoint", kSetDisjointStreamTag, validated(cfg).vocab_size, cfg.seq_len,
                 cfg.seed, batch_size, rank, world_size),
      cfg_(cfg) {}

void SetDisjointSource::fill(PhiloxStream& s, int64_t* in, int64_t* tg) const {
  const int64_t V = cfg_.vocab_size, T = cfg_.seq_len;
  const bool short_first = cfg_.order == SetOrder::ShortFirst;
  const int64_t a = short_first ? cfg_.short_size : cfg_.long_size;  // first-listed set
  const int64_t b = short_first ? cfg_.long_size : cfg_.short_size;
  const bool disjoint = s.below(2) == 0;
  // First set at [0, a), separator at a, second set at [a + 1, a + 1 + b), query after it.
  std::vector<int64_t> elems(static_cast<size_t>(a + b));
  sample_distinct(s, kSetFirstElement, V - kSetFirstElement, a + b, elems.data());
  if (!disjoint) {
    const int64_t dst = draw(s, 0, b), src = draw(s, 0, a);
    elems[size_t(a + dst)] = elems[size_t(src)];
  }
  for (int64_t i = 0; i < a; ++i) in[i] = elems[size_t(i)];
  in[a] = kSetSeparator;
  for (int64_t i = 0; i < b; ++i) in[a + 1 + i] = elems[size_t(a + i)];
  const int64_t q = a + b + 1;
  in[q] = kSetQuery;
  tg[q] = disjoint ? kSetDisjoint : kSetNotDisjoint;
  for (int64_t t = q + 1; t < T; ++t) in[t] = kSetPad;
}

// ------------------------------------------------------------------------------------------
// passkey

void validate(const PasskeyConfig& c) {
  SEQMIX_CHECK_KIND(Config, c.vocab_size >= kPasskeyFirstFiller + 1,
                    "passkey.vocab_size must be >= {} (10 digits, 2 markers, >= 1 filler), got {}",
                    kPasskeyFirstFiller + 1, c.vocab_size);
  SEQMIX_CHECK_KIND(Config, c.num_digits >= 1, "passkey.num_digits must be >= 1, got {}",
                    c.num_digits);
  SEQMIX_CHECK_KIND(Config, c.seq_len >= 2 * c.num_digits + 1,
                    "passkey.seq_len = {} is too short: the needle, query and answer need "
                    "2 * num_digits + 1 = {}",
                    c.seq_len, 2 * c.num_digits + 1);
  SEQMIX_CHECK_KIND(Config, !std::isnan(c.depth) && c.depth <= 1.0,
                    "passkey.depth must be in [0, 1] (or negative for a uniform position), got {}",
                    c.depth);
}

PasskeySource::PasskeySource(const PasskeyConfig& cfg, int64_t batch_size, int rank, int world_size)
    : TaskSource("passkey", kPasskeyStreamTag, validated(cfg).vocab_size, cfg.seq_len, cfg.seed,
                 batch_size, rank, world_size),
      cfg_(cfg) {}

void PasskeySource::fill(PhiloxStream& s, int64_t* in, int64_t* tg) const {
  const int64_t V = cfg_.vocab_size, T = cfg_.seq_len, L = cfg_.num_digits, H = T - L;
  const int64_t last = H - L - 1;  // the needle starts in [0, last]
  std::vector<int64_t> digits(static_cast<size_t>(L));
  for (int64_t j = 0; j < L; ++j) digits[size_t(j)] = draw(s, 0, 10);
  const int64_t p = cfg_.depth < 0 ? draw(s, 0, last + 1)
                                   : std::clamp(int64_t(std::llround(cfg_.depth * double(last))),
                                                int64_t(0), last);
  for (int64_t t = 0; t < H; ++t) {
    if (t == p) {
      in[t] = kPasskeyMarker;
    } else if (t > p && t <= p + L) {
      in[t] = digits[size_t(t - p - 1)];
    } else {
      in[t] = draw(s, kPasskeyFirstFiller, V);
    }
  }
  in[H] = kPasskeyQuery;
  for (int64_t j = 0; j < L; ++j) {
    if (j + 1 < L) in[H + 1 + j] = digits[size_t(j)];
    tg[H + j] = digits[size_t(j)];
  }
}

// ------------------------------------------------------------------------------------------
// parity

void validate(const ParityConfig& c) {
  SEQMIX_CHECK_KIND(Config, c.seq_len >= 1, "parity.seq_len must be >= 1, got {}", c.seq_len);
}

ParitySource::ParitySource(const ParityConfig& cfg, int64_t batch_size, int rank, int world_size)
    : TaskSource("parity", kParityStreamTag, validated(cfg).separators ? 3 : 2, cfg.seq_len,
                 cfg.seed, batch_size, rank, world_size),
      cfg_(cfg) {}

void ParitySource::fill(PhiloxStream& s, int64_t* in, int64_t* tg) const {
  int64_t parity = 0;
  for (int64_t t = 0; t < cfg_.seq_len; ++t) {
    if (cfg_.separators && t % 2 == 1) {
      in[t] = kParitySeparator;
    } else {
      in[t] = int64_t(s.below(2));
      parity ^= in[t];
    }
    tg[t] = parity;
  }
}

// ------------------------------------------------------------------------------------------
// modadd

void validate(const ModAddConfig& c) {
  SEQMIX_CHECK_KIND(Config, c.seq_len >= 1, "modadd.seq_len must be >= 1, got {}", c.seq_len);
  SEQMIX_CHECK_KIND(Config, c.modulus >= 2, "modadd.modulus must be >= 2, got {}", c.modulus);
}

ModAddSource::ModAddSource(const ModAddConfig& cfg, int64_t batch_size, int rank, int world_size)
    : TaskSource("modadd", kModAddStreamTag, validated(cfg).modulus, cfg.seq_len, cfg.seed,
                 batch_size, rank, world_size),
      cfg_(cfg) {}

void ModAddSource::fill(PhiloxStream& s, int64_t* in, int64_t* tg) const {
  const int64_t m = cfg_.modulus;
  int64_t sum = 0;
  for (int64_t t = 0; t < cfg_.seq_len; ++t) {
    in[t] = draw(s, 0, m);
    sum = (sum + in[t]) % m;
    tg[t] = sum;
  }
}

// ------------------------------------------------------------------------------------------
// s5

Perm5 s5_permutation(int64_t index) {
  SEQMIX_CHECK(index >= 0 && index < 120, "s5 permutation index must be in [0, 120), got {}",
               index);
  // Unrank the Lehmer code: digit i (base (4 - i)!) picks the c_i-th smallest unused element.
  static constexpr int64_t kFact[5] = {24, 6, 2, 1, 1};
  std::vector<int> unused = {0, 1, 2, 3, 4};
  Perm5 p{};
  for (int i = 0; i < 5; ++i) {
    const int64_t c = index / kFact[i];
    index %= kFact[i];
    p[size_t(i)] = unused[size_t(c)];
    unused.erase(unused.begin() + c);
  }
  return p;
}

int64_t s5_index(const Perm5& p) {
  static constexpr int64_t kFact[5] = {24, 6, 2, 1, 1};
  int seen = 0;
  for (int v : p) {
    SEQMIX_CHECK(v >= 0 && v < 5 && !(seen & (1 << v)),
                 "s5_index: ({}) is not a permutation of 0..4", fmt::join(p, " "));
    seen |= 1 << v;
  }
  int64_t index = 0;
  for (int i = 0; i < 5; ++i) {
    int64_t c = 0;
    for (int j = i + 1; j < 5; ++j) c += p[size_t(j)] < p[size_t(i)];
    index += c * kFact[i];
  }
  return index;
}

Perm5 s5_compose(const Perm5& a, const Perm5& b) {
  Perm5 r{};
  for (int i = 0; i < 5; ++i) r[size_t(i)] = a[size_t(b[size_t(i)])];
  return r;
}

PermGroup parse_perm_group(std::string_view s) {
  if (s == "s5") return PermGroup::S5;
  if (s == "a5") return PermGroup::A5;
  SEQMIX_THROW(Config, "s5.group must be s5 or a5, got '{}'", s);
}

void validate(const S5Config& c) {
  SEQMIX_CHECK_KIND(Config, c.seq_len >= 1, "s5.seq_len must be >= 1, got {}", c.seq_len);
  SEQMIX_CHECK_KIND(Config, c.group == PermGroup::S5 || c.group == PermGroup::A5,
                    "s5.group is not s5 or a5");
}

S5Source::S5Source(const S5Config& cfg, int64_t batch_size, int rank, int world_size)
    : TaskSource("s5", kS5StreamTag, (validate(cfg), 120), cfg.seq_len, cfg.seed, batch_size, rank,
                 world_size),
      cfg_(cfg) {
  for (int64_t x = 0; x < 120; ++x) {
    const Perm5 px = s5_permutation(x);
    // Even permutations: an even number of inversions (the Lehmer digits sum to it).
    int inversions = 0;
    for (int i = 0; i < 5; ++i)
      for (int j = i + 1; j < 5; ++j) inversions += px[size_t(j)] < px[size_t(i)];
    if (cfg_.group == PermGroup::S5 || inversions % 2 == 0) alphabet_.push_back(x);
    for (int64_t y = 0; y < 120; ++y)
      table_[size_t(x)][size_t(y)] = int16_t(s5_index(s5_compose(px, s5_permutation(y))));
  }
}

void S5Source::fill(PhiloxStream& s, int64_t* in, int64_t* tg) const {
  int64_t state = 0;  // identity
  const int64_t n = int64_t(alphabet_.size());
  for (int64_t t = 0; t < cfg_.seq_len; ++t) {
    in[t] = alphabet_[size_t(draw(s, 0, n))];
    state = table_[size_t(in[t])][size_t(state)];
    tg[t] = state;
  }
}

}  // namespace seqmix::data
