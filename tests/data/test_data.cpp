// data/: tokenizers, the HDF5 token dataset (write, read back, error kinds), the token-window
// loader (slices, epoch permutations, determinism, rank sharding, resume, evaluation pass) and
// the MQAR generator (structure, determinism, sharding, the power-law gap distribution).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/loader.h"
#include "data/mqar.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "tests/testing/testing.h"

namespace fs = std::filesystem;
using namespace seqmix;
using namespace seqmix::data;

namespace {

// A fresh temporary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("seqmix_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Random text over a small alphabet with some multi-byte UTF-8 characters.
std::string random_text(std::mt19937_64& rng, size_t n_chars) {
  static const std::vector<std::string> alphabet = {"a", "b", "c", "d", "e",  " ",  "\n",
                                                    ",", "Z", "é", "ß", "日", "本", "😀"};
  std::uniform_int_distribution<size_t> d(0, alphabet.size() - 1);
  std::string s;
  for (size_t i = 0; i < n_chars; ++i) s += alphabet[d(rng)];
  return s;
}

// Runs `f` and expects a seqmix::Error of `kind` whose message contains `needle`.
template <typename F>
void expect_error(F&& f, ErrorKind kind, const std::string& needle = "") {
  try {
    f();
    ADD_FAILURE() << "expected an error of kind " << error_kind_name(kind);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.message();
    EXPECT_NE(e.message().find(needle), std::string::npos)
        << "message '" << e.message() << "' lacks '" << needle << "'";
  }
}

std::vector<int64_t> to_i64(const Tensor& t) {
  return t.to_vector<int64_t>();
}

}  // namespace

// ============================== tokenizers ==============================

TEST(Tokenizer, ByteRoundTripsEveryByte) {
  SEQMIX_TRACE_SEED();
  std::mt19937_64 rng(tu::next_seed());
  std::string text(5000, '\0');
  for (char& c : text) c = char(rng() & 0xFF);
  const Tokenizer t = Tokenizer::byte();
  EXPECT_EQ(t.vocab_size(), 256);
  const std::vector<int32_t> ids = t.encode(text);
  ASSERT_EQ(ids.size(), text.size());
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], int32_t(uint8_t(text[i])));
  EXPECT_EQ(t.decode(ids), text);
  const Tokenizer back = Tokenizer::from_description(t.description());
  EXPECT_EQ(back.kind(), TokenizerKind::Byte);
  EXPECT_EQ(back.decode(ids), text);
}

TEST(Tokenizer, CharRoundTripsUtf8AndSortsTheVocabulary) {
  SEQMIX_TRACE_SEED();
  std::mt19937_64 rng(tu::next_seed());
  const std::string a = random_text(rng, 3000), b = random_text(rng, 500) + "Q";
  const Tokenizer t = Tokenizer::char_level({a, b});
  std::set<uint32_t> expect;
  for (uint32_t cp : utf8_decode(a + b)) expect.insert(cp);
  EXPECT_EQ(t.vocab_size(), int64_t(expect.size()));
  EXPECT_EQ(t.code_points(), std::vector<uint32_t>(expect.begin(), expect.end()));
  const std::vector<int32_t> ids = t.encode(b);
  EXPECT_EQ(ids.size(), utf8_decode(b).size());  // one token per character
  EXPECT_EQ(t.decode(ids), b);
  std::vector<int64_t> ids64(ids.begin(), ids.end());
  EXPECT_EQ(t.decode(ids64), b);
  // The description round-trips the vocabulary exactly.
  const Tokenizer back = Tokenizer::from_description(t.description());
  EXPECT_EQ(back.kind(), TokenizerKind::Char);
  EXPECT_EQ(back.code_points(), t.code_points());
  EXPECT_EQ(back.encode(a), t.encode(a));
}

TEST(Tokenizer, Errors) {
  const Tokenizer t = Tokenizer::char_level({"abc"});
  expect_error([&] { t.encode("abd"); }, ErrorKind::Value, "U+0064");
  expect_error([&] { t.decode(std::vector<int64_t>{0, 3}); }, ErrorKind::Value, "3");
  expect_error([&] { Tokenizer::byte().decode(std::vector<int64_t>{-1}); }, ErrorKind::Value);
  expect_error([&] { utf8_decode("ok\xC3"); }, ErrorKind::Data, "truncated");
  expect_error([&] { utf8_decode("\xC0\xAF"); }, ErrorKind::Data, "overlong");
  expect_error([&] { utf8_decode("a\xFFz"); }, ErrorKind::Data, "offset 1");
  expect_error([&] { Tokenizer::char_level({"a\x80"}); }, ErrorKind::Data);
  expect_error([&] { Tokenizer::from_description("char:97,x"); }, ErrorKind::Data);
  expect_error([&] { Tokenizer::from_description("wordpiece"); }, ErrorKind::Data);
  expect_error([&] { parse_tokenizer_kind("bpe"); }, ErrorKind::Value, "byte or char");
}

