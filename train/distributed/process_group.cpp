// Process-group detection from launcher environments, and the TCP rendezvous that hands rank 0's
// bytes (the NCCL unique id) to every rank. Plain POSIX sockets; every wait is bounded by a
// deadline so a missing rank produces an error naming it instead of a hang.
#include "train/distributed/process_group.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "core/check.h"

namespace seqmix::dist {

std::string ProcessGroupEnv::str() const {
  return fmt::format("rank {}/{} (local {}/{}) via {}, master {}:{}", rank, world_size, local_rank,
                     local_world_size, launcher, master_addr, master_port);
}

namespace {

// An integer variable: nullopt when unset; Usage error naming it when malformed.
std::optional<int> int_var(const EnvLookup& env, const std::string& name) {
  const std::optional<std::string> v = env(name);
  if (!v) return std::nullopt;
  const std::string& s = *v;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(s.c_str(), &end, 10);
  SEQMIX_CHECK_KIND(
      Usage, end != s.c_str() && *end == '\0' && errno == 0 && x >= INT32_MIN && x <= INT32_MAX,
      "environment variable {}='{}' is not an integer", name, s);
  return int(x);
}

int required_int(const EnvLookup& env, const std::string& name, const std::string& because) {
  const std::optional<int> v = int_var(env, name);
  SEQMIX_CHECK_KIND(Usage, v.has_value(), "environment variable {} is not set ({})", name, because);
  return *v;
}

// MASTER_ADDR / MASTER_PORT; `may_default` allows 127.0.0.1:29500 when unset (one machine).
void read_master(const EnvLookup& env, ProcessGroupEnv& pg, bool may_default,
                 const std::string& why_needed) {
  const std::optional<std::string> addr = env("MASTER_ADDR");
  const std::optional<int> port = int_var(env, "MASTER_PORT");
  if (pg.world_size > 1 && !may_default) {
    SEQMIX_CHECK_KIND(Usage, addr.has_value(), "environment variable MASTER_ADDR is not set ({})",
                      why_needed);
    SEQMIX_CHECK_KIND(Usage, port.has_value(), "environment variable MASTER_PORT is not set ({})",
                      why_needed);
  }
  if (addr) pg.master_addr = *addr;
  if (port) pg.master_port = *port;
  SEQMIX_CHECK_KIND(Usage, pg.master_port >= 1 && pg.master_port <= 65535,
                    "MASTER_PORT={} is not a TCP port (1..65535)", pg.master_port);
}

void check_ranks(const ProcessGroupEnv& pg, const char* rank_var, const char* size_var,
                 const char* local_var) {
  SEQMIX_CHECK_KIND(Usage, pg.world_size >= 1, "{}={} must be at least 1", size_var, pg.world_size);
  SEQMIX_CHECK_KIND(Usage, pg.rank >= 0 && pg.rank < pg.world_size, "{}={} is not below {}={}",
                    rank_var, pg.rank, size_var, pg.world_size);
  SEQMIX_CHECK_KIND(Usage, pg.local_world_size >= 1 && pg.local_world_size <= pg.world_size,
                    "local world size {} is not in 1..{}={}", pg.local_world_size, size_var,
                    pg.world_size);
  SEQMIX_CHECK_KIND(Usage, pg.local_rank >= 0 && pg.local_rank < pg.local_world_size,
                    "{}={} is not below the number of local ranks ({})", local_var, pg.local_rank,
                    pg.local_world_size);
}

}  // namespace

ProcessGroupEnv detect_process_group(const EnvLookup& env) {
  ProcessGroupEnv pg;
  if (const std::optional<int> t = int_var(env, "SEQMIX_DIST_TIMEOUT")) {
    SEQMIX_CHECK_KIND(Usage, *t > 0, "SEQMIX_DIST_TIMEOUT={} must be a positive number of seconds",
                      *t);
    pg.timeout_s = *t;
  }
  if (env("RANK") || env("WORLD_SIZE")) {
    pg.launcher = "env";
    pg.world_size = required_int(env, "WORLD_SIZE", "RANK is set");
    pg.rank = required_int(env, "RANK", "WORLD_SIZE is set");
    pg.local_world_size = int_var(env, "LOCAL_WORLD_SIZE").value_or(pg.world_size);
    if (pg.world_size > 1)
      pg.local_rank = required_int(env, "LOCAL_RANK", "WORLD_SIZE > 1; it picks the GPU");
    else
      pg.local_rank = int_var(env, "LOCAL_RANK").value_or(0);
    check_ranks(pg, "RANK", "WORLD_SIZE", "LOCAL_RANK");
    read_master(env, pg, false, "WORLD_SIZE > 1; rank 0's address for the rendezvous");
    return pg;
  }
  if (env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    pg.launcher = "slurm";
    pg.world_size = required_int(env, "SLURM_NTASKS", "");
    pg.rank = required_int(env, "SLURM_PROCID", "");
    pg.local_rank = int_var(env, "SLURM_LOCALID").value_or(0);
    std::optional<int> nnodes = int_var(env, "SLURM_NNODES");
    if (!nnodes) nnodes = int_var(env, "SLURM_JOB_NUM_NODES");
    SEQMIX_CHECK_KIND(Usage, !nnodes || *nnodes >= 1, "SLURM_NNODES={} must be at least 1",
                      nnodes.value_or(0));
    const bool one_node = nnodes && *nnodes == 1;
    // SLURM_NTASKS_PER_NODE may read "4" or "2(x3)"; only a plain number is used.
    pg.local_world_size = pg.world_size;
    if (!one_node) {
      const std::optional<std::string> per_node = env("SLURM_NTASKS_PER_NODE");
      if (per_node && per_node->find_first_not_of("0123456789") == std::string::npos &&
          per_node->size() < 9)
        pg.local_world_size = std::max(1, std::min(pg.world_size, std::stoi(*per_node)));
    }
    check_ranks(pg, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID");
    read_master(env, pg, one_node,
                "a Slurm job on several nodes; set it to the first host of SLURM_JOB_NODELIST");
    return pg;
  }
  if (env("OMPI_COMM_WORLD_RANK") || env("OMPI_COMM_WORLD_SIZE")) {
    pg.launcher = "mpirun";
    pg.world_size = required_int(env, "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK is set");
    pg.rank = required_int(env, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE is set");
    pg.local_rank = int_var(env, "OMPI_COMM_WORLD_LOCAL_RANK").value_or(0);
    pg.local_world_size = int_var(env, "OMPI_COMM_WORLD_LOCAL_SIZE").value_or(pg.world_size);
    check_ranks(pg, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK");
    read_master(env, pg, pg.local_world_size == pg.world_size,
                "mpirun over several nodes; set it to rank 0's host");
    return pg;
  }
  return pg;
}

ProcessGroupEnv detect_process_group() {
  return detect_process_group([](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  });
}

// ---------------------------------------------------------------------------------------------
// TCP rendezvous
// ---------------------------------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kMagic = 0x53514d58;  // "SQMX"

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd_ = o.fd_;
    o.fd_ = -1;
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

Clock::time_point deadline_after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() <= 0 ? 0 : int(std::min<int64_t>(left.count(), 1 << 30));
}

// Waits for `events` on fd; false at the deadline.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

// Reads exactly n bytes; an empty string on EOF, error or time-out (`why` says which).
bool read_full(int fd, void* buf, size_t n, Clock::time_point deadline, std::string& why) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    if (!wait_fd(fd, POLLIN, deadline)) {
      why = "timed out";
      return false;
    }
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r == 0) {
      why = "connection closed";
      return false;
    }
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      why = std::strerror(errno);
      return false;
    }
    p += r;
    n -= size_t(r);
  }
  return true;
}

