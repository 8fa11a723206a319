// Sweep spec parsing, grid expansion (cells, stable ids, `--set` overrides), filters, per-cell
// results (metrics.jsonl, result.json) and the CSV / Markdown reports. The SVG plot is in
// sweep_svg.cpp, the runner in sweep_runner.cpp.
#include "train/sweep/sweep.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "configs/config.h"
#include "core/check.h"
#include "train/sweep/sweep_internal.h"

namespace fs = std::filesystem;

namespace seqmix::sweep {

namespace {

const std::set<std::string> kTopKeys{"base",   "name",    "set",       "grid", "mixers",
                                     "metric", "stop_at", "best_over", "plot"};

std::string where(const std::string& src, const YAML::Node& n) {
  return n.Mark().is_null() ? src : fmt::format("{}:{}", src, n.Mark().line + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::stringstream ss(s);
  while (std::getline(ss, cur, sep)) {
    // trim spaces
    const auto a = cur.find_first_not_of(" \t"), b = cur.find_last_not_of(" \t");
    out.push_back(a == std::string::npos ? std::string() : cur.substr(a, b - a + 1));
  }
  return out;
}

std::string scalar_of(const YAML::Node& n, const std::string& src, const std::string& key) {
  SEQMIX_CHECK_KIND(Config, n.IsScalar(), "{}: '{}': expected a scalar", where(src, n), key);
  return n.Scalar();
}

std::vector<std::string> string_list(const YAML::Node& n, const std::string& src,
                                     const std::string& key) {
  std::vector<std::string> out;
  if (n.IsScalar()) return {n.Scalar()};
  SEQMIX_CHECK_KIND(Config, n.IsSequence(), "{}: '{}': expected a list of strings", where(src, n),
                    key);
  for (const auto& e : n) out.push_back(scalar_of(e, src, key));
  return out;
}

uint32_t fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

std::string sanitize(const std::string& s) {
  std::string o;
  for (char c : s)
    o +=
        (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '+' || c == '-') ? c : '_';
  return o;
}

std::optional<double> to_number(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0') return std::nullopt;
  return v;
}

bool values_equal(const std::string& a, const std::string& b) {
  if (a == b) return true;
  const auto x = to_number(a), y = to_number(b);
  return x && y && *x == *y;
}

// Replaces `${KEY}`, `${KEY/N}` and `${KEY*N}` in the scalars of `n` with the cell's value of
// grid key KEY (integer arithmetic; a non-exact division is an error).
void substitute(YAML::Node n, const std::vector<std::pair<std::string, std::string>>& kv,
                const std::string& mixer) {
  if (n.IsMap()) {
    for (auto it = n.begin(); it != n.end(); ++it) substitute(it->second, kv, mixer);
    return;
  }
  if (n.IsSequence()) {
    for (auto e : n) substitute(e, kv, mixer);
    return;
  }
  if (!n.IsScalar()) return;
  const std::string s = n.Scalar();
  if (s.size() < 4 || s.compare(0, 2, "${") != 0 || s.back() != '}') return;
  std::string expr = s.substr(2, s.size() - 3);
  char op = 0;
  int64_t operand = 1;
  const auto pos = expr.find_first_of("/*");
  if (pos != std::string::npos) {
    op = expr[pos];
    const auto num = to_number(expr.substr(pos + 1));
    SEQMIX_CHECK_KIND(Config, num && *num == std::floor(*num) && *num > 0,
                      "mixers.{}: '{}': expected ${{KEY}}, ${{KEY/N}} or ${{KEY*N}} with an "
                      "integer N > 0",
                      mixer, s);
    operand = int64_t(*num);
    expr = expr.substr(0, pos);
  }
  const std::string key = split(expr, ',').front();
  const auto it = std::find_if(kv.begin(), kv.end(), [&](const auto& p) { return p.first == key; });
  SEQMIX_CHECK_KIND(Config, it != kv.end(), "mixers.{}: '{}': '{}' is not a grid key", mixer, s,
                    key);
  if (op == 0) {
    n = it->second;
    return;
  }
  const auto v = to_number(it->second);
  SEQMIX_CHECK_KIND(Config, v && *v == std::floor(*v),
                    "mixers.{}: '{}': '{}' = {} is not an integer", mixer, s, key, it->second);
  const int64_t x = int64_t(*v);
  if (op == '/') {
    SEQMIX_CHECK_KIND(Config, x % operand == 0, "mixers.{}: '{}': {} = {} is not divisible by {}",
                      mixer, s, key, x, operand);
    n = fmt::format("{}", x / operand);
  } else {
    n = fmt::format("{}", x * operand);
  }
}

}  // namespace

const SweepAxis* SweepSpec::axis(const std::string& name) const {
  for (const auto& a : grid)
    if (a.name == name) return &a;
  return nullptr;
}

SweepSpec parse_sweep(const std::string& yaml_text, const std::string& src,
                      const std::string& dir) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    SEQMIX_THROW(Config, "{}:{}: invalid YAML: {}", src, e.mark.line + 1, e.msg);
  }
  SEQMIX_CHECK_KIND(Config, root.IsMap(), "{}: a sweep file is a map (base, name, grid, ...)", src);
  SweepSpec s;
  s.file = src;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string k = it->first.Scalar();
    if (!kTopKeys.count(k)) {
      const std::string near =
          config::nearest(k, std::vector<std::string>(kTopKeys.begin(), kTopKeys.end()));
      SEQMIX_THROW(Config, "{}: '{}': unknown sweep key{}", where(src, it->first), k,
                   near.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", near));
    }
  }
  SEQMIX_CHECK_KIND(Config, root["base"].IsDefined(), "{}: 'base': required (the run config)", src);
  const std::string base = scalar_of(root["base"], src, "base");
  {
    const fs::path b(base);
    if (b.is_absolute()) {
      s.base = base;
    } else if (!dir.empty() && fs::exists(fs::path(dir) / b)) {
      s.base = (fs::path(dir) / b).lexically_normal().string();
    } else {
      s.base = base;
    }
    SEQMIX_CHECK_KIND(Config, fs::exists(s.base),
                      "{}: 'base': '{}' not found (looked next to the sweep file{} and in the "
                      "working directory)",
                      where(src, root["base"]), base,
                      dir.empty() ? std::string() : fmt::format(" in '{}'", dir));
  }
  s.name = root["name"].IsDefined() ? scalar_of(root["name"], src, "name")
                                    : fs::path(src).stem().string();
  SEQMIX_CHECK_KIND(Config, !s.name.empty() && s.name.find('/') == std::string::npos,
                    "{}: 'name': must be a non-empty name without '/'", src);
  if (root["set"].IsDefined()) {
    s.set = string_list(root["set"], src, "set");
    for (const auto& o : s.set)
      SEQMIX_CHECK_KIND(Config, o.find('=') != std::string::npos && o.front() != '=',
                        "{}: 'set': '{}': expected key.path=value", where(src, root["set"]), o);
  }
  if (root["metric"].IsDefined()) s.metric = scalar_of(root["metric"], src, "metric");
  if (root["stop_at"].IsDefined()) {
    const auto v = to_number(scalar_of(root["stop_at"], src, "stop_at"));
    SEQMIX_CHECK_KIND(Config, v && *v >= 0, "{}: 'stop_at': expected a number >= 0",
                      where(src, root["stop_at"]));
    s.stop_at = *v;
  }
  if (root["mixers"].IsDefined()) {
    SEQMIX_CHECK_KIND(Config, root["mixers"].IsMap(),
                      "{}: 'mixers': expected a map NAME: {{type: ..., options}}",
                      where(src, root["mixers"]));
    for (auto it = root["mixers"].begin(); it != root["mixers"].end(); ++it) {
      const std::string name = it->first.Scalar();
      SEQMIX_CHECK_KIND(Config, it->second.IsMap() && it->second["type"].IsDefined(),
                        "{}: 'mixers.{}': expected {{type: ..., options}}", where(src, it->second),
                        name);
      YAML::Emitter e;
      e << YAML::Flow << it->second;
      s.mixers[name] = e.c_str();
    }
  }
  const YAML::Node grid = root["grid"];
  SEQMIX_CHECK_KIND(Config, grid.IsMap() && grid.size() > 0,
                    "{}: 'grid': required, a map of key -> list of values", src);
  std::set<std::string> seen_keys;
  for (auto it = grid.begin(); it != grid.end(); ++it) {
    SweepAxis a;
    a.name = it->first.Scalar();
    a.keys = split(a.name, ',');
    const std::string at = where(src, it->first);
    for (const auto& k : a.keys) {
      SEQMIX_CHECK_KIND(Config, !k.empty(), "{}: 'grid.{}': empty key", at, a.name);
      SEQMIX_CHECK_KIND(Config, seen_keys.insert(k).second, "{}: 'grid': key '{}' appears twice",
                        at, k);
      SEQMIX_CHECK_KIND(Config, k != "mixer" || a.keys.size() == 1,
                        "{}: 'grid.{}': the mixer axis cannot be zipped", at, a.name);
    }
    SEQMIX_CHECK_KIND(Config, it->second.IsSequence() && it->second.size() > 0,
                      "{}: 'grid.{}': expected a non-empty list of values", at, a.name);
    for (const auto& v : it->second) {
      std::vector<std::string> point;
      if (a.keys.size() == 1) {
        SEQMIX_CHECK_KIND(Config, v.IsScalar(), "{}: 'grid.{}': values must be scalars",
                          where(src, v), a.name);
        point.push_back(v.Scalar());
      } else {
        SEQMIX_CHECK_KIND(Config, v.IsSequence() && v.size() == a.keys.size(),
                          "{}: 'grid.{}': each value must be a list of {} scalars (one per "
                          "zipped key)",
                          where(src, v), a.name, a.keys.size());
        for (const auto& e : v) point.push_back(scalar_of(e, src, "grid." + a.name));
      }
      for (const auto& old : a.values)
        SEQMIX_CHECK_KIND(Config, old != point, "{}: 'grid.{}': value listed twice", where(src, v),
                          a.name);
      a.values.push_back(point);
    }
    if (a.name == "mixer" && !s.mixers.empty())
      for (const auto& p : a.values)
        SEQMIX_CHECK_KIND(Config, s.mixers.count(p[0]),
                          "{}: 'grid.mixer': '{}' is not one of the specs under 'mixers'", at,
                          p[0]);
    s.grid.push_back(std::move(a));
  }
  auto check_axis = [&](const std::string& name, const std::string& key) {
    SEQMIX_CHECK_KIND(Config, s.axis(name) != nullptr, "{}: '{}': '{}' is not a grid axis", src,
                      key, name);
  };
  if (root["best_over"].IsDefined()) {
    s.best_over = string_list(root["best_over"], src, "best_over");
    for (const auto& b : s.best_over) check_axis(b, "best_over");
  }
  if (root["plot"].IsDefined()) {
    const YAML::Node p = root["plot"];
    SEQMIX_CHECK_KIND(Config, p.IsMap(), "{}: 'plot': expected {{x, line, panel}}", src);
    for (auto it = p.begin(); it != p.end(); ++it) {
      const std::string k = it->first.Scalar();
      SEQMIX_CHECK_KIND(Config, k == "x" || k == "line" || k == "panel",
                        "{}: 'plot.{}': unknown key (x, line or panel)", where(src, it->first), k);
    }
    if (p["x"].IsDefined()) s.plot.x = scalar_of(p["x"], src, "plot.x");
    if (p["line"].IsDefined()) s.plot.line = scalar_of(p["line"], src, "plot.line");
    if (p["panel"].IsDefined()) s.plot.panel = scalar_of(p["panel"], src, "plot.panel");
  }
  if (s.plot.x.empty()) s.plot.x = s.grid.front().name;
  if (s.plot.line.empty() && s.axis("mixer") && s.plot.x != "mixer") s.plot.line = "mixer";
  check_axis(s.plot.x, "plot.x");
  if (!s.plot.line.empty()) check_axis(s.plot.line, "plot.line");
  if (!s.plot.panel.empty()) check_axis(s.plot.panel, "plot.panel");
  return s;
}