TEST(Tokenizer, TinyShakespeareHas65Characters) {
  const std::string path = "../shared/data/tinyshakespeare.txt";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not present";
  const std::string text = read_bytes(path);
  const Tokenizer t = Tokenizer::char_level({text});
  EXPECT_EQ(t.vocab_size(), 65);
  EXPECT_EQ(t.decode(t.encode(text)), text);
}

// ============================== token dataset ==============================

TEST(TokenDataset, PrepareThenReadBackEqualsTheInputTokens) {
  SEQMIX_TRACE_SEED();
  std::mt19937_64 rng(tu::next_seed());
  TempDir dir;
  std::vector<std::string> texts = {random_text(rng, 2000), random_text(rng, 777),
                                    random_text(rng, 31)};
  std::vector<std::string> files;
  for (size_t i = 0; i < texts.size(); ++i) {
    files.push_back(dir.file("doc" + std::to_string(i) + ".txt"));
    write_file(files.back(), texts[i]);
  }
  for (TokenizerKind kind : {TokenizerKind::Char, TokenizerKind::Byte}) {
    PrepareOptions o;
    o.inputs = files;
    o.output_dir = dir.file(std::string("out_") + tokenizer_kind_name(kind));
    o.tokenizer = kind;
    o.val_fraction = 0.1;
    o.test_fraction = 0.05;
    const PrepareSummary s = prepare_dataset(o);
    EXPECT_EQ(s.token_dtype, "u16");
    // Atomic write: only data.h5 remains.
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(o.output_dir))
      names.push_back(e.path().filename().string());
    EXPECT_EQ(names, std::vector<std::string>{"data.h5"});

    const TokenDataset ds(o.output_dir);
    EXPECT_EQ(ds.tokenizer().kind(), kind);
    EXPECT_EQ(ds.vocab_size(), ds.tokenizer().vocab_size());
    EXPECT_EQ(ds.source_files(), files);
    ASSERT_TRUE(ds.has_split("train") && ds.has_split("val") && ds.has_split("test"));
    EXPECT_EQ(ds.num_tokens("train"), s.train_tokens);
    EXPECT_EQ(ds.num_tokens("val"), s.val_tokens);
    EXPECT_EQ(ds.num_tokens("test"), s.test_tokens);
    const char* splits[] = {"train", "val", "test"};
    std::vector<std::vector<int64_t>> all, offs;
    for (const char* sp : splits) {
      all.push_back(ds.read(sp, 0, ds.num_tokens(sp)));
      offs.push_back(ds.doc_offsets(sp));
      ASSERT_EQ(offs.back().size(), texts.size() + 1);
      EXPECT_EQ(offs.back().front(), 0);
      EXPECT_EQ(offs.back().back(), ds.num_tokens(sp));
    }
    for (size_t d = 0; d < texts.size(); ++d) {
      // A document = its train part + val part + test part, in that order.
      std::vector<int64_t> joined;
      for (int s2 = 0; s2 < 3; ++s2)
        joined.insert(joined.end(), all[size_t(s2)].begin() + offs[size_t(s2)][d],
                      all[size_t(s2)].begin() + offs[size_t(s2)][d + 1]);
      const std::vector<int32_t> expect32 = ds.tokenizer().encode(texts[d]);
      EXPECT_EQ(joined, std::vector<int64_t>(expect32.begin(), expect32.end())) << "doc " << d;
      EXPECT_EQ(ds.tokenizer().decode(joined), texts[d]);
      const int64_t L = int64_t(expect32.size());
      EXPECT_EQ(offs[1][d + 1] - offs[1][d], int64_t(std::floor(L * 0.1))) << "val share";
      EXPECT_EQ(offs[2][d + 1] - offs[2][d], int64_t(std::floor(L * 0.05))) << "test share";
    }
    // A sub-range read equals the slice of the full read.
    const std::vector<int64_t> part = ds.read("train", 17, 100);
    EXPECT_EQ(part, std::vector<int64_t>(all[0].begin() + 17, all[0].begin() + 117));
    expect_error([&] { ds.read("train", ds.num_tokens("train") - 3, 4); }, ErrorKind::Value);
  }
}

