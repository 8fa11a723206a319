// TokenWindowLoader: batches of contiguous token windows from one split of a TokenDataset.
//
// Windows: window w covers tokens [w*T, w*T + T + 1) of the split (T = seq_len), so windows
// overlap by one token and W = (N - 1) / T windows fit in a split of N tokens; a sample is
// inputs = window[0, T), targets = window[1, T + 1) (no ignored positions).
//
// Order (training, shuffle = true): an infinite stream of global samples; global sample g lies in
// epoch e = g / W at position p = g % W and is window perm_e[p], where perm_e is a Fisher-Yates
// permutation of [0, W) drawn from the Philox stream (key = seed, offset = e) (philox_stream.h).
// Order (evaluation, shuffle = false): window g for g in [0, W), once; then exhausted().
//
// Ranks: global sample g belongs to rank g % world_size; next() on rank r returns the samples
// c + r + j*world_size, j in [0, batch_size), where c = samples_consumed, and advances
// samples_consumed by batch_size * world_size (all ranks step together). In evaluation mode the
// last step may be partial: a rank returns only its samples below W, possibly [0, T] tensors.
// LoaderState counts global samples, so restore() continues exactly, with the same or a
// different world size (batch_size * world_size samples per step from the restored position).
//
//   Batch.inputs / targets: I64 [B, T] on the CPU
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/token_dataset.h"

namespace seqmix::data {

class TokenWindowLoader : public BatchSource {
 public:
  // `dataset` must outlive the loader. Error(Value) for batch_size/seq_len < 1 or a bad
  // rank/world_size; Error(Data) when the split is missing or shorter than one window
  // (seq_len + 1 tokens).
  TokenWindowLoader(const TokenDataset& dataset, std::string split, int64_t batch_size,
                    int64_t seq_len, uint64_t seed, int rank = 0, int world_size = 1,
                    bool shuffle = true);
  // Opens the dataset at `path` (a directory holding data.h5, or the file) and owns it.
  TokenWindowLoader(const std::string& path, std::string split, int64_t batch_size, int64_t seq_len,
                    uint64_t seed, int rank = 0, int world_size = 1, bool shuffle = true);

  Batch next() override;
  LoaderState state() const override;
  // Error(Data) when the state's seed differs from this loader's, or its epoch does not match
  // samples_consumed / num_windows() (the dataset or seq_len changed since it was saved).
  void restore(const LoaderState& state) override;
  int64_t vocab_size() const override;

  int64_t num_windows() const { return num_windows_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t batch_size() const { return batch_size_; }
  bool shuffle() const { return shuffle_; }
  // The window (its first token is window * seq_len) of global sample g.
  int64_t window_of_sample(uint64_t g);
  // Evaluation mode: every window has been handed out (always false when shuffling).
  bool exhausted() const { return !shuffle_ && consumed_ >= uint64_t(num_windows_); }
  const TokenDataset& dataset() const { return *ds_; }

 private:
  void init(std::string split);
  void ensure_permutation(uint64_t epoch);

  std::unique_ptr<TokenDataset> owned_;
  const TokenDataset* ds_ = nullptr;
  std::string split_;
  int64_t batch_size_ = 0, seq_len_ = 0;
  uint64_t seed_ = 0;
  int rank_ = 0, world_size_ = 1;
  bool shuffle_ = true;
  int64_t num_windows_ = 0;
  uint64_t consumed_ = 0;
  uint64_t perm_epoch_ = ~uint64_t(0);
  std::vector<int64_t> perm_;
  std::vector<int64_t> window_buf_;
};

}  // namespace seqmix::data
