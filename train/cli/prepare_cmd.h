// `seqmix prepare`: tokenize text files into an HDF5 token dataset (data/token_dataset.h).
#pragma once

namespace CLI {
class App;
}

namespace seqmix::cli {

// Adds the `prepare` subcommand to `app`:
//   seqmix prepare --input FILE... --output DIR --tokenizer byte|char
//                  [--val-fraction F (0.1)] [--test-fraction F (0)]
// Writes DIR/data.h5 and prints a summary. Errors: usage (exit 2) for missing/bad options, data
// (exit 3) for missing/empty/invalid input files or a failed write.
void add_prepare_command(CLI::App& app);

}  // namespace seqmix::cli
