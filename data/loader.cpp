// TokenWindowLoader: shuffled (per-epoch Philox permutation) or sequential token windows, sharded
// over ranks by global sample index. Order and resume semantics in loader.h.
#include "data/loader.h"

#include <algorithm>

#include "core/check.h"
#include "data/philox_stream.h"

namespace seqmix::data {

TokenWindowLoader::TokenWindowLoader(const TokenDataset& dataset, std::string split,
                                     int64_t batch_size, int64_t seq_len, uint64_t seed, int rank,
                                     int world_size, bool shuffle)
    : ds_(&dataset),
      batch_size_(batch_size),
      seq_len_(seq_len),
      seed_(seed),
      rank_(rank),
      world_size_(world_size),
      shuffle_(shuffle) {
  init(std::move(split));
}

TokenWindowLoader::TokenWindowLoader(const std::string& path, std::string split, int64_t batch_size,
                                     int64_t seq_len, uint64_t seed, int rank, int world_size,
                                     bool shuffle)
    : owned_(std::make_unique<TokenDataset>(path)),
      ds_(owned_.get()),
      batch_size_(batch_size),
      seq_len_(seq_len),
      seed_(seed),
      rank_(rank),
      world_size_(world_size),
      shuffle_(shuffle) {
  init(std::move(split));
}

void TokenWindowLoader::init(std::string split) {
  split_ = std::move(split);
  SEQMIX_CHECK(batch_size_ >= 1, "loader: batch_size must be >= 1, got {}", batch_size_);
  SEQMIX_CHECK(seq_len_ >= 1, "loader: seq_len must be >= 1, got {}", seq_len_);
  SEQMIX_CHECK(world_size_ >= 1 && rank_ >= 0 && rank_ < world_size_,
               "loader: rank {} is not in [0, world_size = {})", rank_, world_size_);
  const int64_t n = ds_->num_tokens(split_);  // Error(Data) when the split is missing
  num_windows_ = n >= 1 ? (n - 1) / seq_len_ : 0;
  SEQMIX_CHECK_KIND(Data, num_windows_ >= 1,
                    "{}: split '{}' has {} tokens, too few for one window of seq_len + 1 = {} "
                    "tokens",
                    ds_->file(), split_, n, seq_len_ + 1);
  window_buf_.resize(size_t(seq_len_ + 1));
}

void TokenWindowLoader::ensure_permutation(uint64_t epoch) {
  if (perm_epoch_ == epoch) return;
  perm_.resize(size_t(num_windows_));
  for (int64_t i = 0; i < num_windows_; ++i) perm_[size_t(i)] = i;
  PhiloxStream s(seed_, epoch);
  for (int64_t i = num_windows_ - 1; i > 0; --i) {
    const int64_t j = int64_t(s.below(uint64_t(i) + 1));
    std::swap(perm_[size_t(i)], perm_[size_t(j)]);
  }
  perm_epoch_ = epoch;
}

int64_t TokenWindowLoader::window_of_sample(uint64_t g) {
  const uint64_t W = uint64_t(num_windows_);
  if (!shuffle_) {
    SEQMIX_CHECK(g < W, "loader: sample {} is past the {} windows of split '{}'", g, W, split_);
    return int64_t(g);
  }
  ensure_permutation(g / W);
  return perm_[size_t(g % W)];
}

Batch TokenWindowLoader::next() {
  const uint64_t W = uint64_t(num_windows_);
  const uint64_t step = uint64_t(batch_size_) * uint64_t(world_size_);
  SEQMIX_CHECK(!exhausted(),
               "loader: the evaluation pass over split '{}' is complete ({} windows); restore() "
               "a state to start again",
               split_, W);
  // This rank's global samples of the step: c + rank + j * world_size.
  std::vector<uint64_t> samples;
  samples.reserve(size_t(batch_size_));
  for (int64_t j = 0; j < batch_size_; ++j) {
    const uint64_t g = consumed_ + uint64_t(rank_) + uint64_t(j) * uint64_t(world_size_);
    if (!shuffle_ && g >= W) break;
    samples.push_back(g);
  }
  const int64_t B = int64_t(samples.size()), T = seq_len_;
  Batch b;
  b.inputs = Tensor::empty({B, T}, DType::I64);
  b.targets = Tensor::empty({B, T}, DType::I64);
  int64_t* in = B ? b.inputs.data<int64_t>() : nullptr;
  int64_t* tg = B ? b.targets.data<int64_t>() : nullptr;
  for (int64_t r = 0; r < B; ++r) {
    const int64_t w = window_of_sample(samples[size_t(r)]);
    ds_->read(split_, w * T, T + 1, window_buf_.data());
    std::copy(window_buf_.begin(), window_buf_.begin() + T, in + r * T);
    std::copy(window_buf_.begin() + 1, window_buf_.end(), tg + r * T);
  }
  consumed_ = shuffle_ ? consumed_ + step : std::min(consumed_ + step, W);
  return b;
}

LoaderState TokenWindowLoader::state() const {
  return {seed_, shuffle_ ? consumed_ / uint64_t(num_windows_) : 0, consumed_};
}

void TokenWindowLoader::restore(const LoaderState& s) {
  const uint64_t W = uint64_t(num_windows_);
  SEQMIX_CHECK_KIND(Data, s.seed == seed_,
                    "loader state: seed {} does not match this loader's seed {}", s.seed, seed_);
  if (shuffle_) {
    SEQMIX_CHECK_KIND(Data, s.epoch == s.samples_consumed / W,
                      "loader state: epoch {} does not match {} samples consumed over {} windows "
                      "(was the dataset or seq_len changed?)",
                      s.epoch, s.samples_consumed, W);
  } else {
    SEQMIX_CHECK_KIND(Data, s.epoch == 0 && s.samples_consumed <= W,
                      "loader state: evaluation position {} (epoch {}) is outside the {} windows "
                      "of split '{}'",
                      s.samples_consumed, s.epoch, W, split_);
  }
  consumed_ = s.samples_consumed;
}

int64_t TokenWindowLoader::vocab_size() const {
  return ds_->vocab_size();
}

}  // namespace seqmix::data