SweepSpec load_sweep(const std::string& path) {
  std::ifstream in(path);
  SEQMIX_CHECK_KIND(Config, in.good(), "sweep file '{}' not found or unreadable", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_sweep(ss.str(), path, fs::path(path).parent_path().string());
}

int64_t base_layer_count(const SweepSpec& spec) {
  return int64_t(config::layer_mixers(config::load_config(spec.base, spec.set)).size());
}

std::vector<SweepCell> expand_grid(const SweepSpec& spec, int64_t layers) {
  SEQMIX_CHECK(layers > 0, "expand_grid: layers must be positive, got {}", layers);
  std::vector<SweepCell> cells;
  std::vector<size_t> idx(spec.grid.size(), 0);
  for (;;) {
    SweepCell c;
    for (size_t a = 0; a < spec.grid.size(); ++a) {
      const SweepAxis& ax = spec.grid[a];
      const auto& point = ax.values[idx[a]];
      std::string shown;
      for (size_t k = 0; k < ax.keys.size(); ++k) {
        c.key_values.emplace_back(ax.keys[k], point[k]);
        shown += (k ? "," : "") + point[k];
      }
      c.axis_values[ax.name] = shown;
    }
    // Stable id: readable part + hash of every (key, value) pair (order-independent of the
    // position in the grid, so adding values to an axis keeps the other cells' ids).
    std::string readable, full;
    for (const auto& [k, v] : c.key_values) {
      const auto dot = k.rfind('.');
      const std::string shortk = dot == std::string::npos ? k : k.substr(dot + 1);
      if (readable.size() < 96) readable += (readable.empty() ? "" : "_") + shortk + "-" + v;
      full += k + "=" + v + ";";
    }
    c.id = fmt::format("{}_{:08x}", sanitize(readable), fnv1a(full));
    c.overrides = spec.set;
    for (const auto& [k, v] : c.key_values) {
      if (k != "mixer") {
        c.overrides.push_back(k + "=" + v);
        continue;
      }
      YAML::Node m;
      const auto it = spec.mixers.find(v);
      if (it != spec.mixers.end()) {
        m = YAML::Load(it->second);
      } else {
        m["type"] = v;
      }
      substitute(m, c.key_values, v);
      YAML::Emitter e;
      e << YAML::Flow << YAML::BeginMap << YAML::Key << v << YAML::Value << m << YAML::EndMap;
      c.overrides.push_back(std::string("model.mixers=") + e.c_str());
      std::string list = "[";
      for (int64_t l = 0; l < layers; ++l) list += (l ? ", " : "") + v;
      c.overrides.push_back("model.layers.list=" + list + "]");
    }
    if (spec.stop_at > 0)
      c.overrides.push_back(fmt::format("train.stop_at_accuracy={}", spec.stop_at));
    cells.push_back(std::move(c));
    // Odometer: the last axis moves fastest.
    size_t a = spec.grid.size();
    while (a > 0) {
      --a;
      if (++idx[a] < spec.grid[a].values.size()) break;
      idx[a] = 0;
      if (a == 0) return cells;
    }
    if (spec.grid.empty()) return cells;
  }
}

bool cell_matches(const SweepCell& cell, const std::vector<std::string>& filters) {
  std::map<std::string, std::vector<std::string>> want;
  for (const auto& f : filters) {
    const auto eq = f.find('=');
    SEQMIX_CHECK_KIND(Usage, eq != std::string::npos && eq > 0, "--filter '{}': expected KEY=VALUE",
                      f);
    want[f.substr(0, eq)].push_back(f.substr(eq + 1));
  }
  for (const auto& [key, values] : want) {
    std::optional<std::string> have;
    if (auto it = cell.axis_values.find(key); it != cell.axis_values.end()) have = it->second;
    for (const auto& [k, v] : cell.key_values)
      if (!have && k == key) have = v;
    SEQMIX_CHECK_KIND(Usage, have.has_value(), "--filter '{}': '{}' is not a grid key", key, key);
    bool ok = false;
    for (const auto& v : values) {
      if (key.find(',') != std::string::npos) {
        const auto a = split(*have, ','), b = split(v, ',');
        ok =
            ok || (a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), values_equal));
      } else {
        ok = ok || values_equal(*have, v);
      }
    }
    if (!ok) return false;
  }
  return true;
}

