// The seqmix executable: --help, --version, exit codes and error style.
#include <gtest/gtest.h>

#include "tests/testing/testing.h"

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <string>

namespace {
using seqmix::tu::CmdResult;
CmdResult run(const std::string& args) {
  return seqmix::tu::run_command(std::string(SEQMIX_BIN) + " " + args);
}
}  // namespace

TEST(Cli, HelpListsEverySubcommand) {
  const CmdResult r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* sub : {"train", "eval", "prepare", "generate", "bench", "inspect", "launch"})
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
}

TEST(Cli, Version) {
  const CmdResult r = run("--version");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("seqmix 0."), std::string::npos) << r.out;
}

TEST(Cli, UnbuiltSubcommandsSaySoAndExit2) {
  for (const char* sub : {"generate"}) {
    const CmdResult r = run(sub);
    EXPECT_EQ(r.code, 2) << sub;
    EXPECT_EQ(r.out.rfind("seqmix: usage error: ", 0), 0u) << r.out;  // one clear line first
    EXPECT_NE(r.out.find("not built yet"), std::string::npos) << r.out;
  }
}

TEST(Cli, UsageErrorsExit2) {
  EXPECT_EQ(run("").code, 2);
  EXPECT_EQ(run("frobnicate").code, 2);
  EXPECT_EQ(run("bench op matmul --m notanumber").code, 2);
  EXPECT_EQ(run("bench op matmul --device cuda:7 --m 8 --n 8 --k 8").code,
            2);  // no such device (or no CUDA at all)
}

TEST(Cli, BenchRunsOnCpu) {
  const CmdResult r =
      run("bench op matmul --device cpu --m 64 --n 64 --k 64 --iters 3 --warmup 1 --json");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"TFLOP/s\""), std::string::npos) << r.out;
  const CmdResult c = run("bench op copy --device cpu --mib 4 --iters 3 --warmup 1");
  EXPECT_EQ(c.code, 0) << c.out;
  EXPECT_NE(c.out.find("GB/s"), std::string::npos) << c.out;
  const CmdResult k = run(
      "bench kernel attention --device cpu --dtype f32 --batch 1 --seq-len 64 --heads 2 "
      "--head-dim 16 --iters 2 --warmup 1 --json");
  EXPECT_EQ(k.code, 0) << k.out;
  EXPECT_NE(k.out.find("fwd+bwd"), std::string::npos) << k.out;
  const CmdResult t = run(
      "bench train configs/quickstart.yaml --device cpu --steps 2 --warmup 1 --json "
      "--set model.d_model=32");
  EXPECT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("\"tokens_per_s\""), std::string::npos) << t.out;
  EXPECT_EQ(run("bench train /nonexistent.yaml").code, 2);
}

TEST(Cli, TrainEvalInspectErrorsHaveTheDocumentedCodes) {
  // Config errors exit 2 with one clear first line naming the file / key.
  CmdResult r = run("train /nonexistent/cfg.yaml");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_EQ(r.out.rfind("seqmix: config error: ", 0), 0u) << r.out;
  r = run("train configs/quickstart.yaml --set train.step=3");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("did you mean 'train.steps'"), std::string::npos) << r.out;
  r = run("train configs/quickstart.yaml --set model.mixers.A.n_head=3");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("did you mean 'n_heads'"), std::string::npos) << r.out;
  EXPECT_EQ(run("train").code, 2);
  // Missing checkpoints / run directories are checkpoint errors: exit 3.
  r = run("eval /nonexistent/run");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_EQ(r.out.rfind("seqmix: checkpoint error: ", 0), 0u) << r.out;
  EXPECT_EQ(run("inspect /nonexistent/ckpt.h5").code, 3);
  // The config reference prints.
  r = run("train --config-reference");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("`train.steps`"), std::string::npos);
}
