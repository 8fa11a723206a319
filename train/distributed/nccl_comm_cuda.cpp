// NcclComm (see nccl_comm.h): NCCL collectives on the current stream of the communicator's GPU.
// Host-level agreement (barrier, all_reduce_flag) all-reduces a one-element i32 on the device and
// reads it back, which synchronises that stream.
#include "train/distributed/nccl_comm.h"

#if SEQMIX_WITH_NCCL
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "core/check.h"
#include "core/cuda/runtime.h"

namespace seqmix::dist {

namespace {

#define SEQMIX_NCCL_CHECK(comm, expr)                                                       \
  do {                                                                                      \
    const ncclResult_t seqmix_nccl_r_ = (expr);                                             \
    if (seqmix_nccl_r_ != ncclSuccess) [[unlikely]]                                         \
      SEQMIX_THROW(Cuda, "{} failed: {} ({})", #expr, ncclGetErrorString(seqmix_nccl_r_),   \
                   (comm) != nullptr ? ncclGetLastError(comm) : ncclGetLastError(nullptr)); \
  } while (0)

ncclDataType_t nccl_dtype(DType d) {
  switch (d) {
    case DType::F32:
      return ncclFloat32;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    case DType::F64:
      return ncclFloat64;
    case DType::I32:
      return ncclInt32;
    case DType::I64:
      return ncclInt64;
    case DType::U8:
      return ncclUint8;
  }
  SEQMIX_THROW(Value, "NCCL: unsupported dtype {}", dtype_name(d));
}

class NcclComm final : public Communicator {
 public:
  NcclComm(const ProcessGroupEnv& env, int device) : env_(env), device_(device) {
    // NVLink SHARP / multicast needs fabric-manager resources many machines do not grant.
    ::setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
    cuda::DeviceGuard guard(device_);
    ncclUniqueId id{};
    std::string payload;
    if (env_.rank == 0) {
      SEQMIX_NCCL_CHECK(nullptr, ncclGetUniqueId(&id));
      payload.assign(id.internal, sizeof id.internal);
    }
    payload = rendezvous_broadcast(env_.master_addr, env_.master_port, env_.rank, env_.world_size,
                                   payload, env_.timeout_s);
    SEQMIX_CHECK_KIND(
        Internal, payload.size() == sizeof id.internal,
        "NCCL rendezvous: rank {} received {} bytes from rank 0 at {}:{}, expected {}", env_.rank,
        payload.size(), env_.master_addr, env_.master_port, sizeof id.internal);
    std::memcpy(id.internal, payload.data(), sizeof id.internal);
    SEQMIX_NCCL_CHECK(nullptr, ncclCommInitRank(&comm_, env_.world_size, id, env_.rank));
    flag_ = Tensor::zeros({1}, DType::I32, Device::cuda(device_));
  }

  ~NcclComm() override {
    if (comm_ != nullptr) {
      // Flushes queued collectives; errors cannot be raised from a destructor.
      cuda::DeviceGuard guard(device_);
      if (ncclCommFinalize(comm_) != ncclSuccess)
        ncclCommAbort(comm_);
      else
        ncclCommDestroy(comm_);
    }
  }

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }
  int local_rank() const override { return env_.local_rank; }
  const char* backend() const override { return "nccl"; }

  void all_reduce(Tensor& t, ReduceOp op) override {
    check(t, "all_reduce");
    cuda::DeviceGuard guard(device_);
    SEQMIX_NCCL_CHECK(
        comm_, ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_dtype(t.dtype()),
                             op == ReduceOp::Sum ? ncclSum : ncclAvg, comm_,
                             cuda::current_stream(device_)));
    t.bump_version();
  }

  void broadcast(Tensor& t, int root) override {
    check(t, "broadcast");
    SEQMIX_CHECK(root >= 0 && root < env_.world_size, "broadcast: root {} outside world size {}",
                 root, env_.world_size);
    cuda::DeviceGuard guard(device_);
    SEQMIX_NCCL_CHECK(
        comm_, ncclBroadcast(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_dtype(t.dtype()),
                             root, comm_, cuda::current_stream(device_)));
    t.bump_version();
  }

  void barrier() override { (void)all_reduce_flag(false); }

  bool all_reduce_flag(bool any) override {
    cuda::DeviceGuard guard(device_);
    flag_.fill_(any ? 1.0 : 0.0);
    SEQMIX_NCCL_CHECK(comm_, ncclAllReduce(flag_.data_ptr(), flag_.data_ptr(), 1, ncclInt32,
                                           ncclMax, comm_, cuda::current_stream(device_)));
    return flag_.item() != 0.0;  // synchronises the stream
  }

 private:
  void check(const Tensor& t, const char* what) const {
    SEQMIX_CHECK(t.defined() && t.is_contiguous(), "{}: needs a defined contiguous tensor, got {}",
                 what, describe(t));
    SEQMIX_CHECK(t.device() == Device::cuda(device_),
                 "{}: the tensor is on {}, the communicator on cuda:{}", what, t.device().str(),
                 device_);
  }

  ProcessGroupEnv env_;
  int device_;
  ncclComm_t comm_ = nullptr;
  Tensor flag_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_comm(const ProcessGroupEnv& env, int device) {
  return std::make_unique<NcclComm>(env, device);
}

}  // namespace seqmix::dist

#endif  // SEQMIX_WITH_NCCL
