// `seqmix prepare`: reads text files, builds the byte or char tokenizer, writes DIR/data.h5
// (train / val / test splits taken at the end of each document) and prints a summary.
#include "train/cli/prepare_cmd.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "data/token_dataset.h"

namespace seqmix::cli {

namespace {

struct PrepareArgs {
  std::vector<std::string> inputs;
  std::string output;
  std::string tokenizer;
  double val_fraction = 0.1;
  double test_fraction = 0.0;
};

void run_prepare(const PrepareArgs& a) {
  SEQMIX_CHECK_KIND(Usage, !a.inputs.empty(), "prepare: --input FILE... is required");
  SEQMIX_CHECK_KIND(Usage, !a.output.empty(), "prepare: --output DIR is required");
  SEQMIX_CHECK_KIND(Usage, !a.tokenizer.empty(), "prepare: --tokenizer byte|char is required");
  SEQMIX_CHECK_KIND(Usage, a.tokenizer == "byte" || a.tokenizer == "char",
                    "prepare: --tokenizer must be byte or char, got '{}'", a.tokenizer);
  data::PrepareOptions o;
  o.inputs = a.inputs;
  o.output_dir = a.output;
  o.tokenizer = data::parse_tokenizer_kind(a.tokenizer);
  o.val_fraction = a.val_fraction;
  o.test_fraction = a.test_fraction;
  const data::PrepareSummary s = data::prepare_dataset(o);
  fmt::print("wrote {}\n", s.path);
  fmt::print("  documents:  {}\n", s.num_documents);
  fmt::print("  tokenizer:  {} (vocab {}, tokens stored as {})\n", s.tokenizer_kind, s.vocab_size,
             s.token_dtype);
  fmt::print("  train:      {} tokens\n", s.train_tokens);
  fmt::print("  val:        {} tokens\n", s.val_tokens);
  if (s.has_test) fmt::print("  test:       {} tokens\n", s.test_tokens);
}

}  // namespace

void add_prepare_command(CLI::App& app) {
  auto args = std::make_shared<PrepareArgs>();
  CLI::App* c = app.add_subcommand("prepare", "Tokenize text files into an HDF5 token dataset");
  c->add_option("--input", args->inputs, "text files, one document each")->expected(1, -1);
  c->add_option("--output", args->output, "output directory (receives data.h5)");
  c->add_option("--tokenizer", args->tokenizer,
                "byte (vocab 256) or char (the distinct UTF-8 characters of the input)");
  c->add_option("--val-fraction", args->val_fraction,
                "fraction of each document (its end) kept for validation")
      ->capture_default_str();
  c->add_option("--test-fraction", args->test_fraction,
                "fraction of each document (after val) kept for test; 0 = no test split")
      ->capture_default_str();
  c->callback([args] { run_prepare(*args); });
}

}  // namespace seqmix::cli
