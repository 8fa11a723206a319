#include "tests/testing/testing.h"

#include <sys/wait.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "core/allocator.h"
#include "core/ops/random.h"

namespace seqmix::tu {

uint64_t g_seed = 0;
namespace {
std::atomic<uint64_t> g_counter{0};
}  // namespace

uint64_t base_seed() {
  return g_seed;
}
uint64_t next_seed() {
  return g_seed * 1000003ull + g_counter.fetch_add(1) + 1;
}

Tensor randn(const Shape& shape, DType dtype, Device device, double std) {
  Tensor t = Tensor::empty(shape, dtype, Device::cpu());
  ops::normal_draw(t, 0.0, std, next_seed(), 0);
  return t.to(device);
}

Tensor rand_uniform(const Shape& shape, DType dtype, double lo, double hi, Device device) {
  Tensor t = Tensor::empty(shape, dtype, Device::cpu());
  ops::uniform_draw(t, lo, hi, next_seed(), 0);
  return t.to(device);
}

Tensor randint(const Shape& shape, int64_t lo, int64_t hi, DType dtype, Device device) {
  std::mt19937_64 rng(next_seed());
  std::uniform_int_distribution<int64_t> d(lo, hi - 1);
  std::vector<int64_t> v(size_t(shape.numel()));
  for (auto& x : v) x = d(rng);
  return Tensor::from_vector(v, shape, dtype, device);
}

std::string Comparison::str() const {
  return "rel_rms=" + std::to_string(rel_rms) + " max_abs=" + std::to_string(max_abs) +
         " nan=" + std::to_string(nan_count) + " n=" + std::to_string(n);
}

Comparison compare(const Tensor& got, const Tensor& ref) {
  Comparison c;
  const auto g = got.to_vector<double>();
  const auto r = ref.to_vector<double>();
  c.n = int64_t(r.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(g[i]) && !std::isnan(r[i])) {
      c.nan_count++;
      continue;
    }
    if (std::isnan(r[i])) continue;
    const double d = g[i] - r[i];
    num += d * d;
    den += r[i] * r[i];
    c.max_abs = std::max(c.max_abs, std::fabs(d));
  }
  c.rel_rms = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return c;
}

::testing::AssertionResult close(const Tensor& got, const Tensor& ref, double tol) {
  if (!got.defined() || !ref.defined())
    return ::testing::AssertionFailure()
           << "undefined tensor (got " << describe(got) << ", ref " << describe(ref) << ")";
  if (got.shape() != ref.shape())
    return ::testing::AssertionFailure()
           << "shape " << got.shape_str() << " != reference " << ref.shape_str();
  const Comparison c = compare(got, ref);
  if (c.nan_count > 0 || !(c.rel_rms <= tol))
    return ::testing::AssertionFailure() << c.str() << " (tolerance " << tol << ")";
  return ::testing::AssertionSuccess() << c.str();
}

::testing::AssertionResult bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape())
    return ::testing::AssertionFailure() << describe(a) << " vs " << describe(b);
  const Tensor ha = a.cpu().contiguous(), hb = b.cpu().contiguous();
  if (std::memcmp(ha.data_ptr(), hb.data_ptr(), ha.nbytes()) != 0)
    return ::testing::AssertionFailure() << "tensors differ bitwise";
  return ::testing::AssertionSuccess();
}

CmdResult run_command(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  CmdResult r;
  if (!p) return r;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace seqmix::tu

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (const char* s = std::getenv("SEQMIX_TEST_SEED"))
    seqmix::tu::g_seed = std::strtoull(s, nullptr, 10);
  else
    seqmix::tu::g_seed = std::random_device{}();
  std::printf("SEQMIX_TEST_SEED=%llu\n", static_cast<unsigned long long>(seqmix::tu::g_seed));
  seqmix::memory::set_poison(true);
  return RUN_ALL_TESTS();
}
