// Process-group start-up: which rank this process is, how many there are, and where rank 0 listens,
// read from the environment of the usual launchers.
//
//   seqmix launch / torchrun-style  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
//                                   (LOCAL_WORLD_SIZE optional)
//   Slurm (srun)                    SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR /
//                                   MASTER_PORT, or 127.0.0.1:29500 when SLURM_NNODES=1
//   Open MPI (mpirun)               OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE,
//                                   OMPI_COMM_WORLD_LOCAL_RANK (+ _LOCAL_SIZE); MASTER_ADDR /
//                                   MASTER_PORT, or 127.0.0.1:29500 when all ranks are local
//   none of these                   a single process (world 1)
//
// The first family present wins, in this order (a torchrun inside a Slurm allocation sets RANK).
// SEQMIX_DIST_TIMEOUT (seconds, default 300) bounds the rendezvous.
#pragma once
#include <functional>
#include <optional>
#include <string>

namespace seqmix::dist {

inline constexpr int kDefaultMasterPort = 29500;

struct ProcessGroupEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;  // ranks on this machine (when the launcher says; else world_size)
  std::string master_addr = "127.0.0.1";
  int master_port = kDefaultMasterPort;
  std::string launcher = "none";  // "none", "env" (seqmix launch / torchrun), "slurm", "mpirun"
  double timeout_s = 300;         // rendezvous time-out
  bool distributed() const { return world_size > 1; }
  std::string str() const;  // "rank 1/4 (local 1) via env, master 127.0.0.1:29500"
};

// Looks a variable up; nullopt when unset (an empty value counts as unset).
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// Reads the process environment.
ProcessGroupEnv detect_process_group();
// Same, with an injected environment (tests). Inconsistent or malformed values raise
// Error(Usage) naming the variable and its value (e.g. "RANK=4 is not below WORLD_SIZE=4").
ProcessGroupEnv detect_process_group(const EnvLookup& env);

// Rendezvous over TCP (the NCCL unique-id exchange, usable without a GPU): rank 0 listens on
// `port` (all interfaces), ranks 1..world-1 connect to `addr`:`port` (retrying until the
// deadline, since rank 0 may start later), announce their rank, and receive `payload` from rank 0.
// Returns rank 0's payload on every rank (rank 0 passes it in; the others pass anything).
// Errors: Internal naming the address and the ranks that did not arrive within `timeout_s`
// (rank 0) or "rank R could not reach rank 0 at ADDR:PORT" (others); Usage when the port is in
// use or the address does not resolve.
std::string rendezvous_broadcast(const std::string& addr, int port, int rank, int world_size,
                                 const std::string& payload, double timeout_s);

}  // namespace seqmix::dist
