// The sweep runner (see sweep_runner.h): fork/exec of the cells with a fixed number of slots,
// each slot owning one GPU; SIGINT / SIGTERM stop launching new cells, are forwarded to the
// running ones (which checkpoint and exit), and the reports are still written.
#include "train/sweep/sweep_runner.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "train/sweep/sweep.h"

extern char** environ;

namespace fs = std::filesystem;

namespace seqmix::sweep {

namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_sweep_signal(int sig) {
  g_signal = sig;
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-./=:,+") == std::string::npos)
    return s;
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

std::string resolve_exe(const std::string& exe) {
  if (exe != "/proc/self/exe") return exe;
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, size_t(n)) : exe;
}

bool has_checkpoints(const fs::path& run_dir) {
  std::error_code ec;
  const fs::path c = run_dir / "checkpoints";
  if (!fs::is_directory(c, ec)) return false;
  for (const auto& e : fs::directory_iterator(c, ec))
    if (e.path().extension() == ".h5") return true;
  return false;
}

// The GPU ids the slots own: entries of CUDA_VISIBLE_DEVICES when set, else 0..n-1.
std::vector<std::string> gpu_ids(int n) {
  std::vector<std::string> ids;
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES"); v != nullptr && *v != '\0') {
    std::stringstream ss(v);
    for (std::string id; std::getline(ss, id, ',');)
      if (!id.empty()) ids.push_back(id);
  }
  if (ids.empty())
    for (int i = 0; i < n; ++i) ids.push_back(std::to_string(i));
  if (int(ids.size()) > n) ids.resize(size_t(n));
  return ids;
}

struct Running {
  size_t cell;
  size_t slot;
  Clock::time_point start;
  double earlier_s;  // wall seconds of the earlier segments this run resumes
};

// A cell's wall time over all its segments: each exit writes the total so far to
// cells/<id>/elapsed_s; a run that resumes from checkpoints starts from it, one that starts over
// from 0.
constexpr const char* kElapsedFile = "elapsed_s";

double earlier_wall_s(const fs::path& run_dir) {
  if (!has_checkpoints(run_dir)) return 0.0;
  std::ifstream in(run_dir / kElapsedFile);
  double s = 0.0;
  if (!(in >> s) || !(s >= 0.0)) return 0.0;
  return s;
}

void write_text(const fs::path& p, const std::string& text) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    SEQMIX_CHECK_KIND(Internal, out.good(), "cannot write '{}'", tmp.string());
  }
  fs::rename(tmp, p);
}

}  // namespace

