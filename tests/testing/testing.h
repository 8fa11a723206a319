// Shared test helpers: fresh random inputs (seed printed on failure, fixed with
// SEQMIX_TEST_SEED), comparison by relative RMS error with NaN detection, and the GPU skip.
// Every test binary links this library's main(), which turns on allocation poisoning: new
// memory is filled with NaN bytes, so an output element a kernel fails to write is caught.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "core/cuda/runtime.h"
#include "core/tensor.h"

namespace seqmix::tu {

// The base seed of this test process (random unless SEQMIX_TEST_SEED is set).
uint64_t base_seed();
// A new seed for one input draw: base_seed() mixed with a counter.
uint64_t next_seed();

// Random tensors drawn on the CPU from the Philox generator (so CPU and GPU copies are equal),
// then moved to `device`.
Tensor randn(const Shape& shape, DType dtype, Device device = Device::cpu(), double std = 1.0);
Tensor rand_uniform(const Shape& shape, DType dtype, double lo, double hi,
                    Device device = Device::cpu());
Tensor randint(const Shape& shape, int64_t lo, int64_t hi, DType dtype = DType::I64,
               Device device = Device::cpu());

struct Comparison {
  double rel_rms = 0;     // ||ref - got|| / ||ref||
  double max_abs = 0;     // max |ref - got|
  int64_t nan_count = 0;  // elements of got that are NaN where ref is not
  int64_t n = 0;
  std::string str() const;
};
Comparison compare(const Tensor& got, const Tensor& ref);

// Fails (non-fatally) when got has NaNs where ref has none, or rel_rms > tol.
::testing::AssertionResult close(const Tensor& got, const Tensor& ref, double tol);
// Bitwise equality of two tensors (same dtype and shape).
::testing::AssertionResult bitwise_equal(const Tensor& a, const Tensor& b);

// Runs a shell command, capturing stdout + stderr (for tests of the seqmix executable).
struct CmdResult {
  int code = -1;    // exit status (-1 when killed by a signal)
  std::string out;  // stdout + stderr
};
CmdResult run_command(const std::string& command);

// Tolerances of ARCHITECTURE.md §9.
inline double tol_for(DType inputs) {
  return inputs == DType::F32 || inputs == DType::F64 ? 1e-5 : 5e-3;
}

}  // namespace seqmix::tu

#define SEQMIX_REQUIRE_CUDA()                                                          \
  do {                                                                                 \
    if (!::seqmix::cuda::is_available())                                               \
      GTEST_SKIP() << "needs a CUDA device: " << ::seqmix::cuda::unavailable_reason(); \
  } while (0)

// Names the seed in any failure message of the enclosing scope.
#define SEQMIX_TRACE_SEED() \
  SCOPED_TRACE("SEQMIX_TEST_SEED=" + std::to_string(::seqmix::tu::base_seed()))
