// Run configuration: YAML reading with validation (key paths, file:line, nearest-key
// suggestions), --set overrides, the resolved-YAML writer and the docs/config.md reference. The
// three walkers (Reader, Writer, DocWriter) all run over the structs' visit() declarations.
#include "configs/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include "core/check.h"

namespace seqmix::config {

namespace {

// Any struct with a visit() template (the sections); detected by trying a no-op visitor.
struct NoOp {
  template <class F>
  void operator()(const char*, F&, const char*) {}
};
template <class T>
concept Section = requires(T& t, NoOp& v) {
  t.visit(v);
};

std::string join_key(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

std::string type_name(const int64_t*) {
  return "int";
}
std::string type_name(const uint64_t*) {
  return "uint";
}
std::string type_name(const double*) {
  return "float";
}
std::string type_name(const bool*) {
  return "bool";
}
std::string type_name(const std::string*) {
  return "string";
}
std::string type_name(const std::vector<std::string>*) {
  return "list of strings";
}
std::string type_name(const std::map<std::string, MixerConfig>*) {
  return "map of mixer specs";
}

std::string format_double(double x) {
  return fmt::format("{}", x);
}

// ---------------------------------------------------------------- reading
class Reader {
 public:
  Reader(const YAML::Node& node, std::string prefix, RunConfig& cfg)
      : node_(node), prefix_(std::move(prefix)), cfg_(cfg) {}

  std::string where(const YAML::Node& n) const {
    const YAML::Mark m = n.Mark();
    if (m.line < 0 || m.is_null()) return "--set";
    return fmt::format("{}:{}", cfg_.source.empty() ? "<config>" : cfg_.source, m.line + 1);
  }

  [[noreturn]] void fail_at(const YAML::Node& n, const std::string& key,
                            const std::string& msg) const {
    SEQMIX_THROW(Config, "{}: '{}': {}", where(n, key), key, msg);
  }
  // Keys given by --set are located as "--set" (their nodes carry no file position).
  std::string where(const YAML::Node& n, const std::string& path) const {
    const auto it = cfg_.locations.find(path);
    if (it != cfg_.locations.end() && it->second == "--set") return "--set";
    return where(n);
  }

  template <class T>
  void operator()(const char* key, T& field, const char*) {
    seen_.insert(key);
    const YAML::Node child = node_[key];
    if (!child.IsDefined() || child.IsNull()) return;
    const std::string path = join_key(prefix_, key);
    cfg_.locations[path] = where(child, path);
    read(child, path, field);
  }

  // Every key of this map must have been declared.
  void check_unknown() const {
    if (!node_.IsMap()) return;
    std::vector<std::string> known(seen_.begin(), seen_.end());
    for (const auto& kv : node_) {
      const std::string k = kv.first.as<std::string>();
      if (seen_.count(k)) continue;
      const std::string path = join_key(prefix_, k);
      const std::string near = nearest(k, known);
      std::vector<std::string> full;
      for (const auto& kn : known) full.push_back(join_key(prefix_, kn));
      if (!near.empty())
        fail_at(kv.first, path,
                fmt::format("unknown key (did you mean '{}'?)", join_key(prefix_, near)));
      fail_at(kv.first, path,
              fmt::format("unknown key; valid keys here: {}", fmt::join(full, ", ")));
    }
  }

 private:
  template <class T>
  T scalar(const YAML::Node& n, const std::string& path, const char* what) {
    if (!n.IsScalar()) fail_at(n, path, fmt::format("expected {}, got a {}", what, kind(n)));
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      fail_at(n, path, fmt::format("expected {}, got '{}'", what, n.Scalar()));
    }
  }
  static const char* kind(const YAML::Node& n) {
    return n.IsMap() ? "map" : n.IsSequence() ? "list" : n.IsScalar() ? "scalar" : "null";
  }

  void read(const YAML::Node& n, const std::string& p, int64_t& f) {
    f = scalar<int64_t>(n, p, "an integer");
  }
  void read(const YAML::Node& n, const std::string& p, uint64_t& f) {
    if (n.IsScalar() && !n.Scalar().empty() && n.Scalar()[0] == '-')
      fail_at(n, p, fmt::format("expected a non-negative integer, got '{}'", n.Scalar()));
    f = scalar<uint64_t>(n, p, "a non-negative integer");
  }
  void read(const YAML::Node& n, const std::string& p, double& f) {
    f = scalar<double>(n, p, "a number");
  }
  void read(const YAML::Node& n, const std::string& p, bool& f) {
    f = scalar<bool>(n, p, "true or false");
  }
  void read(const YAML::Node& n, const std::string& p, std::string& f) {
    f = scalar<std::string>(n, p, "a string");
  }
  void read(const YAML::Node& n, const std::string& p, std::vector<std::string>& f) {
    if (!n.IsSequence()) fail_at(n, p, fmt::format("expected a list, got a {}", kind(n)));
    f.clear();
    for (const auto& e : n) f.push_back(scalar<std::string>(e, p, "a string"));
  }
  void read(const YAML::Node& n, const std::string& p, std::map<std::string, MixerConfig>& f) {
    if (!n.IsMap())
      fail_at(n, p, fmt::format("expected a map NAME: {{type: ...}}, got a {}", kind(n)));
    // A file's mixers replace the defaults; --set entries merge into what is there.
    for (const auto& kv : n) {
      const std::string name = kv.first.as<std::string>();
      const std::string mp = join_key(p, name);
      const YAML::Node spec = kv.second;
      if (!spec.IsMap())
        fail_at(spec, mp,
                fmt::format("expected a map {{type: ..., options}}, got a {}", kind(spec)));
      MixerConfig& m = f[name];
      m.location = where(spec);
      for (const auto& o : spec) {
        const std::string ok = o.first.as<std::string>();
        const std::string op = join_key(mp, ok);
        if (!o.second.IsScalar())
          fail_at(o.second, op, fmt::format("expected a scalar value, got a {}", kind(o.second)));
        cfg_.locations[op] = where(o.second, op);
        if (ok == "type") {
          m.type = o.second.Scalar();
        } else {
          m.options[ok] = o.second.Scalar();
          m.locations[ok] = cfg_.locations[op];
        }
      }
      if (m.type.empty()) fail_at(spec, mp, "mixer spec needs a 'type' (e.g. type: attention)");
    }
  }
  template <Section S>
  void read(const YAML::Node& n, const std::string& p, S& s) {
    if (!n.IsMap()) fail_at(n, p, fmt::format("expected a map, got a {}", kind(n)));
    Reader r(n, p, cfg_);
    s.visit(r);
    r.check_unknown();
  }

  const YAML::Node& node_;
  std::string prefix_;
  RunConfig& cfg_;
  std::set<std::string> seen_;
};

// ---------------------------------------------------------------- writing
class Writer {
 public:
  explicit Writer(YAML::Emitter& e) : e_(e) {}
  template <class T>
  void operator()(const char* key, const T& field, const char*) {
    e_ << YAML::Key << key << YAML::Value;
    write(field);
  }