TEST(TokenDataset, NoTestSplitByDefaultAndLargeVocabUsesInt32) {
  SEQMIX_TRACE_SEED();
  std::mt19937_64 rng(tu::next_seed());
  TempDir dir;
  std::vector<uint32_t> cps;
  for (uint32_t c = 0x100; cps.size() < 70000; ++c)
    if (c < 0xD800 || c > 0xDFFF) cps.push_back(c);
  const Tokenizer tok = Tokenizer::char_from_code_points(cps);
  ASSERT_EQ(tok.vocab_size(), 70000);
  std::vector<int32_t> doc(3000);
  for (int32_t& x : doc) x = int32_t(rng() % 70000);
  doc[5] = 69999;  // beyond the u16 range
  const PrepareSummary s =
      write_token_dataset(dir.file("big.h5"), tok, {"synthetic"}, {doc}, 0.1, 0.0);
  EXPECT_EQ(s.token_dtype, "i32");
  const TokenDataset ds(dir.file("big.h5"));
  EXPECT_FALSE(ds.has_split("test"));
  expect_error([&] { ds.num_tokens("test"); }, ErrorKind::Data, "/test/tokens");
  std::vector<int64_t> back = ds.read("train", 0, ds.num_tokens("train"));
  std::vector<int64_t> val = ds.read("val", 0, ds.num_tokens("val"));
  back.insert(back.end(), val.begin(), val.end());
  EXPECT_EQ(back, std::vector<int64_t>(doc.begin(), doc.end()));
  EXPECT_EQ(ds.tokenizer().code_points(), tok.code_points());
}

TEST(TokenDataset, PrepareInputErrors) {
  TempDir dir;
  PrepareOptions o;
  o.output_dir = dir.file("out");
  expect_error([&] { prepare_dataset(o); }, ErrorKind::Usage, "input");
  o.inputs = {dir.file("nope.txt")};
  expect_error([&] { prepare_dataset(o); }, ErrorKind::Data, "nope.txt");
  write_file(dir.file("empty.txt"), "");
  o.inputs = {dir.file("empty.txt")};
  expect_error([&] { prepare_dataset(o); }, ErrorKind::Data, "empty");
  write_file(dir.file("bad.txt"), "abc\xFF");
  o.inputs = {dir.file("bad.txt")};
  o.tokenizer = TokenizerKind::Char;
  expect_error([&] { prepare_dataset(o); }, ErrorKind::Data, "bad.txt");
  write_file(dir.file("ok.txt"), "hello world");
  o.inputs = {dir.file("ok.txt")};
  o.val_fraction = 0.7;
  o.test_fraction = 0.3;
  expect_error([&] { prepare_dataset(o); }, ErrorKind::Usage, "< 1");
  o.val_fraction = -0.1;
  expect_error([&] { prepare_dataset(o); }, ErrorKind::Usage, "--val-fraction");
  EXPECT_FALSE(fs::exists(dir.file("out/data.h5")));
}

class CorruptFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(tu::next_seed());
    std::vector<int32_t> doc(4000);
    for (int32_t& x : doc) x = int32_t(rng() % 256);
    good_ = dir_.file("good/data.h5");
    write_token_dataset(good_, Tokenizer::byte(), {"doc"}, {doc}, 0.1, 0.0);
    TokenDataset ok(good_);  // the unmodified file opens
  }
  // A copy of the good file, modified through the HDF5 API by `edit(file_id)`.
  std::string edited(const std::string& name, void (*edit)(hid_t)) {
    const std::string p = dir_.file(name);
    fs::copy_file(good_, p);
    const hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    EXPECT_GE(f, 0);
    edit(f);
    H5Fclose(f);
    return p;
  }
  TempDir dir_;
  std::string good_;
};

TEST_F(CorruptFiles, MissingPathsAreDataErrors) {
  expect_error([&] { TokenDataset ds(dir_.file("absent")); }, ErrorKind::Data, "does not exist");
  fs::create_directories(dir_.file("emptydir"));
  expect_error([&] { TokenDataset ds(dir_.file("emptydir")); }, ErrorKind::Data, "data.h5");
}

TEST_F(CorruptFiles, NotHdf5AndTruncatedAreDataErrors) {
  write_file(dir_.file("text.h5"), "this is not an HDF5 file at all\n");
  expect_error([&] { TokenDataset ds(dir_.file("text.h5")); }, ErrorKind::Data, "not an HDF5 file");
  const std::string bytes = read_bytes(good_);
  ASSERT_GT(bytes.size(), 4000u);
  write_file(dir_.file("trunc.h5"), bytes.substr(0, bytes.size() / 2));
  expect_error([&] { TokenDataset ds(dir_.file("trunc.h5")); }, ErrorKind::Data, "trunc.h5");
  write_file(dir_.file("tiny.h5"), bytes.substr(0, 100));
  expect_error([&] { TokenDataset ds(dir_.file("tiny.h5")); }, ErrorKind::Data, "tiny.h5");
}

