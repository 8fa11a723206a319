// train/checkpoint: bit-exact round trip of every section (odd shapes, 0-d, empty tensors, empty
// maps), atomic saves (leftover .tmp and truncated files are not listed and do not load),
// completeness marker, checksum detection of flipped tensor bytes, keep_last pruning,
// latest_checkpoint and checkpoint_path.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "tests/testing/testing.h"
#include "train/checkpoint/checkpoint.h"

using namespace seqmix;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("seqmix_ckpt_" + std::to_string(::getpid()) + "_" + std::to_string(tu::next_seed()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

// Runs f, expects Error(Checkpoint) whose message contains every string of `needles`.
void expect_ckpt_error(const std::function<void()>& f, std::vector<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected Error(Checkpoint)";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Checkpoint) << e.message();
    for (const std::string& n : needles)
      EXPECT_NE(e.message().find(n), std::string::npos) << "'" << n << "' not in: " << e.message();
  }
}

CheckpointData sample(int64_t step) {
  CheckpointData d;
  d.step = step;
  d.tokens_seen = step * 4096 + 17;
  d.wall_time_s = 1234.5678901234567 + double(step);
  d.git_revision = "0123abcd-dirty";
  d.config_yaml = "model:\n  d_model: 64\n  layers: {pattern: \"GGA\", repeat: 2}\nseed: 7\n";
  int i = 0;
  for (const Shape& s : std::vector<Shape>{{}, {1}, {0}, {3, 0, 2}, {7}, {5, 13}, {2, 3, 4, 5}}) {
    d.model.emplace_back("blocks." + std::to_string(i++) + ".mixer.q_proj.weight",
                         tu::randn(s, DType::F32, Device::cpu(), 3.0));
  }
  d.model.emplace_back("embed.weight", tu::randn({257, 3}, DType::F32));
  d.model.emplace_back("a_first_in_creation_order", tu::randn({4}, DType::F32));
  d.optim.emplace_back("m.embed.weight", tu::randn({257, 3}, DType::F32));
  d.optim.emplace_back("v.embed.weight", tu::randn({257, 3}, DType::F32));
  d.optim.emplace_back("step", Tensor::full({}, double(step), DType::I64));
  d.optim.emplace_back("bf16.thing", tu::randn({9}, DType::BF16));
  d.optim.emplace_back("f64.thing", tu::randn({2, 2}, DType::F64));
  d.rng["init"] = {42, 7};
  d.rng["dropout"] = {0xffffffffffffffffull, 0};
  d.data["train"] = {1, 2, 3, 99999999999ull};
  d.data["empty"] = {};
  d.metrics["loss"] = 2.718281828459045;
  d.metrics["grad_norm"] = 0.1;
  d.extra["note"] = "hello";
  d.extra["empty"] = "";
  return d;
}

void expect_same(const CheckpointData& a, const CheckpointData& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.tokens_seen, b.tokens_seen);
  EXPECT_EQ(std::memcmp(&a.wall_time_s, &b.wall_time_s, sizeof(double)), 0);
  EXPECT_EQ(a.git_revision, b.git_revision);
  EXPECT_EQ(a.config_yaml, b.config_yaml);
  for (const auto& [x, y] : {std::pair{&a.model, &b.model}, std::pair{&a.optim, &b.optim}}) {
    ASSERT_EQ(x->size(), y->size());
    for (size_t i = 0; i < x->size(); ++i) {
      SCOPED_TRACE((*x)[i].first);
      EXPECT_EQ((*x)[i].first, (*y)[i].first);  // order preserved
      const Tensor& t = (*x)[i].second;
      const Tensor& u = (*y)[i].second;
      EXPECT_TRUE(u.is_cpu());
      EXPECT_EQ(t.dtype(), u.dtype());
      EXPECT_EQ(t.shape(), u.shape());
      if (t.shape() == u.shape() && t.dtype() == u.dtype()) {
        EXPECT_TRUE(tu::bitwise_equal(t, u));
      }
    }
  }
  EXPECT_EQ(a.rng, b.rng);
  EXPECT_EQ(a.data, b.data);
  ASSERT_EQ(a.metrics.size(), b.metrics.size());
  for (const auto& [k, v] : a.metrics) {
    ASSERT_TRUE(b.metrics.count(k)) << k;
    const double w = b.metrics.at(k);
    EXPECT_EQ(std::memcmp(&v, &w, sizeof v), 0) << k;
  }
  EXPECT_EQ(a.extra, b.extra);
}