// ------------------------------------------------------------------ results
static std::optional<std::string> json_field(const std::string& line, const std::string& key) {
  const std::string pat = "\"" + key + "\"";
  size_t p = line.find(pat);
  while (p != std::string::npos) {
    size_t q = p + pat.size();
    while (q < line.size() && line[q] == ' ') ++q;
    if (q < line.size() && line[q] == ':') {
      ++q;
      while (q < line.size() && line[q] == ' ') ++q;
      if (q < line.size() && line[q] == '"') {
        std::string out;
        for (++q; q < line.size() && line[q] != '"'; ++q) {
          if (line[q] == '\\' && q + 1 < line.size()) ++q;
          out += line[q];
        }
        return out;
      }
      size_t e = q;
      while (e < line.size() && line[e] != ',' && line[e] != '}') ++e;
      std::string v = line.substr(q, e - q);
      while (!v.empty() && v.back() == ' ') v.pop_back();
      if (v == "null" || v.empty()) return std::nullopt;
      return v;
    }
    p = line.find(pat, p + 1);
  }
  return std::nullopt;
}

CellResult read_metrics(const std::string& metrics_path, const std::string& metric) {
  CellResult r;
  std::ifstream in(metrics_path);
  for (std::string line; std::getline(in, line);) {
    if (const auto st = json_field(line, "step"))
      if (const auto v = to_number(*st)) r.steps = std::max(r.steps, int64_t(*v));
    if (json_field(line, "split") != std::optional<std::string>("val")) continue;
    const auto m = json_field(line, metric);
    const auto v = m ? to_number(*m) : std::nullopt;
    if (!v) continue;
    r.final_metric = *v;
    r.best_metric = r.best_metric ? std::max(*r.best_metric, *v) : *v;
  }
  return r;
}

