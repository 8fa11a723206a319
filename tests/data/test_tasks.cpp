// data/tasks.h: the synthetic recall (sqar, set_disjoint, passkey) and state-tracking (parity,
// modadd, s5) sources. Each example is re-derived by an independent brute-force decoder here
// (structure, token ranges, the exact label positions and values); then, for every task, the
// BatchSource contract: determinism from (seed, index), seeds differ, rank sharding equals the
// single-rank order, resume from state, and config errors that name the key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/tasks.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using namespace seqmix::data;

namespace {

// Runs `f` and expects a seqmix::Error of `kind` whose message contains `needle`.
template <typename F>
void expect_error(F&& f, ErrorKind kind, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error of kind " << error_kind_name(kind) << " naming '" << needle
                  << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.message();
    EXPECT_NE(e.message().find(needle), std::string::npos)
        << "message '" << e.message() << "' lacks '" << needle << "'";
  }
}

std::vector<int64_t> ignored(size_t n) {
  return std::vector<int64_t>(n, kIgnoreIndex);
}

// ---------------------------------------------------------------- brute-force decoders

// Returns the index of the queried pair.
int64_t check_sqar(const SqarConfig& c, const TaskExample& e) {
  const int64_t V = c.vocab_size, T = c.seq_len, n = c.num_kv_pairs;
  EXPECT_EQ(int64_t(e.inputs.size()), T);
  std::set<int64_t> keys, values;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = e.inputs[size_t(2 * i)], v = e.inputs[size_t(2 * i + 1)];
    EXPECT_TRUE(k >= 1 && k < V / 2) << "key " << k;
    EXPECT_TRUE(v >= V / 2 && v < V) << "value " << v;
    keys.insert(k);
    values.insert(v);
  }
  EXPECT_EQ(int64_t(keys.size()), n) << "keys not distinct";
  EXPECT_EQ(int64_t(values.size()), n) << "values not distinct";
  const int64_t query = e.inputs[size_t(T - 1)];
  int64_t q = -1;
  for (int64_t i = 0; i < n; ++i)
    if (e.inputs[size_t(2 * i)] == query) q = i;
  EXPECT_GE(q, 0) << "the query " << query << " is not a key of the context";
  for (int64_t t = 2 * n; t < T - 1; ++t) {
    const int64_t f = e.inputs[size_t(t)];
    if (c.random_filler) {
      EXPECT_TRUE(f >= 0 && f < V && f != query) << "filler " << f << " at " << t;
    } else {
      EXPECT_EQ(f, 0) << "at " << t;
    }
  }
  std::vector<int64_t> want = ignored(size_t(T));
  if (q >= 0) want[size_t(T - 1)] = e.inputs[size_t(2 * q + 1)];
  EXPECT_EQ(e.targets, want);
  return q;
}

// Returns whether the two sets are disjoint.
bool check_set_disjoint(const SetDisjointConfig& c, const TaskExample& e) {
  const int64_t V = c.vocab_size, T = c.seq_len;
  const bool sf = c.order == SetOrder::ShortFirst;
  const int64_t a = sf ? c.short_size : c.long_size, b = sf ? c.long_size : c.short_size;
  auto read_set = [&](int64_t from, int64_t len) {
    std::set<int64_t> s;
    for (int64_t t = from; t < from + len; ++t) {
      const int64_t x = e.inputs[size_t(t)];
      EXPECT_TRUE(x >= 5 && x < V) << "set element " << x << " at " << t;
      s.insert(x);
    }
    EXPECT_EQ(int64_t(s.size()), len) << "repeated element in a set at " << from;
    return s;
  };
  const std::set<int64_t> first = read_set(0, a);
  EXPECT_EQ(e.inputs[size_t(a)], 1) << "separator";
  const std::set<int64_t> second = read_set(a + 1, b);
  EXPECT_EQ(e.inputs[size_t(a + b + 1)], 2) << "query marker";
  for (int64_t t = a + b + 2; t < T; ++t) EXPECT_EQ(e.inputs[size_t(t)], 0) << "pad at " << t;
  int64_t common = 0;
  for (int64_t x : first) common += second.count(x);
  EXPECT_LE(common, 1) << "intersecting sets share exactly one element";
  std::vector<int64_t> want = ignored(size_t(T));
  want[size_t(a + b + 1)] = common == 0 ? 3 : 4;
  EXPECT_EQ(e.targets, want);
  return common == 0;
}

