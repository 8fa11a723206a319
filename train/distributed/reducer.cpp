// GradReducer (see reducer.h and README.md): bucket layout, grad-ready hooks, in-order launch of
// bucket all-reduces, and the GPU stream ordering
//   compute stream --event--> comm stream (all_reduce avg) --event--> compute stream (finish()).
// The hooks run on the thread that runs backward; the state is not shared between threads.
#include "train/distributed/reducer.h"

#include <algorithm>

#include "core/check.h"
#include "core/cuda/runtime.h"

namespace seqmix::dist {

namespace {
constexpr int64_t kAlignElems = 16;  // 64-byte offsets for vectorised optimizer kernels

int64_t round_up(int64_t x, int64_t m) {
  return (x + m - 1) / m * m;
}
}  // namespace

struct GradReducer::State {
  struct Param {
    Variable var;
    std::string name;
    int bucket = 0;
    int64_t offset = 0;  // in the bucket's flat buffer
    Tensor view;
    bool ready = false;
  };
  struct Bucket {
    std::vector<int> params;  // indices into State::params, in expected readiness order
    int64_t numel = 0;
    Tensor flat;
    int pending = 0;
    bool ready = false;
    std::unique_ptr<cuda::Event> done;
  };

  Communicator* comm = nullptr;
  Device device;
  bool enabled = true;
  std::vector<Param> params;  // registration order
  std::vector<Bucket> buckets;
  int next_launch = 0;  // buckets [0, next_launch) have been launched this round
  cudaStream_t comm_stream = nullptr;
  std::unique_ptr<cuda::Event> compute_ready;
  std::vector<Tensor> grads;
  std::vector<std::string> names;
  int64_t round_hooks = 0, round_finish = 0, last_hooks = 0, last_finish = 0;

  ~State() {
    if (comm_stream != nullptr) {
      // The buckets' memory must not be reused while a reduction still reads it.
      try {
        cuda::synchronize_stream(comm_stream);
        cuda::destroy_stream(comm_stream);
      } catch (...) {
      }
    }
  }

  bool round_started() const {
    if (next_launch > 0) return true;
    return std::any_of(params.begin(), params.end(), [](const Param& p) { return p.ready; });
  }

  void launch(int b) {
    Bucket& k = buckets[size_t(b)];
    if (device.is_cpu()) {
      comm->all_reduce(k.flat, ReduceOp::Avg);
      return;
    }
    // The comm stream waits for everything queued on the compute stream so far (including the
    // accumulation into this bucket), then reduces; finish() makes compute wait for `done`.
    compute_ready->record(cuda::current_stream(device.index));
    compute_ready->wait(comm_stream);
    {
      cuda::StreamGuard guard(device.index, comm_stream);
      comm->all_reduce(k.flat, ReduceOp::Avg);
    }
    k.done->record(comm_stream);
  }

  void launch_ready_in_order() {
    while (next_launch < int(buckets.size()) && buckets[size_t(next_launch)].ready)
      launch(next_launch++);
  }