TEST_F(CorruptFiles, MissingDatasetWrongVersionAndBadTokensAreDataErrors) {
  const std::string no_val =
      edited("noval.h5", [](hid_t f) { EXPECT_GE(H5Ldelete(f, "/val/tokens", H5P_DEFAULT), 0); });
  expect_error([&] { TokenDataset ds(no_val); }, ErrorKind::Data, "/val/tokens");

  const std::string v99 = edited("v99.h5", [](hid_t f) {
    const hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    const int64_t v = 99;
    EXPECT_GE(H5Awrite(a, H5T_NATIVE_INT64, &v), 0);
    H5Aclose(a);
  });
  expect_error([&] { TokenDataset ds(v99); }, ErrorKind::Data, "version 99");

  const std::string no_attr =
      edited("noattr.h5", [](hid_t f) { EXPECT_GE(H5Adelete(f, "tokenizer"), 0); });
  expect_error([&] { TokenDataset ds(no_attr); }, ErrorKind::Data, "tokenizer");

  // Token values beyond the vocabulary (a corrupted payload) fail on read.
  const std::string bad_tok = edited("badtok.h5", [](hid_t f) {
    const hid_t d = H5Dopen2(f, "/train/tokens", H5P_DEFAULT);
    const hid_t space = H5Dget_space(d);
    const hsize_t off[1] = {10}, cnt[1] = {1};
    H5Sselect_hyperslab(space, H5S_SELECT_SET, off, nullptr, cnt, nullptr);
    const hid_t mem = H5Screate_simple(1, cnt, nullptr);
    const uint16_t v = 300;
    EXPECT_GE(H5Dwrite(d, H5T_NATIVE_UINT16, mem, space, H5P_DEFAULT, &v), 0);
    H5Sclose(mem);
    H5Sclose(space);
    H5Dclose(d);
  });
  const TokenDataset ds(bad_tok);
  EXPECT_NO_THROW(ds.read("train", 0, 10));
  expect_error([&] { ds.read("train", 0, 20); }, ErrorKind::Data, "position 10");
}

// ============================== loader ==============================

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(tu::next_seed());
    // Two documents; val_fraction 0: train is their concatenation.
    std::vector<std::vector<int32_t>> docs = {std::vector<int32_t>(1200),
                                              std::vector<int32_t>(853)};
    for (auto& d : docs)
      for (int32_t& x : d) x = int32_t(rng() % 256);
    for (const auto& d : docs) tokens_.insert(tokens_.end(), d.begin(), d.end());
    path_ = dir_.file("d.h5");
    write_token_dataset(path_, Tokenizer::byte(), {"a", "b"}, docs, 0.0, 0.0);
    ds_ = std::make_unique<TokenDataset>(path_);
  }
  // Checks that row r of `b` is window w of the training tokens.
  void expect_window(const Batch& b, int64_t r, int64_t w, int64_t T) {
    const std::vector<int64_t> in = to_i64(b.inputs), tg = to_i64(b.targets);
    for (int64_t t = 0; t < T; ++t) {
      ASSERT_EQ(in[size_t(r * T + t)], tokens_[size_t(w * T + t)]) << "row " << r << " t " << t;
      ASSERT_EQ(tg[size_t(r * T + t)], tokens_[size_t(w * T + t + 1)]) << "row " << r;
    }
  }
  TempDir dir_;
  std::string path_;
  std::vector<int64_t> tokens_;
  std::unique_ptr<TokenDataset> ds_;
};

TEST_F(LoaderTest, WindowsAreContiguousSlices) {
  SEQMIX_TRACE_SEED();
  const int64_t B = 5, T = 16;
  TokenWindowLoader L(*ds_, "train", B, T, tu::next_seed());
  EXPECT_EQ(L.num_windows(), (int64_t(tokens_.size()) - 1) / T);
  EXPECT_EQ(L.vocab_size(), 256);
  for (int step = 0; step < 30; ++step) {  // crosses an epoch boundary (128 windows)
    const Batch b = L.next();
    ASSERT_EQ(b.inputs.shape(), Shape({B, T}));
    ASSERT_EQ(b.targets.shape(), Shape({B, T}));
    ASSERT_EQ(b.inputs.dtype(), DType::I64);
    for (int64_t r = 0; r < B; ++r) {
      const int64_t w = L.window_of_sample(uint64_t(step * B + r));
      ASSERT_GE(w, 0);
      ASSERT_LT(w, L.num_windows());
      expect_window(b, r, w, T);
    }
  }
  EXPECT_EQ(L.state().samples_consumed, 150u);
  EXPECT_EQ(L.state().epoch, 150u / uint64_t(L.num_windows()));
}