static std::string json_escape(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}

static std::string opt_num(const std::optional<double>& v) {
  return v ? fmt::format("{}", *v) : std::string("null");
}

void write_result_json(const std::string& path, const SweepCell& cell, const CellResult& r) {
  std::string ovs;
  for (size_t i = 0; i < cell.overrides.size(); ++i)
    ovs += (i ? ", " : "") + json_escape(cell.overrides[i]);
  const std::string text = fmt::format(
      "{{\"id\": {}, \"status\": {}, \"exit_code\": {}, \"wall_s\": {}, \"steps\": {}, "
      "\"final\": {}, \"best\": {}, \"overrides\": [{}]}}\n",
      json_escape(cell.id), json_escape(r.status), r.exit_code, r.wall_s, r.steps,
      opt_num(r.final_metric), opt_num(r.best_metric), ovs);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    SEQMIX_CHECK_KIND(Internal, out.good(), "cannot write '{}'", tmp);
  }
  fs::rename(tmp, path);
}

std::optional<CellResult> read_result_json(const std::string& path) {
  std::ifstream in(path);
  if (!in.good()) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string t = ss.str();
  CellResult r;
  const auto status = json_field(t, "status");
  if (!status) return std::nullopt;
  r.status = *status;
  auto num = [&](const char* k) {
    return json_field(t, k) ? to_number(*json_field(t, k)) : std::nullopt;
  };
  r.exit_code = int(num("exit_code").value_or(0));
  r.wall_s = num("wall_s").value_or(0);
  r.steps = int64_t(num("steps").value_or(0));
  r.final_metric = num("final");
  r.best_metric = num("best");
  return r;
}

