// Synthetic recall and state-tracking tasks generated in-process as BatchSources (batch.h):
// sqar, set_disjoint, passkey (recall) and parity, modadd, s5 (state tracking). Every task:
//
//   inputs  I64 [B, T]: token ids in [0, vocab_size())
//   targets I64 [B, T]: targets[t] = the token to predict after reading inputs[0..t] (the label
//                       shift is built in, as MQAR), kIgnoreIndex (-100) where no loss is taken
//
// Determinism, sharding and resume are MQAR's (mqar.h): example i is a pure function of
// (seed, i) -- it reads the Philox stream (key = seed ^ <task tag>, offset = i), each task with
// its own tag, so tasks sharing a seed are independent -- global sample g is example g and
// belongs to rank g % world_size, state = {seed, 0, samples consumed}. Integer draws are exact
// (PhiloxStream::below), so examples are reproducible on every platform. Config validation
// raises Error(Config) naming the key ("<task>.<key>"); batch_size < 1 or a bad rank is
// Error(Value). Metric: accuracy at the positions whose target is not -100 (docs/evaluation.md).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/batch.h"
#include "data/philox_stream.h"

namespace seqmix::data {

// ------------------------------------------------------------------------------------------
// Common machinery: the example <-> (seed, index) contract, batches, sharding, resume.

struct TaskExample {
  std::vector<int64_t> inputs;   // [T]
  std::vector<int64_t> targets;  // [T], -100 where no loss is taken
};

class TaskSource : public BatchSource {
 public:
  // Example `index` (a pure function of (seed, index)).
  TaskExample example(uint64_t index) const;
  // This rank's next batch_size examples: global samples consumed + rank + j * world_size.
  Batch next() override;
  LoaderState state() const override { return {seed_, 0, consumed_}; }
  // Error(Data) when the state's seed differs from this source's seed or its epoch is not 0.
  void restore(const LoaderState& state) override;
  int64_t vocab_size() const override { return vocab_size_; }
  int64_t seq_len() const { return seq_len_; }
  const std::string& name() const { return name_; }

 protected:
  TaskSource(std::string name, uint64_t stream_tag, int64_t vocab_size, int64_t seq_len,
             uint64_t seed, int64_t batch_size, int rank, int world_size);
  // Writes one example; `targets` arrives filled with kIgnoreIndex.
  virtual void fill(PhiloxStream& s, int64_t* inputs, int64_t* targets) const = 0;

 private:
  void fill_index(uint64_t index, int64_t* inputs, int64_t* targets) const;

  std::string name_;
  uint64_t stream_tag_, seed_;
  int64_t vocab_size_, seq_len_, batch_size_;
  int rank_, world_size_;
  uint64_t consumed_ = 0;
};

// ------------------------------------------------------------------------------------------
// sqar: single-query associative recall. With V = vocab_size, T = seq_len, n = num_kv_pairs:
// n distinct keys uniform from [1, V/2) and n distinct values uniform from [V/2, V) (MQAR's
// token conventions) form the context k_0 v_0 ... k_{n-1} v_{n-1} at positions [0, 2n); ONE
// pair q, uniform in [0, n), is queried by its key at the last position T - 1, whose target is
// v_q (every other target is -100). Positions [2n, T - 1) are filler: 0, or with random_filler a
// token uniform in [0, V) other than k_q (so the queried key occurs exactly twice).
// Limits: vocab_size >= 4, num_kv_pairs >= 1 and <= V/2 - 1 keys and <= V - V/2 values,
// seq_len >= 2 * num_kv_pairs + 1.
inline constexpr uint64_t kSqarStreamTag = 0x7371617200000000ull;  // "sqar"

struct SqarConfig {
  int64_t vocab_size = 8192;
  int64_t seq_len = 64;
  int64_t num_kv_pairs = 8;
  bool random_filler = true;
  uint64_t seed = 0;
};
void validate(const SqarConfig& cfg);

class SqarSource : public TaskSource {
 public:
  SqarSource(const SqarConfig& cfg, int64_t batch_size, int rank = 0, int world_size = 1);
  const SqarConfig& config() const { return cfg_; }