 private:
  void write(int64_t x) { e_ << x; }
  void write(uint64_t x) { e_ << x; }
  void write(double x) { e_ << format_double(x); }
  void write(bool x) { e_ << (x ? "true" : "false"); }
  void write(const std::string& s) { e_ << YAML::DoubleQuoted << s; }
  void write(const std::vector<std::string>& v) {
    e_ << YAML::Flow << YAML::BeginSeq;
    for (const auto& s : v) e_ << YAML::DoubleQuoted << s;
    e_ << YAML::EndSeq;
  }
  void write(const std::map<std::string, MixerConfig>& m) {
    e_ << YAML::BeginMap;
    for (const auto& [name, spec] : m) {
      e_ << YAML::Key << name << YAML::Value << YAML::Flow << YAML::BeginMap;
      e_ << YAML::Key << "type" << YAML::Value << spec.type;
      for (const auto& [k, v] : spec.options) e_ << YAML::Key << k << YAML::Value << v;
      e_ << YAML::EndMap;
    }
    e_ << YAML::EndMap;
  }
  template <Section S>
  void write(const S& s) {
    e_ << YAML::BeginMap;
    Writer w(e_);
    const_cast<S&>(s).visit(w);
    e_ << YAML::EndMap;
  }
  YAML::Emitter& e_;
};

// ---------------------------------------------------------------- reference
// A section's own keys form its table; its subsections follow that table (in visit order), so a
// key declared after a subsection is not listed under the subsection's heading.
class DocWriter {
 public:
  DocWriter(std::string prefix, std::vector<std::string>& rows)
      : prefix_(std::move(prefix)), rows_(rows) {}
  template <class T>
  void operator()(const char* key, T& field, const char* doc) {
    const std::string path = join_key(prefix_, key);
    if constexpr (Section<T>) {
      subsections_.push_back(
          fmt::format("\n### `{}`\n\n{}\n\n| key | type | default | meaning |\n"
                      "|---|---|---|---|",
                      path, doc));
      DocWriter d(path, subsections_);
      field.visit(d);
      d.finish();
    } else {
      rows_.push_back(fmt::format("| `{}` | {} | {} | {} |", path, type_name(&field),
                                  default_text(field), doc));
    }
  }
  // Appends the subsections after this section's own rows.
  void finish() { rows_.insert(rows_.end(), subsections_.begin(), subsections_.end()); }