// ------------------------------------------------------------------ reports
static std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

std::string results_csv(const SweepSpec& spec, const std::vector<SweepCell>& cells,
                        const std::vector<CellResult>& results) {
  SEQMIX_CHECK(cells.size() == results.size(), "results_csv: {} cells but {} results", cells.size(),
               results.size());
  std::string out = "cell";
  for (const auto& a : spec.grid)
    for (const auto& k : a.keys) out += "," + csv_field(k);
  out += fmt::format(",{},best_{},steps,wall_s,status,exit_code\n", csv_field(spec.metric),
                     csv_field(spec.metric));
  for (size_t i = 0; i < cells.size(); ++i) {
    const CellResult& r = results[i];
    out += csv_field(cells[i].id);
    for (const auto& kv : cells[i].key_values) out += "," + csv_field(kv.second);
    out += fmt::format(",{},{},{},{:.3f},{},{}\n",
                       r.final_metric ? fmt::format("{}", *r.final_metric) : "",
                       r.best_metric ? fmt::format("{}", *r.best_metric) : "", r.steps, r.wall_s,
                       r.status, r.exit_code);
  }
  return out;
}

namespace detail {

// Axes that name a row/line of the report besides panel and line: everything that is neither
// x, nor line, nor panel, nor maximised over.
std::vector<std::string> other_axes(const SweepSpec& spec) {
  std::vector<std::string> o;
  for (const auto& a : spec.grid) {
    const std::string& n = a.name;
    if (n == spec.plot.x || n == spec.plot.line || n == spec.plot.panel) continue;
    if (std::find(spec.best_over.begin(), spec.best_over.end(), n) != spec.best_over.end())
      continue;
    o.push_back(n);
  }
  return o;
}

Table build_table(const SweepSpec& spec, const std::vector<SweepCell>& cells,
                  const std::vector<CellResult>& results) {
  SEQMIX_CHECK(cells.size() == results.size(), "sweep report: {} cells but {} results",
               cells.size(), results.size());
  Table t;
  t.others = other_axes(spec);
  auto index_of = [](std::vector<std::string>& v, const std::string& s) {
    auto it = std::find(v.begin(), v.end(), s);
    if (it != v.end()) return size_t(it - v.begin());
    v.push_back(s);
    return v.size() - 1;
  };
  for (const auto& p : spec.axis(spec.plot.x)->values) {
    std::string shown;
    for (size_t k = 0; k < p.size(); ++k) shown += (k ? "," : "") + p[k];
    t.xs.push_back(shown);
  }
  for (size_t i = 0; i < cells.size(); ++i) {
    const SweepCell& c = cells[i];
    const std::string panel = spec.plot.panel.empty() ? "" : c.axis_values.at(spec.plot.panel);
    std::string line = spec.plot.line.empty() ? "" : c.axis_values.at(spec.plot.line);
    for (const auto& o : t.others)
      line += (line.empty() ? "" : ", ") + fmt::format("{}={}", o, c.axis_values.at(o));
    const size_t pi = index_of(t.panels, panel);
    const size_t li = index_of(t.lines, line);
    const size_t xi = index_of(t.xs, c.axis_values.at(spec.plot.x));
    Table::Entry& e = t.entries[{pi, li, xi}];
    const CellResult& r = results[i];
    if (r.status == "failed") ++e.failed;
    if (r.status == "pending") ++e.pending;
    if (r.best_metric) e.value = e.value ? std::max(*e.value, *r.best_metric) : *r.best_metric;
  }
  return t;
}

}  // namespace detail