 private:
  void fill(PhiloxStream& s, int64_t* inputs, int64_t* targets) const override;
  SqarConfig cfg_;
};

// ------------------------------------------------------------------------------------------
// set_disjoint: set disjointness of Just Read Twice (Arora et al., 2024). Tokens: 0 pad,
// 1 separator, 2 query marker, 3 answer "disjoint", 4 answer "not disjoint", set elements
// [5, V). Two sets of distinct elements, S (short_size) and L (long_size), are listed in random
// order: with order = short_first the input is S, 1, L, 2 (long_first: L, 1, S, 2) from
// position 0, then pad (0) up to T. The target at the query marker (position
// short_size + long_size + 1) is 3 when S and L are disjoint and 4 otherwise; all other
// targets are -100. Each example is disjoint with probability 1/2; otherwise the sets share
// exactly one element (the hardest case: one collision to detect). Elements are drawn as
// short_size + long_size distinct tokens, and for an intersecting example one element of the
// second-listed set, at a uniform position, is replaced by a uniform element of the first.
// Limits: 1 <= short_size <= long_size, short_size + long_size <= V - 5,
// seq_len >= short_size + long_size + 2.
inline constexpr uint64_t kSetDisjointStreamTag = 0x7364697300000000ull;  // "sdis"
inline constexpr int64_t kSetPad = 0, kSetSeparator = 1, kSetQuery = 2, kSetDisjoint = 3,
                         kSetNotDisjoint = 4, kSetFirstElement = 5;

enum class SetOrder { ShortFirst, LongFirst };
// "short_first" / "long_first"; anything else is Error(Config) naming set_disjoint.order.
SetOrder parse_set_order(std::string_view s);
const char* set_order_name(SetOrder order);

struct SetDisjointConfig {
  int64_t vocab_size = 256;
  int64_t seq_len = 64;
  int64_t short_size = 4;
  int64_t long_size = 16;
  SetOrder order = SetOrder::ShortFirst;
  uint64_t seed = 0;
};
void validate(const SetDisjointConfig& cfg);

class SetDisjointSource : public TaskSource {
 public:
  SetDisjointSource(const SetDisjointConfig& cfg, int64_t batch_size, int rank = 0,
                    int world_size = 1);
  const SetDisjointConfig& config() const { return cfg_; }
  // Position of the query marker (where the answer is labelled).
  int64_t answer_position() const { return cfg_.short_size + cfg_.long_size + 1; }

 private:
  void fill(PhiloxStream& s, int64_t* inputs, int64_t* targets) const override;
  SetDisjointConfig cfg_;
};

// ------------------------------------------------------------------------------------------
// passkey: needle retrieval at any context length. Tokens: 0..9 digits, 10 passkey marker,
// 11 query marker, filler [12, V). With L = num_digits and H = T - L (the haystack): the passkey
// d_1..d_L (digits uniform in 0..9) follows the marker at positions [p, p + L + 1) of the
// haystack, where p is uniform in [0, H - L - 1] or, with depth in [0, 1],
// p = round(depth * (H - L - 1)); every other haystack position is filler, uniform in [12, V).
// The last L positions hold the query marker at T - L and the teacher-forced answer
// d_1..d_{L-1} at [T - L + 1, T); targets[T - L + j] = d_{j+1} for j in [0, L) (the last L
// positions), -100 elsewhere.
// Limits: vocab_size >= 13, num_digits >= 1, seq_len >= 2 * num_digits + 1, depth in [0, 1] or
// negative (uniform) and not NaN.
inline constexpr uint64_t kPasskeyStreamTag = 0x706B657900000000ull;  // "pkey"
inline constexpr int64_t kPasskeyMarker = 10, kPasskeyQuery = 11, kPasskeyFirstFiller = 12;

struct PasskeyConfig {
  int64_t vocab_size = 256;
  int64_t seq_len = 1024;
  int64_t num_digits = 5;
  double depth = -1.0;  // < 0: uniform position; in [0, 1]: fixed depth fraction
  uint64_t seed = 0;
};
void validate(const PasskeyConfig& cfg);

class PasskeySource : public TaskSource {
 public:
  PasskeySource(const PasskeyConfig& cfg, int64_t batch_size, int rank = 0, int world_size = 1);
  const PasskeyConfig& config() const { return cfg_; }

