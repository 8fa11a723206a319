// CUDA GEMM through cuBLASLt. Row-major C = A B is issued as the column-major product
// C^T = B^T A^T, so a row-major operand is passed untransposed and a column-major one (a
// transposed view) with op T; nothing is copied. Compute is fp32 (fp64 for f64; TF32 only when
// enabled). Descriptors and the heuristic's first algorithm are cached per (shape, layout, dtype,
// pointer alignment), so a training step pays the heuristic once per shape. Each (device, stream)
// has its own 32 MiB workspace from the caching allocator.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>

#include "core/allocator.h"
#include "core/check.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/ops/matmul_impl.h"

namespace seqmix::ops::impl {
namespace {

#define SEQMIX_CUBLAS_CHECK(expr)                                                              \
  do {                                                                                         \
    cublasStatus_t st_ = (expr);                                                               \
    if (st_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                             \
      SEQMIX_THROW(Cuda, "{} failed: {} ({})", #expr, cublasLtGetStatusString(st_), int(st_)); \
  } while (0)

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32:
      return CUDA_R_32F;
    case DType::BF16:
      return CUDA_R_16BF;
    case DType::F16:
      return CUDA_R_16F;
    case DType::F64:
      return CUDA_R_64F;
    default:
      SEQMIX_THROW(Unsupported, "matmul: dtype {} is not supported", dtype_name(t));
  }
}

int alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 1 && (a % uintptr_t(al)) != 0) al >>= 1;
  return al;
}

struct Key {
  int device;
  DType ab, c;
  bool ta, tb, tf32;
  int64_t m, n, k, batch, lda, ldb, ldc, sa, sb, sc;
  int ala, alb, alc;
  bool operator==(const Key& o) const {
    return std::tie(device, ab, c, ta, tb, tf32, m, n, k, batch, lda, ldb, ldc, sa, sb, sc, ala,
                    alb, alc) == std::tie(o.device, o.ab, o.c, o.ta, o.tb, o.tf32, o.m, o.n, o.k,
                                          o.batch, o.lda, o.ldb, o.ldc, o.sa, o.sb, o.sc, o.ala,
                                          o.alb, o.alc);
  }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 1469598103934665603ull;
    auto mix = [&h](int64_t v) { h = (h ^ uint64_t(v)) * 1099511628211ull; };
    mix(k.device), mix(int(k.ab)), mix(int(k.c)), mix(k.ta), mix(k.tb), mix(k.tf32), mix(k.m),
        mix(k.n), mix(k.k), mix(k.batch), mix(k.lda), mix(k.ldb), mix(k.ldc), mix(k.sa), mix(k.sb),
        mix(k.sc), mix(k.ala), mix(k.alb), mix(k.alc);
    return h;
  }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool double_scale = false;
};

struct State {
  std::mutex mu;
  std::map<int, cublasLtHandle_t> handles;
  std::map<std::pair<int, cudaStream_t>, DataPtr> workspaces;
  std::unordered_map<Key, Plan, KeyHash> plans;
};
State& state() {
  static State* s = new State();  // never destroyed: plans may be used during static teardown
  return *s;
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                                   int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l;
  SEQMIX_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, uint64_t(rows), uint64_t(cols), ld));
  if (batch > 1) {
    const int32_t b = int32_t(batch);
    SEQMIX_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof(b)));
    SEQMIX_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
  return l;
}

}  // namespace