// Returns the needle's start position.
int64_t check_passkey(const PasskeyConfig& c, const TaskExample& e) {
  const int64_t V = c.vocab_size, T = c.seq_len, L = c.num_digits, H = T - L;
  EXPECT_EQ(int64_t(e.inputs.size()), T);
  std::vector<int64_t> markers;
  for (int64_t t = 0; t < T; ++t)
    if (e.inputs[size_t(t)] == 10) markers.push_back(t);
  EXPECT_EQ(markers.size(), 1u) << "exactly one passkey marker";
  if (markers.size() != 1) return -1;
  const int64_t p = markers[0];
  EXPECT_TRUE(p >= 0 && p + L < H) << "needle at " << p;
  if (c.depth >= 0) {
    EXPECT_EQ(p, int64_t(std::llround(c.depth * double(H - L - 1))));
  }
  std::vector<int64_t> digits;
  for (int64_t t = p + 1; t <= p + L && t < T; ++t) {
    EXPECT_TRUE(e.inputs[size_t(t)] >= 0 && e.inputs[size_t(t)] <= 9);
    digits.push_back(e.inputs[size_t(t)]);
  }
  for (int64_t t = 0; t < H; ++t) {
    if (t < p || t > p + L) {
      EXPECT_TRUE(e.inputs[size_t(t)] >= 12 && e.inputs[size_t(t)] < V)
          << "filler " << e.inputs[size_t(t)] << " at " << t;
    }
  }
  EXPECT_EQ(e.inputs[size_t(H)], 11) << "query marker";
  std::vector<int64_t> want = ignored(size_t(T));
  for (int64_t j = 0; j < L && j < int64_t(digits.size()); ++j) {
    want[size_t(H + j)] = digits[size_t(j)];
    if (j + 1 < L) {
      EXPECT_EQ(e.inputs[size_t(H + 1 + j)], digits[size_t(j)]) << "answer " << j;
    }
  }
  EXPECT_EQ(e.targets, want);
  return p;
}

void check_parity(const ParityConfig& c, const TaskExample& e) {
  const int64_t T = c.seq_len;
  std::vector<int64_t> want(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t x = e.inputs[size_t(t)];
    if (c.separators && t % 2 == 1)
      EXPECT_EQ(x, 2) << "separator at " << t;
    else
      EXPECT_TRUE(x == 0 || x == 1) << "bit " << x << " at " << t;
    int64_t ones = 0;  // count the ones of the prefix from scratch
    for (int64_t u = 0; u <= t; ++u) ones += e.inputs[size_t(u)] == 1;
    want[size_t(t)] = ones % 2;
  }
  EXPECT_EQ(e.targets, want);
}

void check_modadd(const ModAddConfig& c, const TaskExample& e) {
  const int64_t T = c.seq_len;
  std::vector<int64_t> want(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    EXPECT_TRUE(e.inputs[size_t(t)] >= 0 && e.inputs[size_t(t)] < c.modulus);
    int64_t sum = 0;  // the exact prefix sum, reduced once
    for (int64_t u = 0; u <= t; ++u) sum += e.inputs[size_t(u)];
    want[size_t(t)] = sum % c.modulus;
  }
  EXPECT_EQ(e.targets, want);
}

// The 120 permutations in lexicographic order, by std::next_permutation (independent of the
// library's Lehmer code).
const std::vector<Perm5>& lex_perms() {
  static const std::vector<Perm5> perms = [] {
    std::vector<Perm5> v;
    Perm5 p = {0, 1, 2, 3, 4};
    do v.push_back(p);
    while (std::next_permutation(p.begin(), p.end()));
    return v;
  }();
  return perms;
}

int64_t lex_index(const Perm5& p) {
  const auto& v = lex_perms();
  return int64_t(std::find(v.begin(), v.end(), p) - v.begin());
}

