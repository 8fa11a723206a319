// HDF5 token datasets: `seqmix prepare` (prepare_dataset) tokenizes text files into DIR/data.h5;
// TokenDataset reads it back. Layout (format version 1, see data/README.md for every field):
//
//   /                 attrs: format_version (i64), tokenizer_kind ("byte"|"char"), tokenizer
//                     (description, tokenizer.h), vocab_size (i64), source_files (string[D]),
//                     total_tokens (i64), val_fraction, test_fraction (f64), split_rule (string)
//   /<split>/tokens   [N_split] u16 when vocab_size <= 65536, else i32 (contiguous)
//   /<split>/doc_offsets [D + 1] i64: document d (input file d) is tokens[off[d], off[d+1])
//   /<split>          attrs: num_tokens (i64), num_documents (i64)
//
// Splits: train, val (always present, possibly empty), test (only when test_fraction > 0). The
// split is taken at the end of *each document*: a document of L tokens gives its first
// L - floor(L*v) - floor(L*t) tokens to train, the next floor(L*v) to val and the last
// floor(L*t) to test, so every source file is represented in every split.
//
// Errors: a missing directory or file, a file that is not HDF5 or is truncated/corrupt, a missing
// dataset or attribute, a wrong format version and out-of-range tokens are Error(Data) naming the
// file (and the dataset or attribute). Host code only.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"

namespace seqmix::data {

inline constexpr int64_t kTokenDatasetFormatVersion = 1;
inline constexpr const char* kTokenDatasetFileName = "data.h5";

// ---- writing ----

struct PrepareOptions {
  std::vector<std::string> inputs;  // text files, one document each
  std::string output_dir;           // created when missing; receives data.h5
  TokenizerKind tokenizer = TokenizerKind::Byte;
  double val_fraction = 0.1;   // in [0, 1)
  double test_fraction = 0.0;  // in [0, 1), val_fraction + test_fraction < 1
};

struct PrepareSummary {
  std::string path;  // the written .h5 file
  std::string tokenizer_kind;
  int64_t vocab_size = 0;
  std::string token_dtype;  // "u16" or "i32"
  int64_t num_documents = 0;
  int64_t train_tokens = 0, val_tokens = 0, test_tokens = 0;
  bool has_test = false;
};

// Reads the input files, builds the tokenizer, encodes and writes OUTPUT_DIR/data.h5 atomically
// (a temporary file in the same directory, closed, then renamed over the target). Errors:
// Error(Usage) for bad fractions or no inputs; Error(Data) for a missing/unreadable/empty input
// file, invalid UTF-8 (char tokenizer), an empty train split, or a failed write.
PrepareSummary prepare_dataset(const PrepareOptions& opts);

// The writer under prepare_dataset: `documents[d]` are the token ids (in [0, vocab_size)) of
// source `sources[d]`. Writes `file` atomically. Same errors.
PrepareSummary write_token_dataset(const std::string& file, const Tokenizer& tokenizer,
                                   const std::vector<std::string>& sources,
                                   const std::vector<std::vector<int32_t>>& documents,
                                   double val_fraction, double test_fraction);

// ---- reading ----

class TokenDataset {
 public:
  // `path` is a directory holding data.h5 (as written by prepare) or the .h5 file itself.
  explicit TokenDataset(const std::string& path);
  ~TokenDataset();
  TokenDataset(TokenDataset&&) noexcept;
  TokenDataset& operator=(TokenDataset&&) noexcept;
  TokenDataset(const TokenDataset&) = delete;
  TokenDataset& operator=(const TokenDataset&) = delete;

  const std::string& file() const;  // the .h5 file
  int64_t vocab_size() const;
  const Tokenizer& tokenizer() const;
  const std::vector<std::string>& source_files() const;

  bool has_split(std::string_view split) const;  // "train", "val", "test"
  // Error(Data) naming the file when the split is absent.
  int64_t num_tokens(std::string_view split) const;
  std::vector<int64_t> doc_offsets(std::string_view split) const;  // [D + 1]
  // Reads tokens [start, start + n) of `split` into out[0, n). Error(Value) for a range outside
  // the split; Error(Data) for a failed read or a token outside [0, vocab_size).
  void read(std::string_view split, int64_t start, int64_t n, int64_t* out) const;
  std::vector<int64_t> read(std::string_view split, int64_t start, int64_t n) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqmix::data