 private:
  void fill(PhiloxStream& s, int64_t* inputs, int64_t* targets) const override;
  PasskeyConfig cfg_;
};

// ------------------------------------------------------------------------------------------
// parity: running parity of a bit string. Bits b_j are uniform in {0, 1}. Without separators
// the input is b_0 b_1 ... b_{T-1}; with separators it is b_0 2 b_1 2 ... (bits at even
// positions, separator token 2 at odd positions). targets[t] = (sum of the bits among
// inputs[0..t]) mod 2 at EVERY position (a separator's target repeats the parity so far).
// vocab_size() = 2, or 3 with separators. Limits: seq_len >= 1.
inline constexpr uint64_t kParityStreamTag = 0x7072747900000000ull;  // "prty"
inline constexpr int64_t kParitySeparator = 2;

struct ParityConfig {
  int64_t seq_len = 64;
  bool separators = false;
  uint64_t seed = 0;
};
void validate(const ParityConfig& cfg);

class ParitySource : public TaskSource {
 public:
  ParitySource(const ParityConfig& cfg, int64_t batch_size, int rank = 0, int world_size = 1);
  const ParityConfig& config() const { return cfg_; }

 private:
  void fill(PhiloxStream& s, int64_t* inputs, int64_t* targets) const override;
  ParityConfig cfg_;
};

// ------------------------------------------------------------------------------------------
// modadd: running sum modulo m. Inputs x_t uniform residues in [0, m) (token id = residue);
// targets[t] = (x_0 + ... + x_t) mod m at every position. vocab_size() = m.
// Limits: modulus >= 2, seq_len >= 1.
inline constexpr uint64_t kModAddStreamTag = 0x6D61646400000000ull;  // "madd"

struct ModAddConfig {
  int64_t seq_len = 64;
  int64_t modulus = 5;
  uint64_t seed = 0;
};
void validate(const ModAddConfig& cfg);

class ModAddSource : public TaskSource {
 public:
  ModAddSource(const ModAddConfig& cfg, int64_t batch_size, int rank = 0, int world_size = 1);
  const ModAddConfig& config() const { return cfg_; }

 private:
  void fill(PhiloxStream& s, int64_t* inputs, int64_t* targets) const override;
  ModAddConfig cfg_;
};

// ------------------------------------------------------------------------------------------
// s5: the S5 word problem (permutation composition, "The Illusion of State", DeltaProduct).
// Indexing (fixed): a permutation p of {0..4} is the array (p(0), ..., p(4)); token / label
// id = the rank of that array in lexicographic order, 0..119 (0 = identity 01234, 1 = 01243,
// ..., 119 = 43210), i.e. its Lehmer code sum_i c_i * (4 - i)! with c_i = #{j > i: p(j) < p(i)}.
// Inputs x_t are uniform over the group (all 120, or the 60 even permutations with
// group = a5); the state s_t = x_t o s_{t-1} (s_{-1} = identity: the newest permutation is
// applied last, s_t(i) = x_t(s_{t-1}(i))), and targets[t] = index(s_t) at every position.
// vocab_size() = 120 in both groups. Limits: seq_len >= 1.
inline constexpr uint64_t kS5StreamTag = 0x7335706D00000000ull;  // "s5pm"

using Perm5 = std::array<int, 5>;
// The permutation of index `index` in [0, 120) (Error(Value) otherwise) and the inverse map.
Perm5 s5_permutation(int64_t index);
int64_t s5_index(const Perm5& p);
// (a o b)(i) = a(b(i)): b first, then a.
Perm5 s5_compose(const Perm5& a, const Perm5& b);

enum class PermGroup { S5, A5 };
// "s5" / "a5"; anything else is Error(Config) naming s5.group.
PermGroup parse_perm_group(std::string_view s);

struct S5Config {
  int64_t seq_len = 64;
  PermGroup group = PermGroup::S5;
  uint64_t seed = 0;
};
void validate(const S5Config& cfg);

class S5Source : public TaskSource {
 public:
  S5Source(const S5Config& cfg, int64_t batch_size, int rank = 0, int world_size = 1);
  const S5Config& config() const { return cfg_; }

 private:
  void fill(PhiloxStream& s, int64_t* inputs, int64_t* targets) const override;
  S5Config cfg_;
  std::vector<int64_t> alphabet_;                    // the token ids inputs are drawn from
  std::array<std::array<int16_t, 120>, 120> table_;  // table_[x][s] = index(x o s)
};

}  // namespace seqmix::data