TEST_F(LoaderTest, EachEpochIsAPermutationOfAllWindows) {
  SEQMIX_TRACE_SEED();
  const int64_t T = 16;
  TokenWindowLoader L(*ds_, "train", 7, T, tu::next_seed());
  const int64_t W = L.num_windows();
  std::vector<std::vector<int64_t>> orders;
  for (int e = 0; e < 3; ++e) {
    std::vector<int64_t> order;
    for (int64_t p = 0; p < W; ++p) order.push_back(L.window_of_sample(uint64_t(e * W + p)));
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < W; ++i) ASSERT_EQ(sorted[size_t(i)], i) << "epoch " << e;
    orders.push_back(order);
  }
  std::vector<int64_t> identity(static_cast<size_t>(W));
  for (int64_t i = 0; i < W; ++i) identity[size_t(i)] = i;
  EXPECT_NE(orders[0], identity);
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
  // Through next(): 3 epochs of samples (batches straddle epoch ends) use every window 3 times.
  TokenWindowLoader M(*ds_, "train", 7, T, 1234);
  std::map<std::vector<int64_t>, int> seen;
  int64_t rows = 0;
  while (rows + 7 <= 3 * W) {
    const Batch b = M.next();
    const std::vector<int64_t> in = to_i64(b.inputs);
    for (int64_t r = 0; r < 7; ++r, ++rows)
      ++seen[std::vector<int64_t>(in.begin() + r * T, in.begin() + (r + 1) * T)];
  }
  for (const auto& [k, n] : seen) EXPECT_LE(n, 3);
}

TEST_F(LoaderTest, DeterministicForASeed) {
  SEQMIX_TRACE_SEED();
  const uint64_t seed = tu::next_seed();
  TokenWindowLoader a(*ds_, "train", 4, 32, seed), b(path_, "train", 4, 32, seed);
  TokenWindowLoader c(*ds_, "train", 4, 32, seed + 1);
  bool differs = false;
  for (int i = 0; i < 10; ++i) {
    const Batch x = a.next(), y = b.next(), z = c.next();
    EXPECT_TRUE(tu::bitwise_equal(x.inputs, y.inputs));
    EXPECT_TRUE(tu::bitwise_equal(x.targets, y.targets));
    differs = differs || to_i64(x.inputs) != to_i64(z.inputs);
  }
  EXPECT_TRUE(differs) << "seeds " << seed << " and " << seed + 1 << " gave the same order";
}

TEST_F(LoaderTest, RanksAreDisjointAndTheirUnionIsTheOneRankOrder) {
  SEQMIX_TRACE_SEED();
  const uint64_t seed = tu::next_seed();
  const int64_t B = 3, T = 8, world = 3;
  TokenWindowLoader one(*ds_, "train", B * world, T, seed);
  std::vector<std::unique_ptr<TokenWindowLoader>> ranks;
  for (int r = 0; r < world; ++r)
    ranks.push_back(std::make_unique<TokenWindowLoader>(*ds_, "train", B, T, seed, r, world));
  for (int step = 0; step < 40; ++step) {
    const std::vector<int64_t> ref = to_i64(one.next().inputs);
    std::vector<std::vector<int64_t>> got;
    for (auto& l : ranks) got.push_back(to_i64(l->next().inputs));
    // Global row j of the step is row j / world of rank j % world.
    for (int64_t j = 0; j < B * world; ++j)
      for (int64_t t = 0; t < T; ++t)
        ASSERT_EQ(got[size_t(j % world)][size_t((j / world) * T + t)], ref[size_t(j * T + t)])
            << "step " << step << " row " << j;
    for (auto& l : ranks) ASSERT_EQ(l->state(), one.state());
  }
  // Disjoint within an epoch: the windows of the 3 ranks in the first epoch never repeat.
  std::set<int64_t> used;
  const int64_t W = one.num_windows();
  for (int64_t g = 0; g < W; ++g)
    EXPECT_TRUE(used.insert(one.window_of_sample(uint64_t(g))).second);
}