 private:
  static std::string default_text(int64_t x) { return fmt::format("`{}`", x); }
  static std::string default_text(uint64_t x) { return fmt::format("`{}`", x); }
  static std::string default_text(double x) { return fmt::format("`{}`", format_double(x)); }
  static std::string default_text(bool x) { return x ? "`true`" : "`false`"; }
  static std::string default_text(const std::string& s) {
    return s.empty() ? "`\"\"`" : fmt::format("`{}`", s);
  }
  static std::string default_text(const std::vector<std::string>& v) {
    return v.empty() ? "`[]`" : fmt::format("`[{}]`", fmt::join(v, ", "));
  }
  static std::string default_text(const std::map<std::string, MixerConfig>& m) {
    std::vector<std::string> parts;
    for (const auto& [k, v] : m) parts.push_back(fmt::format("{}: {{type: {}}}", k, v.type));
    return fmt::format("`{{{}}}`", fmt::join(parts, ", "));
  }
  std::string prefix_;
  std::vector<std::string>& rows_;
  std::vector<std::string> subsections_;
};

RunConfig defaults() {
  RunConfig c;
  c.model.mixers["A"] = MixerConfig{"attention", {{"n_heads", "4"}}, {}, {}};
  return c;
}

// Applies "a.b.c=value" to the YAML tree (value parsed as YAML, so lists and numbers work).
void apply_override(YAML::Node& root, const std::string& ov, RunConfig& cfg) {
  const auto eq = ov.find('=');
  SEQMIX_CHECK_KIND(Config, eq != std::string::npos && eq > 0,
                    "--set '{}': expected key.path=value", ov);
  const std::string path = ov.substr(0, eq), text = ov.substr(eq + 1);
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) {
    SEQMIX_CHECK_KIND(Config, !part.empty(), "--set '{}': empty key component", ov);
    parts.push_back(part);
  }
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    SEQMIX_THROW(Config, "--set '{}': value is not valid YAML: {}", ov, e.msg);
  }
  if (!value.IsDefined() || value.IsNull()) value = YAML::Node(text);
  YAML::Node cur = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = cur[parts[i]];
    if (!next.IsDefined() || !next.IsMap()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = cur[parts[i]];
    }
    cur.reset(next);
  }
  cur[parts.back()] = YAML::Clone(value);
  cfg.locations[path] = "--set";
}