bool is_even(const Perm5& p) {  // by cycle decomposition: parity = sum over cycles (len - 1)
  int seen = 0, transpositions = 0;
  for (int i = 0; i < 5; ++i) {
    if (seen & (1 << i)) continue;
    int len = 0;
    for (int j = i; !(seen & (1 << j)); j = p[size_t(j)]) seen |= 1 << j, ++len;
    transpositions += len - 1;
  }
  return transpositions % 2 == 0;
}

void check_s5(const S5Config& c, const TaskExample& e) {
  const int64_t T = c.seq_len;
  Perm5 state = {0, 1, 2, 3, 4};
  std::vector<int64_t> want(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t x = e.inputs[size_t(t)];
    EXPECT_TRUE(x >= 0 && x < 120) << "token " << x;
    if (x < 0 || x >= 120) return;
    const Perm5& px = lex_perms()[size_t(x)];
    if (c.group == PermGroup::A5) {
      EXPECT_TRUE(is_even(px)) << "odd permutation " << x << " in a5";
    }
    Perm5 next{};
    for (int i = 0; i < 5; ++i) next[size_t(i)] = px[size_t(state[size_t(i)])];  // x after state
    state = next;
    want[size_t(t)] = lex_index(state);
  }
  EXPECT_EQ(e.targets, want);
}

// ---------------------------------------------------------------- the generic contract

struct TaskCase {
  std::string name;
  int64_t vocab_size;
  int64_t seq_len;
  // A source of this task with the given seed, batch size, rank and world size.
  std::function<std::unique_ptr<TaskSource>(uint64_t, int64_t, int, int)> make;
};

std::vector<TaskCase> all_tasks() {
  std::vector<TaskCase> v;
  {
    SqarConfig c;
    c.vocab_size = 64, c.seq_len = 40, c.num_kv_pairs = 6;
    v.push_back({"sqar", 64, 40, [c](uint64_t s, int64_t b, int r, int w) mutable {
                   c.seed = s;
                   return std::make_unique<SqarSource>(c, b, r, w);
                 }});
  }
  {
    SetDisjointConfig c;
    c.vocab_size = 64, c.seq_len = 32, c.short_size = 3, c.long_size = 12;
    c.order = SetOrder::LongFirst;
    v.push_back({"set_disjoint", 64, 32, [c](uint64_t s, int64_t b, int r, int w) mutable {
                   c.seed = s;
                   return std::make_unique<SetDisjointSource>(c, b, r, w);
                 }});
  }
  {
    PasskeyConfig c;
    c.vocab_size = 40, c.seq_len = 48, c.num_digits = 4;
    v.push_back({"passkey", 40, 48, [c](uint64_t s, int64_t b, int r, int w) mutable {
                   c.seed = s;
                   return std::make_unique<PasskeySource>(c, b, r, w);
                 }});
  }
  {
    ParityConfig c;
    c.seq_len = 33, c.separators = true;
    v.push_back({"parity", 3, 33, [c](uint64_t s, int64_t b, int r, int w) mutable {
                   c.seed = s;
                   return std::make_unique<ParitySource>(c, b, r, w);
                 }});
  }
  {
    ModAddConfig c;
    c.seq_len = 30, c.modulus = 7;
    v.push_back({"modadd", 7, 30, [c](uint64_t s, int64_t b, int r, int w) mutable {
                   c.seed = s;
                   return std::make_unique<ModAddSource>(c, b, r, w);
                 }});
  }
  {
    S5Config c;
    c.seq_len = 25;
    v.push_back({"s5", 120, 25, [c](uint64_t s, int64_t b, int r, int w) mutable {
                   c.seed = s;
                   return std::make_unique<S5Source>(c, b, r, w);
                 }});
  }
  return v;
}

std::vector<int64_t> row(const Tensor& t, int64_t j) {
  const std::vector<int64_t> all = t.to_vector<int64_t>();
  const int64_t T = t.shape()[1];
  return std::vector<int64_t>(all.begin() + j * T, all.begin() + (j + 1) * T);
}

}  // namespace

// ---------------------------------------------------------------- per-task structure

