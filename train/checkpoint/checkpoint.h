// Training checkpoints: one HDF5 file per checkpoint, written atomically, verified on load.
// File layout (format version 1; see README.md):
//   /meta            group; attributes format_version (i64), step (i64), tokens_seen (i64),
//                    wall_time_s (f64), git_revision (string), then, written last,
//                    checksum (u64, FNV-1a over everything below) and complete (i32 = 1)
//   /config          scalar string dataset (the resolved YAML text)
//   /model/<name>    one dataset per tensor, the dotted name used as the HDF5 link name as is
//                    (dots are legal in HDF5 names); attribute dtype (string)
//   /optim/<name>    same ("m.<param>", "v.<param>", "step", ...)
//   /rng/<key>       u64 [n] datasets          /data/<key>     u64 [n] datasets
//   /metrics/<key>   f64 scalar datasets       /extra/<key>    string datasets
// Groups track link creation order, so load returns model/optim tensors in the saved order.
// Tensor bytes round-trip bit-exactly (f32, f64, bf16, f16, i32, i64, u8; 0-d and empty shapes).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace seqmix {

struct CheckpointData {
  int64_t step = 0;
  int64_t tokens_seen = 0;
  double wall_time_s = 0;
  std::string git_revision;
  std::string config_yaml;                            // resolved YAML text
  std::vector<std::pair<std::string, Tensor>> model;  // dotted name -> tensor (any device)
  std::vector<std::pair<std::string, Tensor>> optim;  // "m.<name>", "v.<name>", "step", ...
  std::map<std::string, std::vector<uint64_t>> rng;   // generator states
  std::map<std::string, std::vector<uint64_t>> data;  // loader state
  std::map<std::string, double> metrics;
  std::map<std::string, std::string> extra;  // free-form strings
};

constexpr int64_t kCheckpointFormatVersion = 1;

// Writes `ckpt` to `path` atomically: everything goes to "<path>.tmp" (parent directories are
// created), which is flushed, closed and fsync'ed, then renamed over `path` (and the directory
// fsync'ed). An interrupted save leaves at most a stale .tmp and never touches an existing file
// at `path`. Tensors on a GPU are copied to the host first (synchronises). Names must be
// non-empty, unique within their section, and contain no '/' (Error(Value) otherwise); any I/O or
// HDF5 failure is an Error(Checkpoint) naming the file.
void save_checkpoint(const std::string& path, const CheckpointData& ckpt);

// Reads a checkpoint (tensors on the CPU). A missing, truncated, incomplete (no completeness
// marker), corrupt (checksum mismatch) or newer-format file raises Error(Checkpoint) naming the
// file and what is wrong.
CheckpointData load_checkpoint(const std::string& path);

// run_dir/checkpoints/step_00001000.h5 (8 digits, more when the step needs them).
std::string checkpoint_path(const std::string& run_dir, int64_t step);

// Complete checkpoints in run_dir/checkpoints, oldest first (by step). A file counts when its
// name is step_<digits>.h5 and it opens with the completeness marker set; .tmp files and
// truncated or unreadable files are not listed (the checksum is verified only by load).
std::vector<std::string> list_checkpoints(const std::string& run_dir);

// The newest entry of list_checkpoints(run_dir), or "" when there is none.
std::string latest_checkpoint(const std::string& run_dir);

// Deletes all but the newest `keep_last` complete checkpoints (keep_last <= 0 keeps everything).
// Incomplete files and .tmp files are left alone.
void prune_checkpoints(const std::string& run_dir, int keep_last);

}  // namespace seqmix
