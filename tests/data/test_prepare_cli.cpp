// `seqmix prepare` through the executable: exit codes 0 / 2 / 3 and the written dataset.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include "tests/testing/testing.h"

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "data/token_dataset.h"

namespace fs = std::filesystem;

namespace {

using seqmix::tu::CmdResult;
CmdResult run(const std::string& args) {
  return seqmix::tu::run_command(std::string(SEQMIX_BIN) + " " + args);
}

class PrepareCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("seqmix_test_prepare_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "a.txt") << "First Citizen:\nBefore we proceed any further, hear me.\n";
    std::ofstream(dir_ / "b.txt") << "All:\nSpeak, speak.\n";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string p(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

}  // namespace

TEST_F(PrepareCli, WritesTheDatasetAndExits0) {
  const CmdResult r = run("prepare --input " + p("a.txt") + " " + p("b.txt") + " --output " +
                          p("out") + " --tokenizer char --val-fraction 0.2 --test-fraction 0.1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("train:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("vocab"), std::string::npos) << r.out;
  ASSERT_TRUE(fs::exists(p("out/data.h5")));
  const seqmix::data::TokenDataset ds(p("out"));
  EXPECT_EQ(ds.tokenizer().kind(), seqmix::data::TokenizerKind::Char);
  EXPECT_TRUE(ds.has_split("test"));
  EXPECT_EQ(
      ds.num_tokens("train") + ds.num_tokens("val") + ds.num_tokens("test"),
      int64_t(std::string("First Citizen:\nBefore we proceed any further, hear me.\n").size() +
              std::string("All:\nSpeak, speak.\n").size()));
}

TEST_F(PrepareCli, UsageErrorsExit2) {
  EXPECT_EQ(run("prepare").code, 2);
  EXPECT_EQ(run("prepare --input " + p("a.txt") + " --tokenizer byte").code, 2);    // no --output
  EXPECT_EQ(run("prepare --input " + p("a.txt") + " --output " + p("o")).code, 2);  // no tokenizer
  const CmdResult bad_tok =
      run("prepare --input " + p("a.txt") + " --output " + p("o") + " --tokenizer bpe");
  EXPECT_EQ(bad_tok.code, 2);
  EXPECT_EQ(bad_tok.out.rfind("seqmix: usage error: ", 0), 0u) << bad_tok.out;
  EXPECT_EQ(run("prepare --input " + p("a.txt") + " --output " + p("o") +
                " --tokenizer byte --val-fraction 1.5")
                .code,
            2);
  EXPECT_FALSE(fs::exists(p("o/data.h5")));
}

TEST_F(PrepareCli, MissingInputExits3) {
  const CmdResult r =
      run("prepare --input " + p("missing.txt") + " --output " + p("o") + " --tokenizer byte");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_EQ(r.out.rfind("seqmix: data error: ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("missing.txt"), std::string::npos) << r.out;
}