TEST(Tasks, SqarLabelsAndTokens) {
  SEQMIX_TRACE_SEED();
  for (bool random : {true, false})
    for (int64_t n : {1, 5, 16}) {
      SqarConfig c;
      c.vocab_size = 40, c.seq_len = 2 * n + 7, c.num_kv_pairs = n, c.random_filler = random;
      c.seed = tu::next_seed();
      const SqarSource src(c, 1);
      std::set<int64_t> queried;
      for (uint64_t i = 0; i < 300; ++i) queried.insert(check_sqar(c, src.example(i)));
      EXPECT_EQ(int64_t(queried.size()), n) << "every pair gets queried over 300 examples";
    }
  SqarConfig tight;  // T = 2n + 1: no filler at all
  tight.vocab_size = 10, tight.seq_len = 9, tight.num_kv_pairs = 4, tight.seed = tu::next_seed();
  const SqarSource src(tight, 1);
  for (uint64_t i = 0; i < 100; ++i) check_sqar(tight, src.example(i));
}

TEST(Tasks, SetDisjointLabelsAndBalance) {
  SEQMIX_TRACE_SEED();
  for (SetOrder order : {SetOrder::ShortFirst, SetOrder::LongFirst}) {
    SetDisjointConfig c;
    c.vocab_size = 30, c.seq_len = 40, c.short_size = 2, c.long_size = 20, c.order = order;
    c.seed = tu::next_seed();
    const SetDisjointSource src(c, 1);
    EXPECT_EQ(src.answer_position(), 23);
    const int n = 4000;
    int disjoint = 0;
    for (int i = 0; i < n; ++i) disjoint += check_set_disjoint(c, src.example(uint64_t(i)));
    // Binomial(4000, 1/2): sd = 0.0079, the band is > 6 sd wide on each side.
    EXPECT_NEAR(double(disjoint) / n, 0.5, 0.05) << set_order_name(order);
  }
  // Fixed seed: the answers are balanced for this seed too (the statistic is not seed luck).
  SetDisjointConfig c;
  c.seed = 1234;
  const SetDisjointSource src(c, 1);
  int disjoint = 0;
  for (int i = 0; i < 2000; ++i) disjoint += check_set_disjoint(c, src.example(uint64_t(i)));
  EXPECT_NEAR(disjoint / 2000.0, 0.5, 0.05);
  // The order swaps which set comes first: the first set has short_size elements only in
  // short_first.
  SetDisjointConfig sf = c, lf = c;
  lf.order = SetOrder::LongFirst;
  const TaskExample es = SetDisjointSource(sf, 1).example(3);
  const TaskExample el = SetDisjointSource(lf, 1).example(3);
  EXPECT_EQ(es.inputs[size_t(c.short_size)], 1);
  EXPECT_EQ(el.inputs[size_t(c.long_size)], 1);
}

TEST(Tasks, PasskeyLabelsPositionsAndLengths) {
  SEQMIX_TRACE_SEED();
  for (int64_t T : {11, 64, 257, 4096}) {
    PasskeyConfig c;
    c.vocab_size = 100, c.seq_len = T, c.num_digits = 5, c.seed = tu::next_seed();
    const PasskeySource src(c, 1);
    const int64_t last = T - 2 * c.num_digits - 1;  // largest needle start
    const int n = T > 1000 ? 200 : 2000;
    double mean = 0;
    std::set<int64_t> seen;
    for (int i = 0; i < n; ++i) {
      const int64_t p = check_passkey(c, src.example(uint64_t(i)));
      mean += double(p) / n;
      seen.insert(p);
    }
    // Uniform on [0, last]: the mean is last / 2 (sd of the mean < last / sqrt(12 n)).
    EXPECT_NEAR(mean, last / 2.0, 0.3 * last / std::sqrt(double(n)) * 6 + 1e-9) << "T " << T;
    if (T <= 64) {
      EXPECT_EQ(int64_t(seen.size()), last + 1) << "every start position occurs";
    }
  }
  for (double depth : {0.0, 0.25, 0.5, 1.0}) {
    PasskeyConfig c;
    c.vocab_size = 20, c.seq_len = 203, c.num_digits = 3, c.depth = depth;
    c.seed = tu::next_seed();
    const PasskeySource src(c, 1);
    for (uint64_t i = 0; i < 50; ++i) check_passkey(c, src.example(i));
  }
}