TEST_F(LoaderTest, RestoreContinuesExactlyAlsoAcrossWorldSizes) {
  SEQMIX_TRACE_SEED();
  const uint64_t seed = tu::next_seed();
  const int64_t T = 16;
  // Same world size: save after 7 steps, continue in a fresh loader.
  TokenWindowLoader a(*ds_, "train", 6, T, seed);
  for (int i = 0; i < 7; ++i) a.next();
  const LoaderState st = a.state();
  TokenWindowLoader b(path_, "train", 6, T, seed);
  b.restore(st);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(tu::bitwise_equal(a.next().inputs, b.next().inputs));

  // A 2-rank run (batch 3 each) saved after 9 steps resumes as 1 rank with batch 6.
  TokenWindowLoader r0(*ds_, "train", 3, T, seed, 0, 2), r1(*ds_, "train", 3, T, seed, 1, 2);
  for (int i = 0; i < 9; ++i) r0.next(), r1.next();
  ASSERT_EQ(r0.state(), r1.state());
  TokenWindowLoader solo(*ds_, "train", 6, T, seed), ref(*ds_, "train", 6, T, seed);
  solo.restore(r0.state());
  for (int i = 0; i < 9; ++i) ref.next();
  for (int i = 0; i < 30; ++i) {
    const Batch x = solo.next(), y = ref.next();
    ASSERT_TRUE(tu::bitwise_equal(x.inputs, y.inputs)) << "step " << i;
    ASSERT_TRUE(tu::bitwise_equal(x.targets, y.targets));
  }
  // A state of another seed, or an epoch inconsistent with the position, is refused.
  expect_error([&] { solo.restore({seed + 1, 0, 0}); }, ErrorKind::Data, "seed");
  expect_error([&] { solo.restore({seed, 5, 3}); }, ErrorKind::Data, "epoch");
}

TEST_F(LoaderTest, EvaluationModeCoversEveryWindowOnceAcrossRanks) {
  const int64_t B = 4, T = 13, world = 2;
  TokenWindowLoader r0(*ds_, "train", B, T, 7, 0, world, false);
  TokenWindowLoader r1(*ds_, "train", B, T, 7, 1, world, false);
  const int64_t W = r0.num_windows();
  ASSERT_NE(W % (B * world), 0) << "the test wants a partial last step";
  std::vector<std::vector<int64_t>> rows;  // in global order
  int steps = 0;
  while (!r0.exhausted()) {
    const Batch b0 = r0.next(), b1 = r1.next();
    ++steps;
    const std::vector<int64_t> in0 = to_i64(b0.inputs), in1 = to_i64(b1.inputs);
    const int64_t n0 = b0.inputs.size(0), n1 = b1.inputs.size(0);
    EXPECT_TRUE(n0 == n1 || n0 == n1 + 1);
    for (int64_t j = 0; j < n0; ++j) {
      rows.emplace_back(in0.begin() + j * T, in0.begin() + (j + 1) * T);
      if (j < n1) rows.emplace_back(in1.begin() + j * T, in1.begin() + (j + 1) * T);
    }
  }
  EXPECT_TRUE(r1.exhausted());
  EXPECT_EQ(steps, (W + B * world - 1) / (B * world));
  ASSERT_EQ(int64_t(rows.size()), W);
  for (int64_t w = 0; w < W; ++w)
    for (int64_t t = 0; t < T; ++t)
      ASSERT_EQ(rows[size_t(w)][size_t(t)], tokens_[size_t(w * T + t)]);
  expect_error([&] { r0.next(); }, ErrorKind::Value, "complete");
  r0.restore({7, 0, 0});
  EXPECT_FALSE(r0.exhausted());
}

TEST_F(LoaderTest, SplitTooSmallAndBadArgumentsAreErrors) {
  // val is empty here (val_fraction 0): too small for any window.
  expect_error([&] { TokenWindowLoader l(*ds_, "val", 2, 16, 0); }, ErrorKind::Data,
               "has 0 tokens, too few for one window of seq_len + 1 = 17");
  expect_error([&] { TokenWindowLoader l(*ds_, "train", 2, int64_t(tokens_.size()), 0); },
               ErrorKind::Data, std::to_string(tokens_.size()) + " tokens");
  expect_error([&] { TokenWindowLoader l(*ds_, "test", 2, 16, 0); }, ErrorKind::Data, "/test");
  expect_error([&] { TokenWindowLoader l(*ds_, "train", 0, 16, 0); }, ErrorKind::Value);
  expect_error([&] { TokenWindowLoader l(*ds_, "train", 2, 16, 0, 2, 2); }, ErrorKind::Value);
}

// ============================== MQAR ==============================