bool write_full(int fd, const void* buf, size_t n) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += r;
    n -= size_t(r);
  }
  return true;
}

std::string rank_list(const std::vector<bool>& arrived) {
  std::string s;
  for (size_t r = 1; r < arrived.size(); ++r)
    if (!arrived[r]) s += (s.empty() ? "" : ", ") + std::to_string(r);
  return s;
}

std::string serve(const std::string& addr, int port, int world, const std::string& payload,
                  double timeout_s) {
  Fd lst(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  SEQMIX_CHECK_KIND(Internal, lst.get() >= 0, "rendezvous: socket(): {}", std::strerror(errno));
  const int one = 1;
  ::setsockopt(lst.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  sa.sin_port = htons(uint16_t(port));
  if (::bind(lst.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    const int e = errno;
    SEQMIX_CHECK_KIND(Usage, e != EADDRINUSE,
                      "rendezvous: rank 0 cannot listen on port {} (MASTER_PORT): it is already in "
                      "use; choose another port",
                      port);
    SEQMIX_THROW(Internal, "rendezvous: rank 0 cannot listen on port {}: {}", port,
                 std::strerror(e));
  }
  SEQMIX_CHECK_KIND(Internal, ::listen(lst.get(), 128) == 0, "rendezvous: listen(): {}",
                    std::strerror(errno));

  const Clock::time_point deadline = deadline_after(timeout_s);
  std::vector<Fd> peers;
  peers.resize(size_t(world));
  std::vector<bool> arrived(size_t(world), false);
  arrived[0] = true;
  int waiting = world - 1;
  while (waiting > 0) {
    if (!wait_fd(lst.get(), POLLIN, deadline))
      SEQMIX_THROW(Internal,
                   "rendezvous at {}:{}: rank(s) {} of world size {} did not arrive within {} s "
                   "(did they start, and can they reach this host?)",
                   addr, port, rank_list(arrived), world, timeout_s);
    Fd c(::accept4(lst.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (c.get() < 0) continue;
    uint32_t hello[3];
    std::string why;
    // A stray connection that says nothing is dropped after a short wait, not trusted.
    const Clock::time_point hello_deadline =
        std::min(deadline, Clock::time_point(Clock::now() + std::chrono::seconds(10)));
    if (!read_full(c.get(), hello, sizeof hello, hello_deadline, why) || ntohl(hello[0]) != kMagic)
      continue;
    const int r = int(ntohl(hello[1])), w = int(ntohl(hello[2]));
    SEQMIX_CHECK_KIND(Usage, w == world,
                      "rendezvous at {}:{}: rank {} says the world size is {}, rank 0 says {}",
                      addr, port, r, w, world);
    SEQMIX_CHECK_KIND(Usage, r > 0 && r < world,
                      "rendezvous at {}:{}: a process announced rank {} (world size {})", addr,
                      port, r, world);
    SEQMIX_CHECK_KIND(Usage, !arrived[size_t(r)],
                      "rendezvous at {}:{}: two processes claim rank {}", addr, port, r);
    arrived[size_t(r)] = true;
    peers[size_t(r)] = std::move(c);
    --waiting;
  }
  const uint32_t len = htonl(uint32_t(payload.size()));
  for (int r = 1; r < world; ++r) {
    const int fd = peers[size_t(r)].get();
    SEQMIX_CHECK_KIND(
        Internal,
        write_full(fd, &len, sizeof len) && write_full(fd, payload.data(), payload.size()),
        "rendezvous at {}:{}: rank {} dropped the connection", addr, port, r);
  }
  // Wait for every rank's acknowledgement so no socket closes before its payload is read.
  for (int r = 1; r < world; ++r) {
    uint8_t ack = 0;
    std::string why;
    SEQMIX_CHECK_KIND(Internal, read_full(peers[size_t(r)].get(), &ack, 1, deadline, why),
                      "rendezvous at {}:{}: rank {} did not acknowledge ({})", addr, port, r, why);
  }
  return payload;
}

std::string join(const std::string& addr, int port, int rank, int world, double timeout_s) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port_s = std::to_string(port);
  const int gai = ::getaddrinfo(addr.c_str(), port_s.c_str(), &hints, &res);
  SEQMIX_CHECK_KIND(Usage, gai == 0, "rendezvous: MASTER_ADDR '{}' does not resolve: {}", addr,
                    ::gai_strerror(gai));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(res, ::freeaddrinfo);

  const Clock::time_point deadline = deadline_after(timeout_s);
  std::string last_error = "no attempt";
  Fd s;
  while (s.get() < 0) {
    for (addrinfo* ai = res; ai != nullptr && s.get() < 0; ai = ai->ai_next) {
      Fd c(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
      if (c.get() < 0) continue;
      if (::connect(c.get(), ai->ai_addr, ai->ai_addrlen) == 0)
        s = std::move(c);
      else
        last_error = std::strerror(errno);
    }
    if (s.get() >= 0) break;
    SEQMIX_CHECK_KIND(Internal, ms_left(deadline) > 0,
                      "rendezvous: rank {} could not reach rank 0 at {}:{} within {} s (last "
                      "error: {}); is rank 0 running and MASTER_ADDR/MASTER_PORT right?",
                      rank, addr, port, timeout_s, last_error);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const uint32_t hello[3] = {htonl(kMagic), htonl(uint32_t(rank)), htonl(uint32_t(world))};
  SEQMIX_CHECK_KIND(Internal, write_full(s.get(), hello, sizeof hello),
                    "rendezvous: rank {} lost the connection to rank 0 at {}:{}", rank, addr, port);
  uint32_t len = 0;
  std::string why;
  const bool ok_len = read_full(s.get(), &len, sizeof len, deadline, why);
  SEQMIX_CHECK_KIND(Internal, ok_len,
                    "rendezvous: rank {} got no reply from rank 0 at {}:{} ({}; rank 0 waits until "
                    "all {} ranks have arrived)",
                    rank, addr, port, why, world);
  std::string payload(ntohl(len), '\0');
  SEQMIX_CHECK_KIND(Internal, read_full(s.get(), payload.data(), payload.size(), deadline, why),
                    "rendezvous: rank {}: reading rank 0's reply from {}:{} failed ({})", rank,
                    addr, port, why);
  const uint8_t ack = 1;
  write_full(s.get(), &ack, 1);
  return payload;
}

}  // namespace

std::string rendezvous_broadcast(const std::string& addr, int port, int rank, int world_size,
                                 const std::string& payload, double timeout_s) {
  SEQMIX_CHECK(world_size >= 1 && rank >= 0 && rank < world_size,
               "rendezvous: rank {} of world size {}", rank, world_size);
  SEQMIX_CHECK(port >= 1 && port <= 65535, "rendezvous: port {} out of range", port);
  if (world_size == 1) return payload;
  return rank == 0 ? serve(addr, port, world_size, payload, timeout_s)
                   : join(addr, port, rank, world_size, timeout_s);
}

}  // namespace seqmix::dist