TEST(Tasks, ParityLabels) {
  SEQMIX_TRACE_SEED();
  for (bool sep : {false, true})
    for (int64_t T : {1, 2, 64, 129}) {
      ParityConfig c;
      c.seq_len = T, c.separators = sep, c.seed = tu::next_seed();
      const ParitySource src(c, 1);
      EXPECT_EQ(src.vocab_size(), sep ? 3 : 2);
      int64_t ones = 0, bits = 0;
      for (uint64_t i = 0; i < 200; ++i) {
        const TaskExample e = src.example(i);
        check_parity(c, e);
        for (int64_t x : e.inputs) ones += x == 1, bits += x != 2;
      }
      if (bits >= 1000) {
        EXPECT_NEAR(double(ones) / double(bits), 0.5, 0.05);
      }
    }
}

TEST(Tasks, ModAddLabels) {
  SEQMIX_TRACE_SEED();
  for (int64_t m : {2, 5, 97}) {
    ModAddConfig c;
    c.seq_len = 50, c.modulus = m, c.seed = tu::next_seed();
    const ModAddSource src(c, 1);
    EXPECT_EQ(src.vocab_size(), m);
    std::set<int64_t> residues;
    for (uint64_t i = 0; i < 200; ++i) {
      const TaskExample e = src.example(i);
      check_modadd(c, e);
      residues.insert(e.inputs.begin(), e.inputs.end());
    }
    EXPECT_EQ(int64_t(residues.size()), m) << "every residue occurs";
  }
}

TEST(Tasks, S5IndexingIsLexicographic) {
  const auto& perms = lex_perms();
  ASSERT_EQ(perms.size(), 120u);
  for (int64_t i = 0; i < 120; ++i) {
    EXPECT_EQ(s5_permutation(i), perms[size_t(i)]) << i;
    EXPECT_EQ(s5_index(perms[size_t(i)]), i);
  }
  EXPECT_EQ(s5_permutation(0), (Perm5{0, 1, 2, 3, 4}));
  EXPECT_EQ(s5_permutation(1), (Perm5{0, 1, 2, 4, 3}));
  EXPECT_EQ(s5_permutation(119), (Perm5{4, 3, 2, 1, 0}));
  // (a o b)(i) = a(b(i)): a 3-cycle after a transposition.
  const Perm5 a = {1, 2, 0, 3, 4}, b = {0, 1, 2, 4, 3};
  EXPECT_EQ(s5_compose(a, b), (Perm5{1, 2, 0, 4, 3}));
  EXPECT_EQ(s5_compose(b, a), (Perm5{1, 2, 0, 4, 3}));  // disjoint supports commute
  const Perm5 t01 = {1, 0, 2, 3, 4};
  EXPECT_EQ(s5_compose(a, t01), (Perm5{2, 1, 0, 3, 4}));
  EXPECT_EQ(s5_compose(t01, a), (Perm5{0, 2, 1, 3, 4}));
  expect_error([] { s5_permutation(120); }, ErrorKind::Value, "120");
  expect_error([] { s5_index(Perm5{0, 0, 1, 2, 3}); }, ErrorKind::Value, "not a permutation");
}

TEST(Tasks, S5LabelsMatchAnIndependentComposition) {
  SEQMIX_TRACE_SEED();
  for (PermGroup g : {PermGroup::S5, PermGroup::A5}) {
    S5Config c;
    c.seq_len = 64, c.group = g, c.seed = tu::next_seed();
    const S5Source src(c, 1);
    EXPECT_EQ(src.vocab_size(), 120);
    std::set<int64_t> tokens, labels;
    for (uint64_t i = 0; i < 200; ++i) {
      const TaskExample e = src.example(i);
      check_s5(c, e);
      tokens.insert(e.inputs.begin(), e.inputs.end());
      labels.insert(e.targets.begin(), e.targets.end());
    }
    const size_t order = g == PermGroup::S5 ? 120 : 60;
    EXPECT_EQ(tokens.size(), order) << "every group element occurs as an input";
    EXPECT_EQ(labels.size(), order) << "every group element occurs as a state";
  }
}

