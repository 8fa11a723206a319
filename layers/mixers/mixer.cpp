// Mixer base, option parsing with suggestions, and lookups in the mixer table.
#include "layers/mixers/mixer.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/check.h"

namespace seqmix::nn {

void Mixer::mark_init_scaled(const Variable& w, bool residual_output) {
  init_scaled_.push_back(w);
  if (residual_output) residual_out_.push_back(w);
}

int64_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<int64_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = int64_t(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = int64_t(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int64_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string nearest_name(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  int64_t best_d = 0;
  for (const std::string& c : candidates) {
    const int64_t d = edit_distance(word, c);
    if (best.empty() || d < best_d) {
      best = c;
      best_d = d;
    }
  }
  // Plausible typo: at most a third of the longer word changed (and at least 1, at most 3 edits).
  const int64_t limit = std::clamp<int64_t>(int64_t(std::max(word.size(), best.size())) / 3, 1, 3);
  return best_d <= limit ? best : std::string();
}

const MixerEntry* find_mixer(const std::string& name) {
  for (const MixerEntry& e : mixer_table())
    if (e.name == name) return &e;
  return nullptr;
}

std::shared_ptr<Mixer> make_mixer(int64_t d_model, const MixerSpec& spec, uint64_t init_seed) {
  const MixerEntry* e = find_mixer(spec.type);
  if (e == nullptr) {
    std::vector<std::string> names;
    for (const MixerEntry& m : mixer_table()) names.push_back(m.name);
    const std::string near = nearest_name(spec.type, names);
    SEQMIX_THROW(Config, "unknown mixer '{}'{} (known: {})", spec.type,
                 near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near),
                 fmt::join(names, ", "));
  }
  return e->make(d_model, spec, init_seed);
}

MixerOptions::MixerOptions(std::string mixer, const MixerSpec& spec,
                           const std::vector<MixerOptionDoc>& docs)
    : mixer_(std::move(mixer)), spec_(spec), docs_(docs) {
  std::vector<std::string> keys;
  for (const MixerOptionDoc& d : docs_) keys.push_back(d.key);
  for (const auto& [k, v] : spec_.options) {
    if (std::find(keys.begin(), keys.end(), k) != keys.end()) continue;
    const std::string near = nearest_name(k, keys);
    SEQMIX_THROW(Config, "mixer '{}': unknown option '{}'{} (options: {})", mixer_, k,
                 near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near),
                 fmt::join(keys, ", "));
  }
}

void MixerOptions::fail(const std::string& key, const std::string& what) const {
  SEQMIX_THROW(Config, "mixer '{}': option '{}' {}", mixer_, key, what);
}

bool MixerOptions::given(const std::string& key) const {
  return spec_.options.count(key) != 0;
}

const MixerOptionDoc& MixerOptions::doc(const std::string& key, const char* type) const {
  for (const MixerOptionDoc& d : docs_)
    if (d.key == key) {
      SEQMIX_CHECK_KIND(Internal, d.type == type,
                        "mixer '{}': option '{}' is documented as {} but read as {}", mixer_, key,
                        d.type, type);
      return d;
    }
  SEQMIX_THROW(Internal, "mixer '{}': option '{}' is read but not documented", mixer_, key);
}

std::string MixerOptions::raw(const std::string& key, const char* type) const {
  const MixerOptionDoc& d = doc(key, type);
  auto it = spec_.options.find(key);
  return it != spec_.options.end() ? it->second : d.default_value;
}

namespace {
std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}
}  // namespace

std::optional<int64_t> MixerOptions::get_int(const std::string& key) const {
  const std::string v = trim(raw(key, "int"));
  if (v == "auto") return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE)
    fail(key, fmt::format("must be an integer, got '{}'", v));
  return int64_t(x);
}

std::optional<double> MixerOptions::get_float(const std::string& key) const {
  const std::string v = trim(raw(key, "float"));
  if (v == "auto") return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE || !std::isfinite(x))
    fail(key, fmt::format("must be a finite number, got '{}'", v));
  return x;
}

bool MixerOptions::get_bool(const std::string& key) const {
  const std::string v = trim(raw(key, "bool"));
  if (v == "true" || v == "True" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "False" || v == "0" || v == "no" || v == "off") return false;
  fail(key, fmt::format("must be true or false, got '{}'", v));
}

std::string MixerOptions::get_string(const std::string& key) const {
  return raw(key, "string");
}

}  // namespace seqmix::nn
