// Sequence mixers: the module interface, the YAML-facing spec, typed option parsing and the one
// explicit table `mixer name -> factory` (mixer_table.cpp). Adding a mixer = one module file in
// layers/mixers/ that defines `MixerEntry <name>_mixer_entry()` + one line in the table.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layers/module.h"

namespace seqmix::nn {

// One layer's mixer as written in the config: its type and raw YAML scalars as strings.
struct MixerSpec {
  std::string type;
  std::map<std::string, std::string> options;
};

// One documented option. type: "int", "float", "bool" or "string". default_value is parsed like
// a user value; "auto" means "derived by the mixer" (documented in `doc`). The doc list is the
// single source of truth for option names, types, defaults (and docs/config.md).
struct MixerOptionDoc {
  std::string key, type, default_value, doc;
};

// Standard deviation mixers draw their matrices with; the model rescales them to its init_std.
inline constexpr double kMixerInitStd = 0.02;

class Mixer : public Module {
 public:
  // x: [B, T, C] in ctx.compute -> [B, T, C] in ctx.compute. Causal.
  virtual Variable forward(const Variable& x, const ForwardContext& ctx) = 0;

  // Matrices drawn N(0, kMixerInitStd^2) that the model rescales to N(0, init_std^2).
  const std::vector<Variable>& init_scaled_weights() const { return init_scaled_; }
  // The subset that writes into the residual stream (scaled by a further 1/sqrt(2 L), GPT-2).
  const std::vector<Variable>& residual_output_weights() const { return residual_out_; }

 protected:
  void mark_init_scaled(const Variable& w, bool residual_output = false);

 private:
  std::vector<Variable> init_scaled_, residual_out_;
};

struct MixerEntry {
  std::string name;
  std::string doc;
  std::vector<MixerOptionDoc> options;
  std::function<std::shared_ptr<Mixer>(int64_t d_model, const MixerSpec&, uint64_t init_seed)> make;
};

const std::vector<MixerEntry>& mixer_table();
// nullptr when unknown.
const MixerEntry* find_mixer(const std::string& name);
// Builds the mixer of `spec`; an unknown type raises Config with the nearest known name.
std::shared_ptr<Mixer> make_mixer(int64_t d_model, const MixerSpec& spec, uint64_t init_seed);

// Levenshtein distance (for "did you mean" suggestions).
int64_t edit_distance(const std::string& a, const std::string& b);
// The candidate nearest to `word` when it is close enough to be a plausible typo, else "".
std::string nearest_name(const std::string& word, const std::vector<std::string>& candidates);

// Typed access to a spec's options, checked against the entry's docs. The constructor rejects
// unknown keys (ErrorKind::Config, with a suggestion); getters parse the user's value or the
// documented default and raise Config naming the mixer, the key and the bad value.
class MixerOptions {
 public:
  MixerOptions(std::string mixer, const MixerSpec& spec, const std::vector<MixerOptionDoc>& docs);
  bool given(const std::string& key) const;  // set by the user (not defaulted)
  // nullopt when the effective value is "auto".
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  // Raises Config: "mixer '<name>': option '<key>' <what>".
  [[noreturn]] void fail(const std::string& key, const std::string& what) const;

 private:
  const MixerOptionDoc& doc(const std::string& key, const char* type) const;
  std::string raw(const std::string& key, const char* type) const;

  std::string mixer_;
  const MixerSpec& spec_;
  const std::vector<MixerOptionDoc>& docs_;
};

}  // namespace seqmix::nn