// ---------------------------------------------------------------- the BatchSource contract

TEST(Tasks, DeterministicShardableAndResumable) {
  SEQMIX_TRACE_SEED();
  for (const TaskCase& tc : all_tasks()) {
    SCOPED_TRACE(tc.name);
    const uint64_t seed = tu::next_seed();
    auto a = tc.make(seed, 6, 0, 1), b = tc.make(seed, 6, 0, 1);
    auto other = tc.make(seed + 1, 6, 0, 1);
    EXPECT_EQ(a->name(), tc.name);
    EXPECT_EQ(a->vocab_size(), tc.vocab_size);
    EXPECT_EQ(a->seq_len(), tc.seq_len);
    for (int s = 0; s < 4; ++s) {
      const Batch x = a->next(), y = b->next(), z = other->next();
      ASSERT_EQ(x.inputs.shape(), (Shape{6, tc.seq_len}));
      ASSERT_EQ(x.targets.shape(), (Shape{6, tc.seq_len}));
      EXPECT_EQ(x.inputs.dtype(), DType::I64);
      EXPECT_TRUE(tu::bitwise_equal(x.inputs, y.inputs));
      EXPECT_TRUE(tu::bitwise_equal(x.targets, y.targets));
      EXPECT_NE(x.inputs.to_vector<int64_t>(), z.inputs.to_vector<int64_t>()) << "seeds differ";
      // Token ranges; row j of step s is example s * 6 + j.
      for (int64_t v : x.inputs.to_vector<int64_t>()) EXPECT_TRUE(v >= 0 && v < tc.vocab_size);
      int64_t labelled = 0;
      for (int64_t v : x.targets.to_vector<int64_t>()) {
        EXPECT_TRUE(v == kIgnoreIndex || (v >= 0 && v < tc.vocab_size)) << v;
        labelled += v != kIgnoreIndex;
      }
      EXPECT_GT(labelled, 0);
      for (int64_t j = 0; j < 6; ++j) {
        const TaskExample e = a->example(uint64_t(s * 6 + j));
        EXPECT_EQ(row(x.inputs, j), e.inputs);
        EXPECT_EQ(row(x.targets, j), e.targets);
      }
    }
    // 3 ranks of batch 2 == 1 rank of batch 6, step by step.
    std::vector<std::unique_ptr<TaskSource>> ranks;
    for (int r = 0; r < 3; ++r) ranks.push_back(tc.make(seed, 2, r, 3));
    auto one = tc.make(seed, 6, 0, 1);
    for (int s = 0; s < 3; ++s) {
      const Batch ref = one->next();
      std::vector<Batch> got;
      for (auto& r : ranks) got.push_back(r->next());
      for (int64_t j = 0; j < 6; ++j) {
        EXPECT_EQ(row(got[size_t(j % 3)].inputs, j / 3), row(ref.inputs, j));
        EXPECT_EQ(row(got[size_t(j % 3)].targets, j / 3), row(ref.targets, j));
      }
    }
    // A 3-rank state resumes on 1 rank (and on 2 ranks) exactly where it stopped.
    EXPECT_EQ(ranks[1]->state(), (LoaderState{seed, 0, 18}));
    auto resumed = tc.make(seed, 6, 0, 1);
    resumed->restore(ranks[2]->state());
    const Batch want = one->next();
    const Batch got = resumed->next();
    EXPECT_TRUE(tu::bitwise_equal(got.inputs, want.inputs));
    EXPECT_TRUE(tu::bitwise_equal(got.targets, want.targets));
    auto r1of2 = tc.make(seed, 3, 1, 2);
    r1of2->restore(one->state());
    const Batch next_ref = one->next();
    const Batch half = r1of2->next();
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(row(half.inputs, j), row(next_ref.inputs, 2 * j + 1));
    // Bad states and bad batch / rank arguments.
    expect_error([&] { resumed->restore({seed + 1, 0, 0}); }, ErrorKind::Data, "seed");
    expect_error([&] { resumed->restore({seed, 2, 0}); }, ErrorKind::Data, "epoch");
    expect_error([&] { tc.make(seed, 0, 0, 1); }, ErrorKind::Value, "batch_size");
    expect_error([&] { tc.make(seed, 1, 2, 2); }, ErrorKind::Value, "rank 2");
  }
}

