// `seqmix launch` (see launch_cmd.h). One thread (the caller) forks the ranks and then waits for
// signals with sigtimedwait (SIGINT/SIGTERM to forward, SIGCHLD for exits); one reader thread per
// child pipe prefixes lines. Every child is put in its own process group (so a terminal's Ctrl-C
// reaches it once, through the launcher, and signals reach its own children too) and gets
// PR_SET_PDEATHSIG so it does not outlive a launcher that was killed. Between fork and exec the
// child only makes async-signal-safe calls; argv and envp are built before forking.
#include "train/cli/launch_cmd.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "train/cli/run_cmds.h"

extern char** environ;

namespace seqmix::cli {

namespace {

using Clock = std::chrono::steady_clock;

// Serialises whole lines from the reader threads.
std::mutex g_write_mu;

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // the terminal went away; nothing useful to do
    }
    p += w;
    n -= size_t(w);
  }
}

// Copies `fd` to `out` line by line with the prefix, until EOF, or until `stop` is set and no data
// arrived for a while (a grandchild may keep the pipe open after its rank exited).
void pump(int fd, int out, std::string prefix, const std::atomic<bool>& stop) {
  std::string pending;
  char buf[4096];
  int idle_polls_after_stop = 0;
  auto emit = [&](const char* s, size_t n) {
    std::string line = prefix;
    line.append(s, n);
    line.push_back('\n');
    std::lock_guard<std::mutex> lock(g_write_mu);
    write_all(out, line.data(), line.size());
  };
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, 100);
    if (r == 0) {
      if (stop.load() && ++idle_polls_after_stop >= 3) break;
      continue;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    idle_polls_after_stop = 0;
    pending.append(buf, size_t(n));
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
      emit(pending.data() + start, nl - start);
    pending.erase(0, start);
  }
  if (!pending.empty()) emit(pending.data(), pending.size());
  ::close(fd);
}

void signal_child(pid_t pid, int sig) {
  if (::kill(-pid, sig) != 0) ::kill(pid, sig);
}

std::string describe_status(int st) {
  if (WIFSIGNALED(st)) return fmt::format("killed by signal {}", WTERMSIG(st));
  return fmt::format("exit code {}", WEXITSTATUS(st));
}

bool failed(int st) {
  return WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0);
}

// Owns argv/envp strings and their pointer arrays for execve.
struct ExecBlock {
  std::vector<std::string> strings;
  std::vector<char*> argv, envp;
};

bool is_rank_var(const char* kv) {
  for (const char* name :
       {"RANK=", "LOCAL_RANK=", "WORLD_SIZE=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT="})
    if (std::strncmp(kv, name, std::strlen(name)) == 0) return true;
  return false;
}

ExecBlock make_exec_block(const LaunchOptions& o, const std::string& argv0, int rank) {
  ExecBlock b;
  std::vector<std::string> args{argv0};
  args.insert(args.end(), o.args.begin(), o.args.end());
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e)
    if (!is_rank_var(*e)) env.emplace_back(*e);
  env.push_back(fmt::format("RANK={}", rank));
  env.push_back(fmt::format("LOCAL_RANK={}", rank));
  env.push_back(fmt::format("WORLD_SIZE={}", o.nproc));
  env.push_back(fmt::format("LOCAL_WORLD_SIZE={}", o.nproc));
  env.push_back(fmt::format("MASTER_ADDR={}", o.master_addr));
  env.push_back(fmt::format("MASTER_PORT={}", o.master_port));
  b.strings = args;
  b.strings.insert(b.strings.end(), env.begin(), env.end());
  for (size_t i = 0; i < b.strings.size(); ++i)
    (i < args.size() ? b.argv : b.envp).push_back(b.strings[i].data());
  b.argv.push_back(nullptr);
  b.envp.push_back(nullptr);
  return b;
}

std::string resolve_exe(const std::string& exe) {
  if (exe != "/proc/self/exe") return exe;
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return exe;
  return std::string(buf, size_t(n));
}

struct Child {
  int rank = 0;
  pid_t pid = -1;
  bool alive = false;
  int status = 0;
};

// Restores the signal mask of the calling thread.
// While the launcher runs, SIGINT and SIGTERM are blocked and taken by sigtimedwait. Their
// dispositions are set to SIG_DFL first: a signal whose action is SIG_IGN (inherited, e.g. by a
// job started in the background of a script) would be discarded instead of queued, and the
// children inherit SIG_DFL so a forwarded signal is not ignored by them either.
struct MaskGuard {
  sigset_t old;
  struct sigaction old_int {
  }, old_term{};
  MaskGuard() {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGINT, &dfl, &old_int);
    ::sigaction(SIGTERM, &dfl, &old_term);
  }
  ~MaskGuard() {
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    // Swallow our children's SIGCHLDs before unblocking (its default action is to ignore).
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    const timespec zero{0, 0};
    while (::sigtimedwait(&chld, nullptr, &zero) > 0) {
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
};

}  // namespace