std::vector<char> read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}
void write_bytes(const std::string& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), std::streamsize(b.size()));
}

}  // namespace

TEST(Checkpoint, RoundTripBitExact) {
  SEQMIX_TRACE_SEED();
  TempDir dir;
  const CheckpointData d = sample(1000);
  const std::string path = checkpoint_path(dir.str(), d.step);
  save_checkpoint(path, d);
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  expect_same(d, load_checkpoint(path));

  // Minimal: no tensors, empty maps, empty strings.
  CheckpointData e;
  const std::string p2 = (dir.path / "sub" / "empty.h5").string();
  save_checkpoint(p2, e);
  const CheckpointData e2 = load_checkpoint(p2);
  expect_same(e, e2);
  EXPECT_TRUE(e2.model.empty() && e2.metrics.empty() && e2.config_yaml.empty());

  // Saving again over the same path replaces the file.
  const CheckpointData d2 = sample(1000);
  save_checkpoint(path, d2);
  expect_same(d2, load_checkpoint(path));

  // GPU tensors are written from host copies.
  if (cuda::is_available()) {
    CheckpointData g = sample(5);
    for (auto& [k, t] : g.model) t = t.to(Device::cuda(0));
    save_checkpoint(p2, g);
    for (auto& [k, t] : g.model) t = t.cpu();
    expect_same(g, load_checkpoint(p2));
  }
}

TEST(Checkpoint, PathsListingLatestAndPrune) {
  SEQMIX_TRACE_SEED();
  TempDir dir;
  const std::string run = dir.str();
  EXPECT_EQ(checkpoint_path(run, 1000), (dir.path / "checkpoints" / "step_00001000.h5").string());
  EXPECT_EQ(checkpoint_path(run, 123456789),
            (dir.path / "checkpoints" / "step_123456789.h5").string());
  EXPECT_TRUE(list_checkpoints(run).empty());
  EXPECT_EQ(latest_checkpoint(run), "");
  CheckpointData d = sample(0);
  for (int64_t s : {300, 100, 1000, 200, 50}) {
    d.step = s;
    save_checkpoint(checkpoint_path(run, s), d);
  }
  const std::vector<std::string> want = {checkpoint_path(run, 50), checkpoint_path(run, 100),
                                         checkpoint_path(run, 200), checkpoint_path(run, 300),
                                         checkpoint_path(run, 1000)};
  EXPECT_EQ(list_checkpoints(run), want);
  EXPECT_EQ(latest_checkpoint(run), checkpoint_path(run, 1000));
  // Unrelated files are ignored.
  write_bytes((dir.path / "checkpoints" / "notes.txt").string(), {'x'});
  write_bytes((dir.path / "checkpoints" / "step_abc.h5").string(), {'x'});
  EXPECT_EQ(list_checkpoints(run), want);

  prune_checkpoints(run, 0);  // keeps everything
  EXPECT_EQ(list_checkpoints(run).size(), 5u);
  prune_checkpoints(run, 2);
  EXPECT_EQ(list_checkpoints(run),
            (std::vector<std::string>{checkpoint_path(run, 300), checkpoint_path(run, 1000)}));
  EXPECT_FALSE(fs::exists(checkpoint_path(run, 50)));
  EXPECT_TRUE(fs::exists((dir.path / "checkpoints" / "notes.txt")));
  prune_checkpoints(run, 5);
  EXPECT_EQ(list_checkpoints(run).size(), 2u);
  EXPECT_EQ(load_checkpoint(latest_checkpoint(run)).step, 1000);
}