std::string results_markdown(const SweepSpec& spec, const std::vector<SweepCell>& cells,
                             const std::vector<CellResult>& results) {
  const detail::Table t = detail::build_table(spec, cells, results);
  std::string out = fmt::format("# Sweep `{}`\n\n", spec.name);
  out += fmt::format(
      "Base config `{}`. Each value is the best `{}` over the run's evaluations{}. {} cells: ",
      spec.base, spec.metric,
      spec.best_over.empty()
          ? std::string()
          : fmt::format(", maximised over `{}`", fmt::join(spec.best_over, "`, `")),
      cells.size());
  int ok = 0, failed = 0, pending = 0;
  for (const auto& r : results) (r.status == "ok" ? ok : r.status == "failed" ? failed : pending)++;
  out += fmt::format("{} ok, {} failed, {} pending.\n\n", ok, failed, pending);
  // Header: panel, line (+ other axes folded into the line label), then x values.
  std::string head = "|", rule = "|";
  if (!spec.plot.panel.empty()) head += fmt::format(" {} |", spec.plot.panel), rule += "---|";
  std::string line_name = spec.plot.line;
  for (const auto& o : t.others) line_name += (line_name.empty() ? "" : ", ") + o;
  if (!line_name.empty()) head += fmt::format(" {} |", line_name), rule += "---|";
  for (const auto& x : t.xs) head += fmt::format(" {}={} |", spec.plot.x, x), rule += "---:|";
  out += head + "\n" + rule + "\n";
  bool marked = false;
  for (size_t p = 0; p < t.panels.size(); ++p)
    for (size_t l = 0; l < t.lines.size(); ++l) {
      bool any = false;
      std::string row = "|";
      if (!spec.plot.panel.empty()) row += fmt::format(" {} |", t.panels[p]);
      if (!line_name.empty()) row += fmt::format(" {} |", t.lines[l]);
      for (size_t x = 0; x < t.xs.size(); ++x) {
        const auto it = t.entries.find({p, l, x});
        std::string v = " |";
        if (it != t.entries.end()) {
          any = true;
          const auto& e = it->second;
          // A value with unfinished cells behind it (failed or pending) is the best so far: '*'.
          const bool partial = e.failed || e.pending;
          marked |= e.value && partial;
          v = e.value    ? fmt::format(" {:.3f}{} |", *e.value, partial ? "*" : "")
              : e.failed ? std::string(" failed |")
                         : std::string(" – |");
        }
        row += v;
      }
      if (any) out += row + "\n";
    }
  if (marked)
    out +=
        "\n\\* Not every cell behind this value has finished (failed or pending): the best "
        "value so far, including the evaluations of interrupted runs.\n";
  // Wall time per mixer (or per line value when there is no mixer axis).
  const std::string by = spec.axis("mixer") ? "mixer" : spec.plot.line;
  std::vector<std::string> groups;
  std::map<std::string, std::pair<int, double>> wall;
  for (size_t i = 0; i < cells.size(); ++i) {
    const std::string g = by.empty() ? std::string("all") : cells[i].axis_values.at(by);
    if (!wall.count(g)) groups.push_back(g);
    auto& w = wall[g];
    if (results[i].status != "pending") w.first += 1, w.second += results[i].wall_s;
  }
  out += fmt::format(
      "\n## Wall time per {}\n\n| {} | cells run | total (s) | mean per cell (s) |\n"
      "|---|---:|---:|---:|\n",
      by.empty() ? "sweep" : by, by.empty() ? "cells" : by);
  for (const auto& g : groups) {
    const auto& w = wall[g];
    out += fmt::format("| {} | {} | {:.1f} | {} |\n", g, w.first, w.second,
                       w.first ? fmt::format("{:.1f}", w.second / w.first) : "–");
  }
  return out;
}

}  // namespace seqmix::sweep