namespace {

// Checks the structure of one example; returns the gap of each pair i.
std::vector<int64_t> check_mqar_example(const MqarConfig& c, const MqarExample& e) {
  const int64_t V = c.vocab_size, T = c.seq_len, n = c.num_kv_pairs, ctx = 2 * n;
  EXPECT_EQ(int64_t(e.inputs.size()), T);
  EXPECT_EQ(int64_t(e.targets.size()), T);
  std::set<int64_t> keys, values;
  std::map<int64_t, int64_t> value_of;
  std::map<int64_t, int64_t> pair_of_key;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = e.inputs[size_t(2 * i)], v = e.inputs[size_t(2 * i + 1)];
    EXPECT_GE(k, 1);
    EXPECT_LT(k, V / 2);
    EXPECT_GE(v, V / 2);
    EXPECT_LT(v, V);
    EXPECT_TRUE(keys.insert(k).second) << "duplicate key " << k;
    EXPECT_TRUE(values.insert(v).second) << "duplicate value " << v;
    value_of[k] = v;
    pair_of_key[k] = i;
  }
  std::vector<int64_t> gaps(static_cast<size_t>(n), -1);
  int64_t n_targets = 0;
  for (int64_t t = 0; t < T; ++t) {
    EXPECT_GE(e.inputs[size_t(t)], 0);
    EXPECT_LT(e.inputs[size_t(t)], V);
    if (t < ctx) {
      EXPECT_EQ(e.targets[size_t(t)], kIgnoreIndex) << "target in the context at " << t;
      continue;
    }
    if (e.targets[size_t(t)] == kIgnoreIndex) {
      if (!c.random_non_queries) {
        EXPECT_EQ(e.inputs[size_t(t)], 0) << "filler at " << t;
      }
      continue;
    }
    ++n_targets;
    EXPECT_EQ((t - ctx) % 2, 0) << "query at an odd offset " << t;
    const int64_t k = e.inputs[size_t(t)];
    const auto it = value_of.find(k);
    if (it == value_of.end()) {
      ADD_FAILURE() << "target at " << t << " but input " << k << " is not a key";
      continue;
    }
    EXPECT_EQ(e.targets[size_t(t)], it->second) << "target at " << t << " is not the paired value";
    const int64_t i = pair_of_key[k];
    EXPECT_EQ(gaps[size_t(i)], -1) << "key queried twice";
    gaps[size_t(i)] = (t - ctx) / 2;
  }
  EXPECT_EQ(n_targets, n);
  return gaps;
}

double chi_square(const std::vector<int64_t>& counts, const std::vector<double>& p) {
  double n = 0, chi = 0;
  for (int64_t c : counts) n += double(c);
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = n * p[i];
    chi += (double(counts[i]) - e) * (double(counts[i]) - e) / e;
  }
  return chi;
}

std::vector<double> power_law(int64_t space, double a) {
  std::vector<double> p(static_cast<size_t>(space));
  double s = 0;
  for (int64_t g = 0; g < space; ++g) s += p[size_t(g)] = std::pow(double(g + 1), a - 1);
  for (double& x : p) x /= s;
  return p;
}

}  // namespace

TEST(Mqar, ExamplesHaveTheZoologyStructure) {
  SEQMIX_TRACE_SEED();
  for (bool filler : {true, false}) {
    MqarConfig c;
    c.vocab_size = 128;
    c.seq_len = 64;
    c.num_kv_pairs = 8;
    c.random_non_queries = filler;
    c.seed = tu::next_seed();
    const MqarSource src(c, 4);
    for (uint64_t i = 0; i < 300; ++i) check_mqar_example(c, src.example(i));
  }
  // Odd vocabulary and sequence length, many pairs.
  MqarConfig c;
  c.vocab_size = 101;
  c.seq_len = 203;
  c.num_kv_pairs = 49;
  c.seed = tu::next_seed();
  const MqarSource src(c, 2);
  for (uint64_t i = 0; i < 50; ++i) check_mqar_example(c, src.example(i));
}