TEST(Checkpoint, AtomicityTruncationAndIncomplete) {
  SEQMIX_TRACE_SEED();
  TempDir dir;
  const std::string run = dir.str();
  const CheckpointData d = sample(100);
  const std::string good = checkpoint_path(run, 100);
  save_checkpoint(good, d);
  const std::vector<char> bytes = read_bytes(good);
  ASSERT_GT(bytes.size(), 1000u);

  // An interrupted save leaves a .tmp: never listed.
  const std::string tmp = checkpoint_path(run, 200) + ".tmp";
  write_bytes(tmp, bytes);
  EXPECT_EQ(list_checkpoints(run), std::vector<std::string>{good});

  // A truncated file: not listed, and loading it is a Checkpoint error naming the file.
  const std::string trunc = checkpoint_path(run, 300);
  write_bytes(trunc, std::vector<char>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  EXPECT_EQ(list_checkpoints(run), std::vector<std::string>{good});
  EXPECT_EQ(latest_checkpoint(run), good);
  expect_ckpt_error([&] { load_checkpoint(trunc); }, {trunc});
  // Garbage and empty files too.
  const std::string junk = checkpoint_path(run, 400);
  write_bytes(junk, std::vector<char>(100, 'j'));
  expect_ckpt_error([&] { load_checkpoint(junk); }, {junk, "not an HDF5 file"});
  const std::string empty = checkpoint_path(run, 500);
  write_bytes(empty, {});
  expect_ckpt_error([&] { load_checkpoint(empty); }, {empty});
  EXPECT_EQ(list_checkpoints(run), std::vector<std::string>{good});

  // A valid HDF5 file without the completeness marker (an interrupted writer).
  const std::string inc = checkpoint_path(run, 600);
  {
    hid_t f = H5Fcreate(inc.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    hid_t g = H5Gcreate2(f, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(g, 0);
    H5Gclose(g);
    H5Fclose(f);
  }
  expect_ckpt_error([&] { load_checkpoint(inc); }, {inc, "incomplete"});
  EXPECT_EQ(list_checkpoints(run), std::vector<std::string>{good});

  // A missing file.
  const std::string missing = (dir.path / "nope.h5").string();
  expect_ckpt_error([&] { load_checkpoint(missing); }, {missing, "does not exist"});

  // A failed save (invalid name) leaves the previous checkpoint intact and no .tmp behind.
  CheckpointData bad = sample(100);
  bad.model.emplace_back("a/b", Tensor::zeros({2}, DType::F32));
  try {
    save_checkpoint(good, bad);
    ADD_FAILURE() << "a name with '/' was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Value);
  }
  EXPECT_FALSE(fs::exists(good + ".tmp"));
  expect_same(d, load_checkpoint(good));
  // Unwritable target directory: Checkpoint error, nothing replaced.
  if (::geteuid() != 0) {
    const fs::path ro = dir.path / "ro";
    fs::create_directories(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    expect_ckpt_error([&] { save_checkpoint((ro / "x.h5").string(), d); }, {"x.h5"});
    fs::permissions(ro, fs::perms::owner_all);
  }
}

TEST(Checkpoint, FlippedTensorBytesFailChecksum) {
  SEQMIX_TRACE_SEED();
  TempDir dir;
  CheckpointData d = sample(7);
  const Tensor big = tu::randn({4096}, DType::F32);
  d.model.emplace_back("big.weight", big);
  const std::string path = checkpoint_path(dir.str(), 7);
  save_checkpoint(path, d);
  std::vector<char> bytes = read_bytes(path);
  // Locate the tensor's bytes in the file (contiguous layout) by its first 64 bytes.
  const char* needle = static_cast<const char*>(big.data_ptr());
  auto it = std::search(bytes.begin(), bytes.end(), needle, needle + 64);
  ASSERT_NE(it, bytes.end()) << "tensor bytes not found in the file";
  const size_t at = size_t(it - bytes.begin()) + 4 * 2000 + 1;
  for (int variant = 0; variant < 2; ++variant) {
    std::vector<char> bad = bytes;
    if (variant == 0)
      bad[at] = char(bad[at] ^ 0x10);  // one bit in the middle of the tensor
    else
      std::memset(&bad[at], 0, 64);  // a zeroed block
    const std::string corrupt = checkpoint_path(dir.str(), 8 + variant);
    write_bytes(corrupt, bad);
    expect_ckpt_error([&] { load_checkpoint(corrupt); }, {corrupt, "checksum"});
  }
  // The unmodified copy still loads.
  write_bytes(path, bytes);
  expect_same(d, load_checkpoint(path));
}