int run_sweep(const std::string& sweep_path, const SweepRunOptions& opt, std::FILE* out) {
  const SweepSpec spec = load_sweep(sweep_path);
  const std::vector<SweepCell> cells = expand_grid(spec, base_layer_count(spec));
  const fs::path dir = opt.dir.empty() ? fs::path("sweeps") / spec.name : fs::path(opt.dir);
  std::vector<size_t> selected;
  for (size_t i = 0; i < cells.size(); ++i)
    if (cell_matches(cells[i], opt.filters)) selected.push_back(i);
  SEQMIX_CHECK_KIND(Usage, !selected.empty(), "sweep '{}': no cell matches the filters ({})",
                    spec.name, fmt::join(opt.filters, " "));
  const std::string exe = resolve_exe(opt.exe);

  std::vector<CellResult> results(cells.size());
  for (size_t i = 0; i < cells.size(); ++i)
    if (auto r = read_result_json((dir / "cells" / cells[i].id / "result.json").string()))
      results[i] = *r;
  auto args_of = [&](size_t i) {
    const fs::path run_dir = dir / "cells" / cells[i].id;
    std::vector<std::string> a{"train", spec.base};
    for (const auto& o : cells[i].overrides) a.insert(a.end(), {"--set", o});
    a.insert(a.end(), {"--run-dir", run_dir.string(), "--quiet"});
    if (has_checkpoints(run_dir)) a.push_back("--resume");
    return a;
  };
  std::vector<size_t> todo;
  for (size_t i : selected)
    if (results[i].status != "ok") todo.push_back(i);

  const int gpus = opt.gpus >= 0 ? opt.gpus : cuda::device_count();
  const std::vector<std::string> ids = gpus > 0 ? gpu_ids(gpus) : std::vector<std::string>{};
  SEQMIX_CHECK_KIND(Usage, opt.per_gpu >= 1, "sweep: --per-gpu must be >= 1, got {}", opt.per_gpu);
  // Slot s runs on GPU ids[s % ids.size()]: per_gpu slots per GPU.
  const size_t slots = std::max<size_t>(1, ids.size()) * size_t(opt.per_gpu);

  if (opt.dry_run) {
    fmt::print(out, "sweep {}: {} cells ({} selected, {} to run), directory {}\n", spec.name,
               cells.size(), selected.size(), todo.size(), dir.string());
    for (size_t i : selected) {
      std::string cmd = shell_quote(exe);
      for (const auto& a : args_of(i)) {  // (two appends: GCC 12 warns falsely on " " + string)
        cmd += ' ';
        cmd += shell_quote(a);
      }
      fmt::print(out, "{} [{}]\n  {}\n", cells[i].id,
                 results[i].status == "ok" ? "finished, skipped" : "to run", cmd);
    }
    std::fflush(out);
    return 0;
  }

  fs::create_directories(dir / "cells");
  {
    std::ifstream in(sweep_path);
    std::stringstream ss;
    ss << in.rdbuf();
    write_text(dir / "sweep.yaml", ss.str());
  }
  fmt::print(out,
             "sweep {}: {} cells, {} selected, {} finished, {} to run ({} at a time{}) in {}\n",
             spec.name, cells.size(), selected.size(), selected.size() - todo.size(), todo.size(),
             slots, ids.empty() ? "" : fmt::format(", GPUs {}", fmt::join(ids, ",")), dir.string());
  std::fflush(out);

  g_signal = 0;
  struct sigaction sa {
  }, old_int{}, old_term{};
  sa.sa_handler = on_sweep_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: waitpid returns EINTR
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);

  std::map<pid_t, Running> running;
  std::vector<bool> slot_busy(slots, false);
  size_t next = 0, done = 0;
  bool any_failed = false, forwarded = false;
  while (next < todo.size() || !running.empty()) {
    while (g_signal == 0 && next < todo.size() && running.size() < slots) {
      const size_t i = todo[next++];
      size_t slot = 0;
      while (slot_busy[slot]) ++slot;
      const fs::path run_dir = dir / "cells" / cells[i].id;
      fs::create_directories(run_dir);
      fs::remove(run_dir / "result.json");
      const double earlier = earlier_wall_s(run_dir);  // (before the child can checkpoint)
      // argv / envp built before fork: the child only dup2s and execs.
      std::vector<std::string> strs{exe};
      for (auto& a : args_of(i)) strs.push_back(std::move(a));
      const size_t argc = strs.size();
      for (char** e = environ; e != nullptr && *e != nullptr; ++e)
        if (ids.empty() || std::strncmp(*e, "CUDA_VISIBLE_DEVICES=", 21) != 0)
          strs.emplace_back(*e);
      if (!ids.empty()) strs.push_back("CUDA_VISIBLE_DEVICES=" + ids[slot % ids.size()]);
      std::vector<char*> argv, envp;
      for (size_t k = 0; k < strs.size(); ++k) (k < argc ? argv : envp).push_back(strs[k].data());
      argv.push_back(nullptr);
      envp.push_back(nullptr);
      const std::string log = (run_dir / "train.log").string();
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      SEQMIX_CHECK_KIND(Internal, fd >= 0, "cannot write '{}': {}", log, std::strerror(errno));
      std::fflush(out);
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::execve(argv[0], argv.data(), envp.data());
        _exit(127);
      }
      ::close(fd);
      SEQMIX_CHECK_KIND(Internal, pid > 0, "fork failed: {}", std::strerror(errno));
      slot_busy[slot] = true;
      running[pid] = Running{i, slot, Clock::now(), earlier};
      fmt::print(out, "[{}/{}] start {}{}\n", next, todo.size(), cells[i].id,
                 ids.empty() ? "" : fmt::format(" (GPU {})", ids[slot % ids.size()]));
      std::fflush(out);
    }
    if (running.empty()) break;  // interrupted before launching the rest
    if (g_signal != 0 && !forwarded) {
      forwarded = true;
      fmt::print(out,
                 "sweep: signal {}: stopping the running cells (they checkpoint; rerun to "
                 "continue)\n",
                 int(g_signal));
      std::fflush(out);
      for (const auto& [pid, r] : running) ::kill(pid, int(g_signal));
    }
    int st = 0;
    const pid_t pid = ::waitpid(-1, &st, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      SEQMIX_THROW(Internal, "waitpid failed: {}", std::strerror(errno));
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    const Running r = it->second;
    running.erase(it);
    slot_busy[r.slot] = false;
    ++done;
    const SweepCell& c = cells[r.cell];
    const fs::path run_dir = dir / "cells" / c.id;
    CellResult res = read_metrics((run_dir / "metrics.jsonl").string(), spec.metric);
    res.wall_s = r.earlier_s + std::chrono::duration<double>(Clock::now() - r.start).count();
    write_text(run_dir / kElapsedFile, fmt::format("{}\n", res.wall_s));
    res.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    res.status = res.exit_code == 0 ? "ok" : "failed";
    results[r.cell] = res;
    if (res.exit_code == 0) {
      write_result_json((run_dir / "result.json").string(), c, res);
      fmt::print(out, "[{}/{}] ok     {}: best {} {} | final {} | {} steps | {:.1f} s\n", done,
                 todo.size(), c.id, spec.metric,
                 res.best_metric ? fmt::format("{:.4f}", *res.best_metric) : "-",
                 res.final_metric ? fmt::format("{:.4f}", *res.final_metric) : "-", res.steps,
                 res.wall_s);
    } else {
      any_failed = true;
      fmt::print(out, "[{}/{}] FAILED {}: exit code {} after {:.1f} s (log: {})\n", done,
                 todo.size(), c.id, res.exit_code, res.wall_s, (run_dir / "train.log").string());
    }
    std::fflush(out);
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);

  write_text(dir / "results.csv", results_csv(spec, cells, results));
  write_text(dir / "results.md", results_markdown(spec, cells, results));
  write_text(dir / "results.svg", results_svg(spec, cells, results));
  fmt::print(out, "sweep {}: wrote {}, {}, {}\n", spec.name, (dir / "results.csv").string(),
             (dir / "results.md").string(), (dir / "results.svg").string());
  std::fflush(out);
  if (g_signal != 0) return 128 + int(g_signal);
  return any_failed ? 1 : 0;
}

}  // namespace seqmix::sweep