int run_launch(const LaunchOptions& opts) {
  SEQMIX_CHECK_KIND(Usage, opts.nproc >= 0, "launch: --nproc {} must be at least 1", opts.nproc);
  SEQMIX_CHECK_KIND(Usage, opts.master_port >= 1 && opts.master_port <= 65535,
                    "launch: --master-port {} is not a TCP port (1..65535)", opts.master_port);
  SEQMIX_CHECK_KIND(Usage, !opts.args.empty(),
                    "launch: no command given (usage: seqmix launch --nproc N -- train CONFIG)");

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  sigset_t old_mask;
  ::pthread_sigmask(SIG_BLOCK, &set, &old_mask);  // before any thread starts: they inherit it
  MaskGuard mask;  // dispositions change only while the signals are blocked
  mask.old = old_mask;

  // Counting GPUs may start driver threads; they inherit the blocked mask set just above, so
  // SIGINT / SIGTERM still reach sigtimedwait below instead of killing the launcher.
  LaunchOptions o = opts;
  if (o.nproc == 0) o.nproc = cuda::is_available() ? std::max(1, cuda::device_count()) : 1;

  const std::string path = resolve_exe(o.exe);
  std::vector<ExecBlock> blocks;
  for (int r = 0; r < o.nproc; ++r) blocks.push_back(make_exec_block(o, path, r));

  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  std::vector<Child> children(size_t(o.nproc));
  const pid_t launcher = ::getpid();
  auto cleanup_on_error = [&] {
    for (Child& c : children)
      if (c.alive) {
        signal_child(c.pid, SIGKILL);
        ::waitpid(c.pid, nullptr, 0);
      }
    stop = true;
    for (std::thread& t : readers) t.join();
  };

  for (int r = 0; r < o.nproc; ++r) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      const int e = errno;
      cleanup_on_error();
      SEQMIX_THROW(Internal, "launch: pipe(): {}", std::strerror(e));
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int e = errno;
      cleanup_on_error();
      SEQMIX_THROW(Internal, "launch: fork() for rank {}: {}", r, std::strerror(e));
    }
    if (pid == 0) {
      // Child: async-signal-safe calls only.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(129);  // the launcher died before prctl
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::pthread_sigmask(SIG_SETMASK, &mask.old, nullptr);
      const ExecBlock& b = blocks[size_t(r)];
      ::execve(path.c_str(), b.argv.data(), b.envp.data());
      const char msg[] = "seqmix: launch: cannot execute the rank's program\n";
      (void)!::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also from the parent, so signals sent right away find the group
    ::close(out[1]);
    ::close(err[1]);
    children[size_t(r)] = Child{r, pid, true, 0};
    const std::string prefix = fmt::format("[{}] ", r);
    readers.emplace_back(pump, out[0], o.out_fd, prefix, std::cref(stop));
    readers.emplace_back(pump, err[0], o.err_fd, prefix, std::cref(stop));
  }

  int alive = o.nproc;
  std::optional<int> first_failure;  // index into children
  bool kill_pending = false;
  Clock::time_point kill_at{};
  int forwarded = 0;
  while (alive > 0) {
    timespec ts{0, 100 * 1000 * 1000};
    siginfo_t si;
    const int sig = ::sigtimedwait(&set, &si, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      forwarded = sig;
      for (const Child& c : children)
        if (c.alive) signal_child(c.pid, sig);
    }
    for (Child& c : children) {
      if (!c.alive) continue;
      int st = 0;
      if (::waitpid(c.pid, &st, WNOHANG) != c.pid) continue;
      c.alive = false;
      c.status = st;
      --alive;
      if (failed(st) && !first_failure) {
        first_failure = c.rank;
        for (const Child& other : children)
          if (other.alive) signal_child(other.pid, SIGTERM);
        kill_pending = true;
        kill_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(o.grace_s));
      }
    }
    if (kill_pending && Clock::now() >= kill_at) {
      for (const Child& c : children)
        if (c.alive) signal_child(c.pid, SIGKILL);
      kill_pending = false;
    }
  }
  stop = true;
  for (std::thread& t : readers) t.join();

  if (!first_failure) return 0;
  const Child& f = children[size_t(*first_failure)];
  std::string msg =
      fmt::format("seqmix: launch: rank {} failed ({})\n", f.rank, describe_status(f.status));
  if (forwarded != 0)
    msg += fmt::format("  the launcher received signal {} and forwarded it to every rank\n",
                       forwarded);
  for (const Child& c : children)
    if (c.rank != f.rank) msg += fmt::format("  rank {}: {}\n", c.rank, describe_status(c.status));
  {
    std::lock_guard<std::mutex> lock(g_write_mu);
    write_all(o.err_fd, msg.data(), msg.size());
  }
  if (WIFSIGNALED(f.status)) return 128 + WTERMSIG(f.status);
  return WEXITSTATUS(f.status);
}

void add_launch_command(CLI::App& app) {
  CLI::App* c = app.add_subcommand(
      "launch",
      "Start one training process per GPU on this machine (data-parallel); the command after "
      "-- is run by every rank, e.g. seqmix launch --nproc 8 -- train run.yaml");
  auto opts = std::make_shared<LaunchOptions>();
  auto nproc = std::make_shared<int>(0);
  c->add_option("--nproc", *nproc, "Number of processes (default: the visible GPUs, 1 without)")
      ->check(CLI::PositiveNumber);
  c->add_option("--master-addr", opts->master_addr, "Rank 0's address (MASTER_ADDR)")
      ->capture_default_str();
  c->add_option("--master-port", opts->master_port, "Rank 0's rendezvous port (MASTER_PORT)")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  c->add_option("command", opts->args, "The seqmix subcommand and its arguments (after --)")
      ->required();
  c->callback([opts, nproc] {
    LaunchOptions o = *opts;
    o.nproc = *nproc;  // 0: one per visible GPU
    const int rc = run_launch(o);
    if (rc != 0) throw ExitCode{rc};
  });
}

}  // namespace seqmix::cli
