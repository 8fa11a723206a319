// Module tree: parameter registration, dotted names, device moves, state dicts.
#include "layers/module.h"

#include <map>
#include <set>

#include "core/check.h"

namespace seqmix::nn {

Module::~Module() = default;

void Module::check_new_name(const std::string& name) const {
  SEQMIX_CHECK(!name.empty() && name.find('.') == std::string::npos,
               "module: name '{}' must be non-empty and contain no '.'", name);
  for (const Entry& e : entries_)
    SEQMIX_CHECK(e.name != name, "module: name '{}' is already registered", name);
}

Variable Module::register_parameter(const std::string& name, Tensor init, bool decay) {
  check_new_name(name);
  SEQMIX_CHECK(init.defined(), "module: parameter '{}' has no value", name);
  if (is_floating(init.dtype()) && init.dtype() != DType::F32) init = init.to(DType::F32);
  // A private contiguous buffer: the parameter never aliases the caller's tensor.
  Variable v(init.clone(), is_floating(init.dtype()));
  v.set_name(name);
  entries_.push_back({name, v, decay, nullptr});
  return v;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name);
  SEQMIX_CHECK(m != nullptr, "module: child '{}' is null", name);
  SEQMIX_CHECK(m.get() != this, "module: child '{}' is the module itself", name);
  m->train(training_);
  entries_.push_back({name, Variable(), false, std::move(m)});
}

void Module::collect(const std::string& prefix,
                     std::vector<std::pair<std::string, const Entry*>>& out) const {
  for (const Entry& e : entries_) {
    if (e.child)
      e.child->collect(prefix + e.name + ".", out);
    else
      out.emplace_back(prefix + e.name, &e);
  }
}

std::vector<std::pair<std::string, Variable>> Module::named_parameters() const {
  std::vector<std::pair<std::string, const Entry*>> all;
  collect("", all);
  std::vector<std::pair<std::string, Variable>> out;
  out.reserve(all.size());
  for (auto& [n, e] : all) out.emplace_back(std::move(n), e->param);
  return out;
}

std::vector<Variable> Module::parameters() const {
  std::vector<Variable> out;
  for (auto& [n, v] : named_parameters()) out.push_back(v);
  return out;
}

bool Module::decays(const std::string& dotted_name) const {
  std::vector<std::pair<std::string, const Entry*>> all;
  collect("", all);
  for (const auto& [n, e] : all)
    if (n == dotted_name) return e->decay;
  SEQMIX_THROW(Value, "module: no parameter named '{}'", dotted_name);
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, v] : named_parameters()) n += v.numel();
  return n;
}

void Module::to(Device d) {
  for (const auto& [name, v] : named_parameters()) {
    if (v.device() == d) continue;
    v.set_data(v.data().to(d));
    if (v.grad().defined()) v.set_grad(v.grad().to(d));
  }
}

void Module::to(DType dtype) {
  SEQMIX_CHECK(is_floating(dtype), "module: to({}) needs a floating dtype", dtype_name(dtype));
  for (const auto& [name, v] : named_parameters()) {
    if (!is_floating(v.dtype()) || v.dtype() == dtype) continue;
    v.set_data(v.data().to(dtype));
    v.zero_grad(true);
  }
}

void Module::train(bool on) {
  training_ = on;
  for (Entry& e : entries_)
    if (e.child) e.child->train(on);
}

std::vector<std::pair<std::string, Tensor>> Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [n, v] : named_parameters()) out.emplace_back(n, v.data());
  return out;
}

namespace {
std::string join_names(const std::vector<std::string>& names) {
  constexpr size_t kShown = 8;
  std::string s;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > kShown) s += fmt::format(" and {} more", names.size() - kShown);
  return s;
}
}  // namespace

void Module::load_state_dict(const std::vector<std::pair<std::string, Tensor>>& state,
                             bool strict) {
  const auto params = named_parameters();
  std::map<std::string, const Tensor*> given;
  std::vector<std::string> unexpected, missing, duplicated;
  for (const auto& [n, t] : state) {
    if (!given.emplace(n, &t).second) duplicated.push_back(n);
  }
  SEQMIX_CHECK_KIND(Checkpoint, duplicated.empty(), "state dict: duplicated key(s) {}",
                    join_names(duplicated));
  std::set<std::string> known;
  for (const auto& [n, v] : params) known.insert(n);
  for (const auto& [n, t] : given)
    if (!known.count(n)) unexpected.push_back(n);
  // Validate everything before writing anything, so a failed load leaves the model untouched.
  for (const auto& [n, v] : params) {
    auto it = given.find(n);
    if (it == given.end()) {
      missing.push_back(n);
      continue;
    }
    const Tensor& t = *it->second;
    SEQMIX_CHECK_KIND(Checkpoint, t.defined(), "state dict: key '{}' has no tensor", n);
    SEQMIX_CHECK_KIND(Checkpoint, t.shape() == v.shape(),
                      "state dict: key '{}' has shape {}, the model expects {}", n, t.shape_str(),
                      v.data().shape_str());
    SEQMIX_CHECK_KIND(Checkpoint, is_floating(t.dtype()) == is_floating(v.dtype()),
                      "state dict: key '{}' has dtype {}, the model expects {}", n,
                      dtype_name(t.dtype()), dtype_name(v.dtype()));
  }
  if (strict) {
    SEQMIX_CHECK_KIND(Checkpoint, missing.empty() && unexpected.empty(),
                      "state dict does not match the model: missing key(s) [{}], unexpected "
                      "key(s) [{}]",
                      join_names(missing), join_names(unexpected));
  }
  for (const auto& [n, v] : params) {
    auto it = given.find(n);
    if (it != given.end()) v.data().copy_(*it->second);
  }
}

}  // namespace seqmix::nn
