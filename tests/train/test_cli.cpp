// The seqmix executable: --help, --version, exit codes and error style.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <string>

namespace {
struct CmdResult {
  int code;
  std::string out;  // stdout + stderr
};
CmdResult run(const std::string& args) {
  const std::string cmd = std::string(SEQMIX_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
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
  for (const char* sub :
       {"train cfg.yaml", "eval run", "prepare", "generate", "inspect x", "launch"}) {
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
}
