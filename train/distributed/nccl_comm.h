// NcclComm: the multi-GPU communicator (one process per GPU), defined in nccl_comm_cuda.cpp, which
// is compiled only in CUDA builds and holds code only when NCCL was found (SEQMIX_WITH_NCCL).
// Start-up: rank 0 creates the NCCL unique id, rendezvous_broadcast() hands it to every rank over
// TCP (MASTER_ADDR:MASTER_PORT, bounded by ProcessGroupEnv::timeout_s), then ncclCommInitRank.
// NCCL_NVLS_ENABLE=0 is set unless the user set it (NVLink multicast needs resources that
// containers and MIG setups often lack). Every NCCL call is checked (Error(Cuda) naming the call,
// NCCL's message and last error).
#pragma once
#include <memory>

#include "train/distributed/communicator.h"

namespace seqmix::dist {

#if SEQMIX_WITH_NCCL
std::unique_ptr<Communicator> make_nccl_comm(const ProcessGroupEnv& env, int device);
#endif

}  // namespace seqmix::dist