  void on_ready(int i) {
    if (!enabled) return;
    Param& p = params[size_t(i)];
    SEQMIX_CHECK_KIND(Usage, p.var.grad().is_same(p.view),
                      "GradReducer: the gradient of parameter '{}' is no longer a view of its "
                      "bucket (was zero_grad(set_to_none) or set_grad called? use "
                      "GradReducer::zero_grad())",
                      p.name);
    SEQMIX_CHECK_KIND(Usage, !p.ready,
                      "GradReducer: the gradient of parameter '{}' became ready twice; call "
                      "finish() after every backward while the reducer is enabled",
                      p.name);
    p.ready = true;
    Bucket& k = buckets[size_t(p.bucket)];
    if (--k.pending == 0) {
      k.ready = true;
      ++round_hooks;
      launch_ready_in_order();
    }
  }
};

GradReducer::GradReducer(const std::vector<std::pair<std::string, Variable>>& params,
                         Communicator& comm, double bucket_mib)
    : s_(std::make_shared<State>()) {
  SEQMIX_CHECK(bucket_mib >= 0, "GradReducer: bucket size {} MiB must be >= 0", bucket_mib);
  State& s = *s_;
  s.comm = &comm;
  bool have_device = false;
  for (const auto& [name, v] : params) {
    SEQMIX_CHECK(v.defined(), "GradReducer: parameter '{}' is undefined", name);
    if (!v.requires_grad()) continue;
    SEQMIX_CHECK(v.is_leaf(), "GradReducer: parameter '{}' is not a leaf", name);
    SEQMIX_CHECK(v.dtype() == DType::F32, "GradReducer: parameter '{}' is {}, expected f32 masters",
                 name, dtype_name(v.dtype()));
    if (!have_device) {
      s.device = v.device();
      have_device = true;
    }
    SEQMIX_CHECK(v.device() == s.device, "GradReducer: parameter '{}' is on {}, the first on {}",
                 name, v.device().str(), s.device.str());
    State::Param p;
    p.var = v;
    p.name = name;
    s.params.push_back(std::move(p));
  }

  // Buckets in reverse registration order.
  const double cap_bytes = bucket_mib * 1024.0 * 1024.0;
  for (int i = int(s.params.size()) - 1; i >= 0; --i) {
    State::Param& p = s.params[size_t(i)];
    const int64_t n = round_up(p.var.numel(), kAlignElems);
    if (s.buckets.empty() ||
        (!s.buckets.back().params.empty() &&
         double(s.buckets.back().numel + n) * double(sizeof(float)) > cap_bytes))
      s.buckets.emplace_back();
    State::Bucket& k = s.buckets.back();
    p.bucket = int(s.buckets.size()) - 1;
    p.offset = k.numel;
    k.params.push_back(i);
    k.numel += n;
  }
  for (State::Bucket& k : s.buckets) {
    k.flat = Tensor::zeros({k.numel}, DType::F32, s.device);
    k.pending = int(k.params.size());
    if (s.device.is_cuda()) k.done = std::make_unique<cuda::Event>(false);
  }
  if (s.device.is_cuda()) {
    s.comm_stream = cuda::create_stream(s.device.index);
    s.compute_ready = std::make_unique<cuda::Event>(false);
  }
  for (int i = 0; i < int(s.params.size()); ++i) {
    State::Param& p = s.params[size_t(i)];
    const Tensor& flat = s.buckets[size_t(p.bucket)].flat;
    p.view = flat.narrow(0, p.offset, p.var.numel()).view(p.var.shape());
    p.var.set_grad(p.view);
    s.grads.push_back(p.view);
    s.names.push_back(p.name);
    p.var.register_grad_ready_hook([w = std::weak_ptr<State>(s_), i](const Variable&) {
      if (std::shared_ptr<State> st = w.lock()) st->on_ready(i);
    });
  }
}

GradReducer::~GradReducer() = default;

void GradReducer::set_enabled(bool on) {
  if (on == s_->enabled) return;
  SEQMIX_CHECK_KIND(Usage, !s_->round_started(),
                    "GradReducer::set_enabled({}) during a reduction round; call finish() first",
                    on);
  s_->enabled = on;
}

bool GradReducer::enabled() const {
  return s_->enabled;
}

void GradReducer::finish() {
  State& s = *s_;
  if (!s.enabled) return;
  // Buckets whose hooks did not all fire (parameters without a gradient in this backward, maybe
  // only on this rank) are reduced now, still in index order, so every rank issues the same
  // sequence of collectives. Their missing gradients contribute the buffer's current value.
  for (State::Bucket& k : s.buckets) {
    if (!k.ready) {
      k.ready = true;
      ++s.round_finish;
    }
  }
  s.launch_ready_in_order();
  if (s.device.is_cuda()) {
    const cudaStream_t compute = cuda::current_stream(s.device.index);
    for (const State::Bucket& k : s.buckets) k.done->wait(compute);
  }
  for (State::Bucket& k : s.buckets) {
    k.ready = false;
    k.pending = int(k.params.size());
  }
  for (State::Param& p : s.params) p.ready = false;
  s.next_launch = 0;
  s.last_hooks = s.round_hooks;
  s.last_finish = s.round_finish;
  s.round_hooks = s.round_finish = 0;
}

void GradReducer::zero_grad() {
  for (State::Bucket& k : s_->buckets) k.flat.zero_();
}

const std::vector<Tensor>& GradReducer::grads() const {
  return s_->grads;
}

const std::vector<std::string>& GradReducer::names() const {
  return s_->names;
}

std::vector<BucketInfo> GradReducer::buckets() const {
  std::vector<BucketInfo> out;
  for (const State::Bucket& k : s_->buckets) {
    BucketInfo b;
    b.numel = k.numel;
    for (int i : k.params) b.names.push_back(s_->params[size_t(i)].name);
    out.push_back(std::move(b));
  }
  return out;
}

int64_t GradReducer::reduced_by_hooks() const {
  return s_->last_hooks;
}

int64_t GradReducer::reduced_by_finish() const {
  return s_->last_finish;
}

}  // namespace seqmix::dist
