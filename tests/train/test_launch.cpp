// `seqmix launch`: the launcher logic through run_launch() with /bin/sh as the rank program
// (rank-dependent behaviour: environment, prefixes, a failing rank, SIGTERM -> SIGKILL escalation,
// death by signal), and end to end through the seqmix executable (prefixed output, a failing
// subcommand named with its exit code, usage errors, SIGTERM forwarded to every rank).
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"
#include "tests/testing/testing.h"
#include "train/cli/launch_cmd.h"

using seqmix::cli::LaunchOptions;
using seqmix::cli::run_launch;
using seqmix::tu::CmdResult;

namespace {

// A temporary file that collects one output stream of run_launch.
struct TempOut {
  TempOut() {
    char path[] = "/tmp/seqmix_launch_XXXXXX";
    fd = ::mkstemp(path);
    name = path;
  }
  ~TempOut() {
    ::close(fd);
    ::unlink(name.c_str());
  }
  std::string read() const {
    std::ifstream f(name);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  int fd;
  std::string name;
};

struct Launched {
  int rc;
  std::string out, err;
  double seconds;
};

Launched launch_sh(int nproc, const std::string& script, double grace_s = 10.0) {
  TempOut out, err;
  LaunchOptions o;
  o.nproc = nproc;
  o.exe = "/bin/sh";
  o.args = {"-c", script};
  o.master_port = 29555;
  o.grace_s = grace_s;
  o.out_fd = out.fd;
  o.err_fd = err.fd;
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = run_launch(o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Launched{rc, out.read(), err.read(), s};
}

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

CmdResult seqmix_cmd(const std::string& args) {
  return seqmix::tu::run_command(std::string(SEQMIX_BIN) + " " + args);
}

}  // namespace

TEST(Launch, RanksGetTheirEnvironmentAndPrefixedLines) {
  const Launched l = launch_sh(
      3,
      "echo \"env $RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR:$MASTER_PORT\"; "
      "echo \"to stderr $RANK\" >&2; printf 'line one\\nline two\\nunterminated'");
  EXPECT_EQ(l.rc, 0) << l.out << l.err;
  for (int r = 0; r < 3; ++r) {
    std::string p = "[";
    p.append(std::to_string(r)).append("] ");
    const std::string rs = std::to_string(r);
    EXPECT_TRUE(has(l.out, p + "env " + rs + " " + rs + " 3 3 127.0.0.1:29555\n")) << l.out;
    std::string two_lines = p;
    two_lines.append("line one\n").append(p).append("line two\n");
    EXPECT_TRUE(has(l.out, two_lines)) << l.out;
    EXPECT_TRUE(has(l.out, p + "unterminated\n")) << l.out;
    EXPECT_TRUE(has(l.err, p + "to stderr " + rs + "\n")) << l.err;
    EXPECT_FALSE(has(l.out, p + "to stderr")) << "stderr must stay on stderr";
  }
  EXPECT_FALSE(has(l.err, "failed")) << l.err;
}

TEST(Launch, AFailingRankStopsTheOthersAndIsNamed) {
  // Rank 1 fails after a moment; the others would sleep for a minute unless terminated.
  const Launched l =
      launch_sh(3, "if [ \"$RANK\" = 1 ]; then sleep 0.3; exit 7; fi; exec sleep 60");
  EXPECT_EQ(l.rc, 7);
  EXPECT_LT(l.seconds, 8.0) << "the other ranks were not terminated";
  const size_t at = l.err.find("seqmix: launch: rank 1 failed (exit code 7)\n");
  ASSERT_NE(at, std::string::npos) << l.err;
  EXPECT_TRUE(has(l.err.substr(at), "rank 0: killed by signal 15")) << l.err;
  EXPECT_TRUE(has(l.err.substr(at), "rank 2: killed by signal 15")) << l.err;
}

TEST(Launch, RanksIgnoringSigtermAreKilledAfterTheGracePeriod) {
  const Launched l = launch_sh(
      2,
      "trap '' TERM; if [ \"$RANK\" = 0 ]; then sleep 0.3; exit 3; fi; while :; do sleep 0.1; done",
      /*grace_s=*/0.5);
  EXPECT_EQ(l.rc, 3);
  EXPECT_LT(l.seconds, 8.0);
  EXPECT_TRUE(has(l.err, "seqmix: launch: rank 0 failed (exit code 3)")) << l.err;
  EXPECT_TRUE(has(l.err, "rank 1: killed by signal 9")) << l.err;
}

TEST(Launch, DeathBySignalIsReported) {
  const Launched l = launch_sh(2, "if [ \"$RANK\" = 1 ]; then kill -KILL $$; fi; exit 0");
  EXPECT_EQ(l.rc, 128 + 9);
  EXPECT_TRUE(has(l.err, "seqmix: launch: rank 1 failed (killed by signal 9)")) << l.err;
}

TEST(Launch, BadOptionsAreUsageErrors) {
  LaunchOptions o;
  o.exe = "/bin/true";
  EXPECT_THROW(run_launch(o), seqmix::Error);  // no command
  o.args = {"x"};
  o.nproc = -1;
  EXPECT_THROW(run_launch(o), seqmix::Error);
  o.nproc = 1;
  o.master_port = 0;
  EXPECT_THROW(run_launch(o), seqmix::Error);
}

// ---- through the executable ----

TEST(LaunchCli, VersionOnEveryRank) {
  const CmdResult r = seqmix_cmd("launch --nproc 3 -- --version");
  EXPECT_EQ(r.code, 0) << r.out;
  for (const char* p : {"[0] seqmix 0.", "[1] seqmix 0.", "[2] seqmix 0."})
    EXPECT_TRUE(has(r.out, p)) << r.out;
}

TEST(LaunchCli, FailingSubcommandExitsWithItsCode) {
  const CmdResult r = seqmix_cmd("launch --nproc 2 --master-port 29556 -- train /nonexistent.yaml");
  EXPECT_EQ(r.code, 2) << r.out;
  // The first rank to fail stops the other, which may or may not have printed its error yet.
  EXPECT_TRUE(has(r.out, "[0] seqmix: config error: ") || has(r.out, "[1] seqmix: config error: "))
      << r.out;
  EXPECT_TRUE(has(r.out, "seqmix: launch: rank ")) << r.out;
  EXPECT_TRUE(has(r.out, " failed (exit code 2)")) << r.out;
}

TEST(LaunchCli, UsageErrorsExit2) {
  EXPECT_EQ(seqmix_cmd("launch").code, 2);
  EXPECT_EQ(seqmix_cmd("launch --nproc 0 -- --version").code, 2);
  EXPECT_EQ(seqmix_cmd("launch --nproc 2 --master-port 0 -- --version").code, 2);
  EXPECT_EQ(seqmix_cmd("launch --nproc two -- --version").code, 2);
  const CmdResult h = seqmix_cmd("launch --help");
  EXPECT_EQ(h.code, 0);
  EXPECT_TRUE(has(h.out, "--nproc")) << h.out;
}

TEST(LaunchCli, SigtermIsForwardedToEveryRank) {
  // Two ranks run a long CPU benchmark; SIGTERM to the launcher must end them promptly.
  const std::string cmd =
      "sh -c '" + std::string(SEQMIX_BIN) +
      " launch --nproc 2 -- bench op copy --device cpu --mib 8 --iters 1000000 --warmup 0 & "
      "pid=$!; sleep 1.5; kill -TERM $pid; wait $pid; echo \"launcher rc=$?\"'";
  const auto t0 = std::chrono::steady_clock::now();
  const CmdResult r = seqmix::tu::run_command(cmd);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 20.0) << r.out;
  EXPECT_TRUE(has(r.out, "launcher rc=143")) << r.out;
  EXPECT_TRUE(has(r.out, "failed (killed by signal 15)")) << r.out;
  EXPECT_TRUE(has(r.out, "the launcher received signal 15")) << r.out;
}

TEST(LaunchCli, SigintIsForwardedEvenWhenTheLauncherIgnoredIt) {
  // A background job of a non-interactive shell starts with SIGINT ignored; an explicit
  // kill -INT must still reach the ranks.
  const std::string cmd =
      "sh -c '" + std::string(SEQMIX_BIN) +
      " launch --nproc 2 -- bench op copy --device cpu --mib 8 --iters 1000000 --warmup 0 & "
      "pid=$!; sleep 1.5; kill -INT $pid; wait $pid; echo \"launcher rc=$?\"'";
  const auto t0 = std::chrono::steady_clock::now();
  const CmdResult r = seqmix::tu::run_command(cmd);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 20.0) << r.out;
  EXPECT_TRUE(has(r.out, "launcher rc=130")) << r.out;
  EXPECT_TRUE(has(r.out, "failed (killed by signal 2)")) << r.out;
}