int edit_distance(const std::string& a, const std::string& b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = int(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = int(i);
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

template <class T>
void check_in(const RunConfig& c, const std::string& key, const T& value,
              std::initializer_list<T> allowed) {
  for (const T& a : allowed)
    if (a == value) return;
  std::vector<std::string> s;
  for (const T& a : allowed) s.push_back(fmt::format("{}", a));
  c.fail(key, fmt::format("must be one of {}, got '{}'", fmt::join(s, ", "), value));
}

}  // namespace

void RunConfig::fail(const std::string& key, const std::string& message) const {
  const auto it = locations.find(key);
  const std::string where =
      it != locations.end() ? it->second : (source.empty() ? "<defaults>" : source);
  SEQMIX_THROW(Config, "{}: '{}': {}", where, key, message);
}

std::string nearest(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  int best_d = 1 << 30;
  for (const auto& c : candidates) {
    const int d = edit_distance(key, c);
    if (d < best_d) best_d = d, best = c;
  }
  // Close in spelling, or one a prefix of the other ("optimizer" -> "optim").
  const int limit = std::max<int>(2, int(key.size()) / 3);
  if (best_d <= limit) return best;
  for (const auto& c : candidates)
    if (c.size() >= 3 && key.size() >= 3 &&
        (key.compare(0, c.size(), c) == 0 || c.compare(0, key.size(), key) == 0))
      return c;
  return std::string();
}

RunConfig parse_config(const std::string& yaml_text, const std::string& source_name,
                       const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    SEQMIX_THROW(Config, "{}:{}: invalid YAML: {}", source_name, e.mark.line + 1, e.msg);
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  SEQMIX_CHECK_KIND(Config, root.IsMap(), "{}: the top level must be a map of sections",
                    source_name);
  RunConfig c = defaults();
  c.source = source_name;
  // A file that names its mixers replaces the default table instead of merging into it;
  // --set entries merge into whatever table results.
  if (root["model"].IsMap() && root["model"]["mixers"].IsDefined()) c.model.mixers.clear();
  for (const auto& ov : overrides) apply_override(root, ov, c);
  Reader r(root, "", c);
  c.visit(r);
  r.check_unknown();
  validate(c);
  return c;
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  SEQMIX_CHECK_KIND(Config, in.good(), "config file '{}' not found or unreadable", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, overrides);
}

std::string to_yaml(const RunConfig& c) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  Writer w(e);
  const_cast<RunConfig&>(c).visit(w);
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

std::vector<std::string> layer_mixers(const RunConfig& c) {
  std::vector<std::string> out;
  const LayersSection& l = c.model.layers;
  if (!l.list.empty()) return l.list;
  for (int64_t r = 0; r < l.repeat; ++r)
    for (char ch : l.pattern) out.emplace_back(1, ch);
  return out;
}

void validate(const RunConfig& c) {
  auto positive = [&](const char* key, auto v) {
    if (!(v > 0)) c.fail(key, fmt::format("must be > 0, got {}", v));
  };
  auto non_negative = [&](const char* key, auto v) {
    if (!(v >= 0)) c.fail(key, fmt::format("must be >= 0, got {}", v));
  };
  non_negative("model.vocab_size", c.model.vocab_size);
  positive("model.d_model", c.model.d_model);
  positive("model.layers.repeat", c.model.layers.repeat);
  non_negative("model.mlp_hidden", c.model.mlp_hidden);
  if (c.model.short_conv != 0 && (c.model.short_conv < 2 || c.model.short_conv > 4))
    c.fail("model.short_conv",
           fmt::format("must be 0 (none) or a width in 2..4, got {}", c.model.short_conv));
  positive("model.norm_eps", c.model.norm_eps);
  if (!(c.model.dropout >= 0 && c.model.dropout < 1))
    c.fail("model.dropout", fmt::format("must be in [0, 1), got {}", c.model.dropout));
  positive("model.init_std", c.model.init_std);
  if (c.model.mixers.empty()) c.fail("model.mixers", "at least one mixer spec is needed");
  const auto layers = layer_mixers(c);
  if (layers.empty())
    c.fail(c.model.layers.list.empty() ? "model.layers.pattern" : "model.layers.list",
           "the model needs at least one layer");
  std::vector<std::string> names;
  for (const auto& [n, m] : c.model.mixers) names.push_back(n);
  for (const auto& l : layers) {
    if (c.model.mixers.count(l)) continue;
    const std::string key =
        c.model.layers.list.empty() ? "model.layers.pattern" : "model.layers.list";
    const std::string near = nearest(l, names);
    c.fail(key, fmt::format("layer mixer '{}' is not a key of model.mixers ({}){}", l,
                            fmt::join(names, ", "),
                            near.empty() ? "" : fmt::format("; did you mean '{}'?", near)));
  }

  check_in<std::string>(
      c, "data.source", c.data.source,
      {"tokens", "mqar", "sqar", "set_disjoint", "passkey", "parity", "modadd", "s5"});
  check_in<std::string>(c, "data.set_disjoint.order", c.data.set_disjoint.order,
                        {"short_first", "long_first"});
  check_in<std::string>(c, "data.s5.group", c.data.s5.group, {"s5", "a5"});
  if (c.data.source == "tokens" && c.data.path.empty())
    c.fail("data.path", "data.source is 'tokens' but no data.path is given");
  positive("data.batch_size", c.data.batch_size);
  positive("data.seq_len", c.data.seq_len);
  positive("data.mqar.vocab_size", c.data.mqar.vocab_size);
  positive("data.mqar.num_kv_pairs", c.data.mqar.num_kv_pairs);
  positive("data.mqar.power_a", c.data.mqar.power_a);
  positive("data.mqar.test_examples", c.data.mqar.test_examples);

  positive("train.steps", c.train.steps);
  non_negative("train.eval_every", c.train.eval_every);
  non_negative("train.eval_batches", c.train.eval_batches);
  positive("train.log_every", c.train.log_every);
  non_negative("train.checkpoint_every", c.train.checkpoint_every);
  positive("train.keep_last", c.train.keep_last);
  check_in<std::string>(c, "train.device", c.train.device, {"auto", "cpu", "cuda"});
  check_in<std::string>(c, "train.precision", c.train.precision, {"bf16", "fp32"});
  positive("train.grad_accum", c.train.grad_accum);
  non_negative("train.grad_clip", c.train.grad_clip);
  check_in<std::string>(c, "train.nan_policy", c.train.nan_policy, {"skip", "stop"});
  non_negative("train.peak_tflops", c.train.peak_tflops);
  non_negative("train.bucket_mib", c.train.bucket_mib);
  if (!(c.train.stop_at_accuracy >= 0 && c.train.stop_at_accuracy <= 1))
    c.fail("train.stop_at_accuracy",
           fmt::format("must be in [0, 1], got {}", c.train.stop_at_accuracy));

  positive("optim.lr", c.optim.lr);
  if (!(c.optim.beta1 >= 0 && c.optim.beta1 < 1))
    c.fail("optim.beta1", fmt::format("must be in [0, 1), got {}", c.optim.beta1));
  if (!(c.optim.beta2 >= 0 && c.optim.beta2 < 1))
    c.fail("optim.beta2", fmt::format("must be in [0, 1), got {}", c.optim.beta2));
  positive("optim.eps", c.optim.eps);
  non_negative("optim.weight_decay", c.optim.weight_decay);
  check_in<std::string>(c, "optim.schedule", c.optim.schedule,
                        {"cosine", "linear", "wsd", "constant"});
  non_negative("optim.warmup_steps", c.optim.warmup_steps);
  non_negative("optim.min_lr", c.optim.min_lr);
  if (c.optim.min_lr > c.optim.lr)
    c.fail("optim.min_lr",
           fmt::format("must not exceed optim.lr ({}), got {}", c.optim.lr, c.optim.min_lr));
  if (!(c.optim.decay_fraction > 0 && c.optim.decay_fraction <= 1))
    c.fail("optim.decay_fraction",
           fmt::format("must be in (0, 1], got {}", c.optim.decay_fraction));
}

std::string reference_markdown() {
  std::vector<std::string> rows;
  RunConfig c = defaults();
  DocWriter d("", rows);
  c.visit(d);
  d.finish();
  return fmt::format("{}\n", fmt::join(rows, "\n"));
}

}  // namespace seqmix::config