void gemm_cuda(const GemmArgs& g, int device, cudaStream_t stream) {
  SEQMIX_CHECK(g.batch < (int64_t(1) << 31), "matmul: batch {} too large", g.batch);
  // Column-major view: D[n x m] = X[n x k] * Y[k x m] with X from B and Y from A.
  const bool ta = g.b.col_major;  // op on X
  const bool tb = g.a.col_major;  // op on Y
  Key key{device,
          g.ab_dtype,
          g.c_dtype,
          ta,
          tb,
          g.allow_tf32 && g.ab_dtype == DType::F32,
          g.m,
          g.n,
          g.k,
          g.batch,
          g.a.ld,
          g.b.ld,
          g.ldc,
          g.a.batch_stride,
          g.b.batch_stride,
          g.c_batch_stride,
          alignment_of(g.a.ptr),
          alignment_of(g.b.ptr),
          alignment_of(g.c)};

  State& st = state();
  std::unique_lock<std::mutex> lk(st.mu);
  cublasLtHandle_t handle;
  if (auto it = st.handles.find(device); it != st.handles.end()) {
    handle = it->second;
  } else {
    SEQMIX_CUBLAS_CHECK(cublasLtCreate(&handle));
    st.handles[device] = handle;
  }
  void* ws;
  if (auto it = st.workspaces.find({device, stream}); it != st.workspaces.end()) {
    ws = it->second.get();
  } else {
    cuda::StreamGuard sg(device, stream);
    DataPtr p = memory::allocate(Device::cuda(device), kWorkspaceBytes);
    ws = p.get();
    st.workspaces.emplace(std::make_pair(device, stream), std::move(p));
  }

  auto pit = st.plans.find(key);
  if (pit == st.plans.end()) {
    Plan p;
    const cudaDataType_t abt = cuda_type(g.ab_dtype), ct = cuda_type(g.c_dtype);
    cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
    cudaDataType_t scale = CUDA_R_32F;
    if (g.ab_dtype == DType::F64) {
      compute = CUBLAS_COMPUTE_64F;
      scale = CUDA_R_64F;
      p.double_scale = true;
    } else if (key.tf32) {
      compute = CUBLAS_COMPUTE_32F_FAST_TF32;
    }
    SEQMIX_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, compute, scale));
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    SEQMIX_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    SEQMIX_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    // X (from B): stored n x k when not transposed, else k x n. Y (from A): k x m, else m x k.
    p.la = ta ? make_layout(abt, g.k, g.n, g.b.ld, g.batch, g.b.batch_stride)
              : make_layout(abt, g.n, g.k, g.b.ld, g.batch, g.b.batch_stride);
    p.lb = tb ? make_layout(abt, g.m, g.k, g.a.ld, g.batch, g.a.batch_stride)
              : make_layout(abt, g.k, g.m, g.a.ld, g.batch, g.a.batch_stride);
    p.lc = make_layout(ct, g.n, g.m, g.ldc, g.batch, g.c_batch_stride);

    cublasLtMatmulPreference_t pref;
    SEQMIX_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const size_t wsb = kWorkspaceBytes;
    SEQMIX_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb)));
    const uint32_t alx = uint32_t(key.alb), aly = uint32_t(key.ala), alc = uint32_t(key.alc);
    SEQMIX_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alx, sizeof(alx)));
    SEQMIX_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &aly, sizeof(aly)));
    SEQMIX_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alc, sizeof(alc)));
    SEQMIX_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alc, sizeof(alc)));
    cublasLtMatmulHeuristicResult_t res{};
    int count = 0;
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(handle, p.desc, p.la, p.lb, p.lc, p.lc,
                                                             pref, 1, &res, &count);
    cublasLtMatmulPreferenceDestroy(pref);
    SEQMIX_CHECK_KIND(Unsupported, hs == CUBLAS_STATUS_SUCCESS && count > 0,
                      "matmul: cuBLASLt has no algorithm for {} x {} x {} ({} -> {}, batch {}): {}",
                      g.m, g.n, g.k, dtype_name(g.ab_dtype), dtype_name(g.c_dtype), g.batch,
                      cublasLtGetStatusString(hs));
    p.algo = res.algo;
    pit = st.plans.emplace(key, p).first;
  }
  const Plan& p = pit->second;
  lk.unlock();  // plans are never erased; the handle is thread-safe for distinct streams

  const float af = float(g.alpha), bf = float(g.beta);
  const void* alpha = p.double_scale ? static_cast<const void*>(&g.alpha) : &af;
  const void* beta = p.double_scale ? static_cast<const void*>(&g.beta) : &bf;
  SEQMIX_CUBLAS_CHECK(cublasLtMatmul(handle, p.desc, alpha, g.b.ptr, p.la, g.a.ptr, p.lb, beta, g.c,
                                     p.lc, g.c, p.lc, &p.algo, ws, kWorkspaceBytes, stream));
}

}  // namespace seqmix::ops::impl