TEST(Mqar, DeterministicShardableAndResumable) {
  SEQMIX_TRACE_SEED();
  MqarConfig c;
  c.seed = tu::next_seed();
  MqarSource a(c, 8), b(c, 8);
  MqarConfig c2 = c;
  c2.seed = c.seed + 1;
  MqarSource other(c2, 8);
  for (int s = 0; s < 5; ++s) {
    const Batch x = a.next(), y = b.next(), z = other.next();
    EXPECT_TRUE(tu::bitwise_equal(x.inputs, y.inputs));
    EXPECT_TRUE(tu::bitwise_equal(x.targets, y.targets));
    EXPECT_NE(to_i64(x.inputs), to_i64(z.inputs));
    // Row j of step s is example s*8 + j.
    const std::vector<int64_t> in = to_i64(x.inputs), tg = to_i64(x.targets);
    for (int64_t j = 0; j < 8; ++j) {
      const MqarExample e = a.example(uint64_t(s * 8 + j));
      EXPECT_EQ(std::vector<int64_t>(in.begin() + j * 64, in.begin() + (j + 1) * 64), e.inputs);
      EXPECT_EQ(std::vector<int64_t>(tg.begin() + j * 64, tg.begin() + (j + 1) * 64), e.targets);
    }
  }
  // 2 ranks of batch 4 == 1 rank of batch 8; a 2-rank state resumes on 1 rank.
  MqarSource r0(c, 4, 0, 2), r1(c, 4, 1, 2), one(c, 8);
  for (int s = 0; s < 3; ++s) {
    const std::vector<int64_t> ref = to_i64(one.next().inputs);
    const std::vector<int64_t> g0 = to_i64(r0.next().inputs), g1 = to_i64(r1.next().inputs);
    for (int64_t j = 0; j < 8; ++j) {
      const std::vector<int64_t>& g = j % 2 ? g1 : g0;
      EXPECT_EQ(std::vector<int64_t>(g.begin() + (j / 2) * 64, g.begin() + (j / 2 + 1) * 64),
                std::vector<int64_t>(ref.begin() + j * 64, ref.begin() + (j + 1) * 64));
    }
  }
  MqarSource resumed(c, 8);
  resumed.restore(r0.state());
  EXPECT_EQ(r0.state().samples_consumed, 24u);
  EXPECT_TRUE(tu::bitwise_equal(resumed.next().inputs, one.next().inputs));
  expect_error([&] { resumed.restore({c.seed + 1, 0, 0}); }, ErrorKind::Data, "seed");
}

TEST(Mqar, GapsFollowThePowerLaw) {
  // Fixed seeds: a deterministic statistical check. The gap of a pair drawn first (pair 0, with
  // one pair or several) is distributed as p(g) ~ (g + 1)^(a - 1) over (T - 2n) / 2 gaps.
  for (int64_t n : {1, 4}) {
    for (double a : {0.01, 1.0}) {
      MqarConfig c;
      c.vocab_size = 256;
      c.seq_len = 64;
      c.num_kv_pairs = n;
      c.power_a = a;
      c.random_non_queries = false;
      c.seed = 20260101 + uint64_t(n);
      const MqarSource src(c, 1);
      const int64_t space = (c.seq_len - 2 * n) / 2;
      std::vector<int64_t> counts(static_cast<size_t>(space), 0);
      const int N = 20000;
      for (int i = 0; i < N; ++i) {
        const std::vector<int64_t> gaps = check_mqar_example(c, src.example(uint64_t(i)));
        ASSERT_GE(gaps[0], 0);
        ASSERT_LT(gaps[0], space);
        ++counts[size_t(gaps[0])];
      }
      const double chi_pl = chi_square(counts, power_law(space, a));
      const double chi_uniform = chi_square(counts, power_law(space, 1.0));
      // 99.99% quantile of chi-square with 30 (or 27) degrees of freedom is about 64 (59).
      EXPECT_LT(chi_pl, 60.0) << "n=" << n << " a=" << a;
      if (a < 0.5) {
        EXPECT_GT(chi_uniform, 1000.0) << "n=" << n << " a=" << a;
      }
    }
  }
}

TEST(Mqar, ConfigValidation) {
  auto bad = [](auto edit, const std::string& needle) {
    MqarConfig c;
    edit(c);
    expect_error([&] { validate(c); }, ErrorKind::Config, needle);
    expect_error([&] { MqarSource s(c, 1); }, ErrorKind::Config, needle);
  };
  bad([](MqarConfig& c) { c.num_kv_pairs = 40; }, "2 * num_kv_pairs = 80 exceeds seq_len = 64");
  bad([](MqarConfig& c) { c.num_kv_pairs = 17; }, "4 * num_kv_pairs = 68");
  bad([](MqarConfig& c) { c.vocab_size = 16, c.num_kv_pairs = 8; }, "only 7 keys");
  bad([](MqarConfig& c) { c.power_a = 0; }, "power_a");
  bad([](MqarConfig& c) { c.num_kv_pairs = 0; }, "num_kv_pairs");
  bad([](MqarConfig& c) { c.vocab_size = 2; }, "vocab_size");
  MqarConfig ok;
  EXPECT_NO_THROW(validate(ok));
  expect_error([&] { MqarSource s(ok, 0); }, ErrorKind::Value, "batch_size");
}