TEST(Tasks, TasksSharingASeedAreIndependentStreams) {
  // Each task has its own Philox tag: with one seed, tasks read different streams.
  ModAddConfig m;
  m.seq_len = 64, m.modulus = 2, m.seed = 7;
  ParityConfig p;
  p.seq_len = 64, p.seed = 7;
  // modadd mod 2 and parity have identical distributions; with one stream they would coincide.
  EXPECT_NE(ModAddSource(m, 1).example(0).inputs, ParitySource(p, 1).example(0).inputs);
}

// ---------------------------------------------------------------- config errors

TEST(Tasks, ConfigErrorsNameTheKey) {
  auto sqar = [](auto edit, const std::string& needle) {
    SqarConfig c;
    edit(c);
    expect_error([&] { SqarSource s(c, 1); }, ErrorKind::Config, needle);
  };
  sqar([](SqarConfig& c) { c.vocab_size = 3; }, "sqar.vocab_size");
  sqar([](SqarConfig& c) { c.num_kv_pairs = 0; }, "sqar.num_kv_pairs");
  sqar([](SqarConfig& c) { c.vocab_size = 16, c.num_kv_pairs = 8; }, "sqar.num_kv_pairs = 8");
  sqar([](SqarConfig& c) { c.seq_len = 16; }, "sqar.seq_len = 16");

  auto sd = [](auto edit, const std::string& needle) {
    SetDisjointConfig c;
    edit(c);
    expect_error([&] { SetDisjointSource s(c, 1); }, ErrorKind::Config, needle);
  };
  sd([](SetDisjointConfig& c) { c.short_size = 0; }, "set_disjoint.short_size");
  sd([](SetDisjointConfig& c) { c.long_size = 3; }, "set_disjoint.long_size");
  sd([](SetDisjointConfig& c) { c.vocab_size = 24; }, "set_disjoint.vocab_size");
  sd([](SetDisjointConfig& c) { c.seq_len = 21; }, "set_disjoint.seq_len");
  expect_error([] { parse_set_order("shortest"); }, ErrorKind::Config, "set_disjoint.order");
  EXPECT_EQ(parse_set_order("long_first"), SetOrder::LongFirst);
  EXPECT_EQ(parse_set_order(set_order_name(SetOrder::ShortFirst)), SetOrder::ShortFirst);

  auto pk = [](auto edit, const std::string& needle) {
    PasskeyConfig c;
    edit(c);
    expect_error([&] { PasskeySource s(c, 1); }, ErrorKind::Config, needle);
  };
  pk([](PasskeyConfig& c) { c.vocab_size = 12; }, "passkey.vocab_size");
  pk([](PasskeyConfig& c) { c.num_digits = 0; }, "passkey.num_digits");
  pk([](PasskeyConfig& c) { c.seq_len = 10; }, "passkey.seq_len");
  pk([](PasskeyConfig& c) { c.depth = 1.5; }, "passkey.depth");
  pk([](PasskeyConfig& c) { c.depth = std::nan(""); }, "passkey.depth");

  expect_error(
      [] {
        ParityConfig c;
        c.seq_len = 0;
        ParitySource s(c, 1);
      },
      ErrorKind::Config, "parity.seq_len");
  expect_error(
      [] {
        ModAddConfig c;
        c.modulus = 1;
        ModAddSource s(c, 1);
      },
      ErrorKind::Config, "modadd.modulus");
  expect_error(
      [] {
        ModAddConfig c;
        c.seq_len = 0;
        ModAddSource s(c, 1);
      },
      ErrorKind::Config, "modadd.seq_len");
  expect_error(
      [] {
        S5Config c;
        c.seq_len = 0;
        S5Source s(c, 1);
      },
      ErrorKind::Config, "s5.seq_len");
  expect_error([] { parse_perm_group("s4"); }, ErrorKind::Config, "s5.group");
  EXPECT_EQ(parse_perm_group("a5"), PermGroup::A5);
}
