// `seqmix sweep`: spec parsing and its errors, grid expansion (zipped keys, the mixer axis with
// ${KEY/N} substitution, stable cell ids), filters, metrics.jsonl / result.json reading, the CSV
// and Markdown reports of a synthetic result set, the SVG plot (well-formed, one panel per panel
// value, one polyline per line, legend, values mapped onto the tick coordinates), the shipped
// sweeps, and end to end through the executable on the CPU (2x2 cells of a tiny MQAR run, results
// files, skip on rerun, a failing cell recorded with its exit code).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "configs/config.h"
#include "core/error.h"
#include "tests/testing/testing.h"
#include "train/sweep/sweep.h"

namespace fs = std::filesystem;
using namespace seqmix::sweep;

namespace {

class Sweep : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("seqmix_test_sweep_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    rng_.seed(seqmix::tu::next_seed());
  }
  void TearDown() override {
    std::error_code ec;
    if (!HasFailure()) fs::remove_all(dir_, ec);
  }
  std::string p(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(dir_ / name) << text;
    return p(name);
  }
  std::string read(const std::string& path) const {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // A tiny MQAR base run: 2 attention layers, d_model 16, CPU.
  std::string tiny_base() const {
    return write("base.yaml", R"(run: {name: tiny, seed: 7}
model:
  d_model: 16
  layers: {pattern: "A", repeat: 2}
  mixers: {A: {type: attention, n_heads: 1}}
  mlp: false
data:
  source: mqar
  batch_size: 8
  seq_len: 16
  mqar: {vocab_size: 32, num_kv_pairs: 2, test_examples: 32}
train: {steps: 6, log_every: 3, eval_every: 3, eval_batches: 0, device: cpu, precision: fp32}
optim: {lr: 3e-3, warmup_steps: 0}
)");
  }
  SweepSpec parse(const std::string& text) const { return parse_sweep(text, "test.yaml", dir_); }
  fs::path dir_;
  std::mt19937_64 rng_;
};

std::string opt(const SweepCell& c, const std::string& key) {
  for (const auto& o : c.overrides)
    if (o.rfind(key + "=", 0) == 0) return o.substr(key.size() + 1);
  return "<absent>";
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

std::vector<std::string> csv_split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  for (std::string f; std::getline(ss, f, ',');) out.push_back(f);
  if (!line.empty() && line.back() == ',') out.push_back("");
  return out;
}

}  // namespace

TEST_F(Sweep, ExpandsZippedKeysAndMixerAxisWithStableIds) {
  tiny_base();
  std::uniform_int_distribution<int> pick(1, 9);
  const std::string lr1 = std::to_string(pick(rng_)) + "e-3",
                    lr2 = std::to_string(pick(rng_)) + "e-2";
  const std::string text = R"(base: base.yaml
name: t
set: ["train.steps=5"]
grid:
  "data.seq_len,data.mqar.num_kv_pairs": [[16, 2], [32, 4], [64, 8]]
  mixer: [att, gla]
  model.d_model: [64, 128]
  optim.lr: [)" + lr1 + ", " +
                           lr2 + R"(]
mixers:
  att: {type: attention, n_heads: "${model.d_model/64}", head_dim: 64}
  gla: {type: gla, n_heads: 1}
stop_at: 0.9
best_over: [optim.lr]
plot: {x: model.d_model, line: mixer, panel: "data.seq_len,data.mqar.num_kv_pairs"}
)";
  const SweepSpec s = parse(text);
  EXPECT_EQ(s.base, (dir_ / "base.yaml").lexically_normal().string());
  ASSERT_EQ(s.grid.size(), 4u);
  EXPECT_EQ(s.grid[0].keys, (std::vector<std::string>{"data.seq_len", "data.mqar.num_kv_pairs"}));
  const auto cells = expand_grid(s, 3);
  ASSERT_EQ(cells.size(), 3u * 2 * 2 * 2);
  std::set<std::string> ids;
  for (size_t i = 0; i < cells.size(); ++i) {
    const SweepCell& c = cells[i];
    ids.insert(c.id);
    // Last axis fastest: index i = ((tk * 2 + m) * 2 + d) * 2 + l.
    const size_t tk = i / 8, m = (i / 4) % 2, d = (i / 2) % 2, l = i % 2;
    const std::string T = std::to_string(16 << tk), kv = std::to_string(2 << tk);
    const std::string dm = d ? "128" : "64", mixer = m ? "gla" : "att";
    EXPECT_EQ(opt(c, "data.seq_len"), T);
    EXPECT_EQ(opt(c, "data.mqar.num_kv_pairs"), kv);  // zipped: moves with seq_len
    EXPECT_EQ(c.axis_values.at("data.seq_len,data.mqar.num_kv_pairs"), T + "," + kv);
    EXPECT_EQ(opt(c, "model.d_model"), dm);
    EXPECT_EQ(opt(c, "optim.lr"), l ? lr2 : lr1);
    EXPECT_EQ(opt(c, "train.steps"), "5");
    EXPECT_EQ(opt(c, "train.stop_at_accuracy"), "0.9");
    EXPECT_EQ(opt(c, "model.layers.list"), "[" + mixer + ", " + mixer + ", " + mixer + "]");
    const std::string heads = d ? "2" : "1";
    EXPECT_EQ(opt(c, "model.mixers"),
              m ? std::string("{gla: {type: gla, n_heads: 1}}")
                : "{att: {type: attention, n_heads: " + heads + ", head_dim: 64}}");
    EXPECT_EQ(c.axis_values.at("mixer"), mixer);
    EXPECT_NE(c.id.find("mixer-" + mixer), std::string::npos) << c.id;
    EXPECT_NE(c.id.find("d_model-" + dm), std::string::npos) << c.id;
    EXPECT_EQ(c.id.find('/'), std::string::npos);
  }
  EXPECT_EQ(ids.size(), cells.size());
  // Stable: the same spec gives the same ids; adding a value to an axis keeps the others' ids.
  EXPECT_EQ(expand_grid(parse(text), 3)[5].id, cells[5].id);
  std::string more = text;
  more.replace(more.find("[64, 128]"), 9, "[64, 128, 256]");
  const auto cells2 = expand_grid(parse(more), 3);
  ASSERT_EQ(cells2.size(), 36u);
  std::set<std::string> ids2;
  for (const auto& c : cells2) ids2.insert(c.id);
  for (const auto& id : ids) EXPECT_TRUE(ids2.count(id)) << id;
  // The overrides are valid `seqmix train --set` overrides of the base config.
  const auto cfg = seqmix::config::load_config(s.base, cells[13].overrides);
  EXPECT_EQ(seqmix::config::layer_mixers(cfg), (std::vector<std::string>{"gla", "gla", "gla"}));
  EXPECT_EQ(cfg.model.mixers.at("gla").type, "gla");
  EXPECT_EQ(base_layer_count(s), 2);
}

TEST_F(Sweep, MixerAxisWithoutSpecsUsesTheType) {
  tiny_base();
  const auto cells =
      expand_grid(parse("base: base.yaml\ngrid: {mixer: [gla, hgrn2], optim.lr: [1e-3]}\n"), 2);
  ASSERT_EQ(cells.size(), 2u);
  EXPECT_EQ(opt(cells[1], "model.mixers"), "{hgrn2: {type: hgrn2}}");
  EXPECT_EQ(opt(cells[1], "model.layers.list"), "[hgrn2, hgrn2]");
  EXPECT_EQ(opt(cells[1], "train.stop_at_accuracy"), "<absent>");
}

TEST_F(Sweep, SpecErrorsNameTheKey) {
  tiny_base();
  auto fails = [&](const std::string& text, const std::string& needle) {
    try {
      expand_grid(parse(text), 2);
      ADD_FAILURE() << "no error for:\n" << text;
    } catch (const seqmix::Error& e) {
      EXPECT_EQ(e.kind(), seqmix::ErrorKind::Config) << e.message();
      EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
    }
  };
  fails("base: base.yaml\ngrid: {optim.lr: [1]}\nmetrc: accuracy\n", "did you mean 'metric'");
  fails("base: nowhere.yaml\ngrid: {optim.lr: [1]}\n", "nowhere.yaml");
  fails("grid: {optim.lr: [1]}\n", "'base'");
  fails("base: base.yaml\n", "'grid'");
  fails("base: base.yaml\ngrid: {\"a.b,c.d\": [[1, 2], [3]]}\n", "2 scalars");
  fails("base: base.yaml\ngrid: {optim.lr: [[1, 2]]}\n", "scalars");
  fails("base: base.yaml\ngrid: {mixer: [x]}\nmixers: {y: {type: gla}}\n", "'x'");
  fails("base: base.yaml\ngrid: {optim.lr: [1]}\nplot: {x: model.d_model}\n", "plot.x");
  fails("base: base.yaml\ngrid: {optim.lr: [1]}\nbest_over: [seed]\n", "best_over");
  fails(
      "base: base.yaml\ngrid: {mixer: [a], model.d_model: [96]}\n"
      "mixers: {a: {type: attention, n_heads: \"${model.d_model/64}\"}}\n",
      "not divisible by 64");
  fails(
      "base: base.yaml\ngrid: {mixer: [a]}\n"
      "mixers: {a: {type: attention, n_heads: \"${model.d_model/64}\"}}\n",
      "not a grid key");
}

TEST_F(Sweep, FiltersMatchAxesKeysAndNumbers) {
  tiny_base();
  const auto cells = expand_grid(
      parse("base: base.yaml\ngrid: {\"data.seq_len,data.mqar.num_kv_pairs\": [[16, 2], [32, 4]], "
            "optim.lr: [1e-4, 1e-3], mixer: [gla, attention]}\n"),
      2);
  auto count = [&](const std::vector<std::string>& f) {
    int n = 0;
    for (const auto& c : cells) n += cell_matches(c, f);
    return n;
  };
  EXPECT_EQ(count({}), 8);
  EXPECT_EQ(count({"optim.lr=0.0001"}), 4);  // numeric comparison
  EXPECT_EQ(count({"optim.lr=1e-4", "mixer=gla"}), 2);
  EXPECT_EQ(count({"mixer=gla", "mixer=attention"}), 8);  // one key: alternatives
  EXPECT_EQ(count({"data.mqar.num_kv_pairs=4"}), 4);      // one key of a zipped axis
  EXPECT_EQ(count({"data.seq_len,data.mqar.num_kv_pairs=32,4"}), 4);
  EXPECT_EQ(count({"mixer=mamba2"}), 0);
  EXPECT_THROW(count({"model.d_model=64"}), seqmix::Error);
  EXPECT_THROW(count({"nonsense"}), seqmix::Error);
}

TEST_F(Sweep, ReadsMetricsAndResultJson) {
  std::uniform_real_distribution<double> u(0, 1);
  std::string text;
  double best = -1, last = -1;
  for (int s = 10; s <= 60; s += 10) {
    text += "{\"step\": " + std::to_string(s) + ", \"loss\": 1.5, \"lr\": 0.001}\n";
    if (s % 20 == 0) {
      const double a = u(rng_);
      best = std::max(best, a), last = a;
      text += fmt::format(
          "{{\"step\": {}, \"split\": \"val\", \"loss\": 2.0, \"accuracy\": {}, "
          "\"queries\": 32}}\n",
          s, a);
    }
  }
  const std::string path = write("metrics.jsonl", text);
  const CellResult r = read_metrics(path, "accuracy");
  EXPECT_EQ(r.steps, 60);
  ASSERT_TRUE(r.best_metric && r.final_metric);
  EXPECT_DOUBLE_EQ(*r.best_metric, best);
  EXPECT_DOUBLE_EQ(*r.final_metric, last);
  EXPECT_FALSE(read_metrics(path, "ppl").best_metric.has_value());
  EXPECT_EQ(read_metrics(p("missing.jsonl"), "accuracy").steps, 0);

  SweepCell c;
  c.id = "x";
  c.overrides = {"a.b=\"q\""};
  CellResult w = r;
  w.status = "ok";
  w.wall_s = 12.5;
  write_result_json(p("result.json"), c, w);
  const auto back = read_result_json(p("result.json"));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->status, "ok");
  EXPECT_EQ(back->steps, 60);
  EXPECT_DOUBLE_EQ(back->wall_s, 12.5);
  EXPECT_DOUBLE_EQ(*back->best_metric, best);
  EXPECT_DOUBLE_EQ(*back->final_metric, last);
  EXPECT_FALSE(read_result_json(p("absent.json")).has_value());
}

// A synthetic result set: 2 panels x 2 mixers x 3 widths x 2 lrs with random best metrics.
struct Synthetic {
  SweepSpec spec;
  std::vector<SweepCell> cells;
  std::vector<CellResult> results;
};

Synthetic synthetic(const std::string& dir, std::mt19937_64& rng) {
  Synthetic s;
  s.spec = parse_sweep(
      "base: base.yaml\nname: syn\n"
      "grid:\n  \"data.seq_len,data.mqar.num_kv_pairs\": [[64, 4], [128, 8]]\n"
      "  mixer: [attention, gla]\n  model.d_model: [64, 128, 256]\n  optim.lr: [1e-3, 1e-2]\n"
      "best_over: [optim.lr]\n"
      "plot: {x: model.d_model, line: mixer, panel: \"data.seq_len,data.mqar.num_kv_pairs\"}\n",
      "syn.yaml", dir);
  s.cells = expand_grid(s.spec, 2);
  std::uniform_real_distribution<double> u(0, 1);
  for (size_t i = 0; i < s.cells.size(); ++i) {
    CellResult r;
    r.status = "ok";
    r.best_metric = u(rng);
    r.final_metric = *r.best_metric * 0.5;
    r.steps = 100 + int64_t(i);
    r.wall_s = 1.0 + double(i);
    s.results.push_back(r);
  }
  return s;
}

TEST_F(Sweep, CsvAndMarkdownOfSyntheticResults) {
  tiny_base();
  Synthetic s = synthetic(dir_.string(), rng_);
  // One failed cell (both of its lrs: no value in the table) and one pending.
  const size_t failed_a = 0, failed_b = 1, pending = 2;  // panel 0, attention, d 64 (both lrs)
  s.results[failed_a] = CellResult{"failed", 2, 0.5, 0, {}, {}};
  s.results[failed_b] = CellResult{"failed", 1, 0.5, 0, {}, {}};
  s.results[pending] = CellResult{};

  const auto csv = lines_of(results_csv(s.spec, s.cells, s.results));
  ASSERT_EQ(csv.size(), 1 + s.cells.size());
  EXPECT_EQ(csv[0],
            "cell,data.seq_len,data.mqar.num_kv_pairs,mixer,model.d_model,optim.lr,accuracy,"
            "best_accuracy,steps,wall_s,status,exit_code");
  for (size_t i = 0; i < s.cells.size(); ++i) {
    const auto f = csv_split(csv[1 + i]);
    ASSERT_EQ(f.size(), 12u) << csv[1 + i];
    EXPECT_EQ(f[0], s.cells[i].id);
    EXPECT_EQ(f[3], s.cells[i].axis_values.at("mixer"));
    EXPECT_EQ(f[5], s.cells[i].axis_values.at("optim.lr"));
    const CellResult& r = s.results[i];
    EXPECT_EQ(f[10], r.status);
    EXPECT_EQ(f[11], std::to_string(r.exit_code));
    EXPECT_EQ(f[8], std::to_string(r.steps));
    if (r.best_metric) {
      EXPECT_DOUBLE_EQ(std::stod(f[7]), *r.best_metric);
      EXPECT_DOUBLE_EQ(std::stod(f[6]), *r.final_metric);
    } else {
      EXPECT_EQ(f[7], "");
    }
  }

  const std::string md = results_markdown(s.spec, s.cells, s.results);
  const auto md_lines = lines_of(md);
  // Expected table rows: (panel, mixer) -> the max over lr for each width.
  int rows = 0;
  for (const std::string panel : {"64,4", "128,8"})
    for (const std::string mixer : {"attention", "gla"}) {
      std::string want = "| " + panel + " | " + mixer + " |";
      for (const std::string d : {"64", "128", "256"}) {
        std::optional<double> best;
        bool failed = false, partial = false;
        for (size_t i = 0; i < s.cells.size(); ++i) {
          const auto& av = s.cells[i].axis_values;
          if (av.at("data.seq_len,data.mqar.num_kv_pairs") != panel || av.at("mixer") != mixer ||
              av.at("model.d_model") != d)
            continue;
          failed = failed || s.results[i].status == "failed";
          partial = partial || s.results[i].status != "ok";
          if (s.results[i].best_metric)
            best = best ? std::max(*best, *s.results[i].best_metric) : *s.results[i].best_metric;
        }
        // An entry with an unfinished cell (here: the pending one beside an ok one) is marked.
        want += best ? fmt::format(" {:.3f}{} |", *best, partial ? "*" : "")
                     : (failed ? " failed |" : " – |");
      }
      bool found = false;
      for (const auto& l : md_lines) found = found || l == want;
      EXPECT_TRUE(found) << "missing row: " << want << "\n" << md;
      ++rows;
    }
  EXPECT_EQ(rows, 4);
  EXPECT_NE(md.find("| data.seq_len,data.mqar.num_kv_pairs | mixer | model.d_model=64 | "
                    "model.d_model=128 | model.d_model=256 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("21 ok, 2 failed, 1 pending"), std::string::npos) << md;
  EXPECT_NE(md.find("* |"), std::string::npos) << md;  // the pending cell's entry
  EXPECT_NE(md.find("\\* Not every cell behind this value has finished"), std::string::npos) << md;
  // Wall time per mixer: attention = cells 0..5 and 12..17 (run ones), gla the others.
  double att = 0, gla = 0;
  int att_n = 0, gla_n = 0;
  for (size_t i = 0; i < s.cells.size(); ++i) {
    if (s.results[i].status == "pending") continue;
    (s.cells[i].axis_values.at("mixer") == "attention" ? att : gla) += s.results[i].wall_s;
    (s.cells[i].axis_values.at("mixer") == "attention" ? att_n : gla_n) += 1;
  }
  EXPECT_NE(md.find(fmt::format("| attention | {} | {:.1f} | {:.1f} |", att_n, att, att / att_n)),
            std::string::npos)
      << md;
  EXPECT_NE(md.find(fmt::format("| gla | {} | {:.1f} | {:.1f} |", gla_n, gla, gla / gla_n)),
            std::string::npos)
      << md;
}

// Minimal XML well-formedness: tags nest and close, one root <svg>.
void expect_well_formed(const std::string& xml) {
  std::vector<std::string> stack;
  int roots = 0;
  size_t pos = 0;
  while ((pos = xml.find('<', pos)) != std::string::npos) {
    const size_t end = xml.find('>', pos);
    ASSERT_NE(end, std::string::npos);
    const std::string tag = xml.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tag.empty() || tag[0] == '?' || tag[0] == '!') continue;
    if (tag[0] == '/') {
      ASSERT_FALSE(stack.empty()) << "stray </" << tag << ">";
      EXPECT_EQ(stack.back(), tag.substr(1));
      stack.pop_back();
      continue;
    }
    const std::string name = tag.substr(0, tag.find_first_of(" \n/"));
    if (stack.empty()) {
      ++roots;
      EXPECT_EQ(name, "svg");
    }
    if (tag.back() != '/') stack.push_back(name);
    // Attribute values are quoted and balanced.
    EXPECT_EQ(std::count(tag.begin(), tag.end(), '"') % 2, 0) << tag;
  }
  EXPECT_TRUE(stack.empty());
  EXPECT_EQ(roots, 1);
}

TEST_F(Sweep, SvgIsWellFormedAndMapsValues) {
  tiny_base();
  Synthetic s = synthetic(dir_.string(), rng_);
  const std::string svg = results_svg(s.spec, s.cells, s.results);
  expect_well_formed(svg);
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t p = svg.find(needle); p != std::string::npos; p = svg.find(needle, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<svg "), 1u);
  EXPECT_EQ(count("class=\"panel\""), 2u);
  EXPECT_EQ(count("<polyline"), 4u);  // 2 panels x 2 mixers
  EXPECT_NE(svg.find("data.seq_len,data.mqar.num_kv_pairs = 64,4"), std::string::npos);
  EXPECT_NE(svg.find("data.seq_len,data.mqar.num_kv_pairs = 128,8"), std::string::npos);
  EXPECT_NE(svg.find("class=\"legend-label\" x=\""), std::string::npos);
  EXPECT_NE(svg.find(">attention</text>"), std::string::npos);
  EXPECT_NE(svg.find(">gla</text>"), std::string::npos);
  EXPECT_NE(svg.find("model.d_model (log2 scale)"), std::string::npos);
  EXPECT_NE(svg.find(">accuracy</text>"), std::string::npos);

  // The y of the 0.0 and 1.0 tick lines of panel 0.
  const std::string panel0 = svg.substr(svg.find("id=\"panel-0\""),
                                        svg.find("id=\"panel-1\"") - svg.find("id=\"panel-0\""));
  std::map<std::string, double> tick_y;
  const std::regex tick(
      "<line class=\"ytick\" x1=\"[0-9.]+\" y1=\"([0-9.]+)\"[^>]*/>\\s*<text class=\"ytick-label\""
      "[^>]*>([0-9.]+)</text>");
  for (std::sregex_iterator it(panel0.begin(), panel0.end(), tick), e; it != e; ++it)
    tick_y[(*it)[2]] = std::stod((*it)[1]);
  ASSERT_TRUE(tick_y.count("0.0") && tick_y.count("1.0")) << panel0;
  EXPECT_GT(tick_y["0.0"], tick_y["1.0"]);  // up is smaller y
  // Each polyline of panel 0: x equally spaced (64, 128, 256 on log2), y = the best over lr.
  const std::regex poly("<polyline class=\"series\" data-line=\"([a-z]+)\" points=\"([^\"]+)\"");
  int seen = 0;
  for (std::sregex_iterator it(panel0.begin(), panel0.end(), poly), e; it != e; ++it, ++seen) {
    const std::string mixer = (*it)[1];
    std::vector<std::pair<double, double>> pts;
    std::stringstream ss((*it)[2].str());
    for (std::string xy; ss >> xy;) {
      const auto comma = xy.find(',');
      pts.emplace_back(std::stod(xy.substr(0, comma)), std::stod(xy.substr(comma + 1)));
    }
    ASSERT_EQ(pts.size(), 3u);
    EXPECT_NEAR(pts[1].first - pts[0].first, pts[2].first - pts[1].first, 0.02);
    EXPECT_GT(pts[1].first, pts[0].first);
    const std::string widths[] = {"64", "128", "256"};
    for (int d = 0; d < 3; ++d) {
      double best = -1;
      for (size_t i = 0; i < s.cells.size(); ++i) {
        const auto& av = s.cells[i].axis_values;
        if (av.at("data.seq_len,data.mqar.num_kv_pairs") == "64,4" && av.at("mixer") == mixer &&
            av.at("model.d_model") == widths[d])
          best = std::max(best, *s.results[i].best_metric);
      }
      const double want = tick_y["0.0"] + best * (tick_y["1.0"] - tick_y["0.0"]);
      EXPECT_NEAR(pts[size_t(d)].second, want, 0.02) << mixer << " d_model " << widths[d];
    }
  }
  EXPECT_EQ(seen, 2);
}

TEST_F(Sweep, ShippedSweepsExpandToValidRuns) {
  for (const std::string file :
       {"configs/sweeps/zoology_fig2.yaml", "configs/sweeps/zoology_fig2_reduced.yaml",
        "configs/sweeps/mqar_quick.yaml"}) {
    SCOPED_TRACE(file);
    const SweepSpec s = load_sweep(file);
    const auto cells = expand_grid(s, base_layer_count(s));
    // 4 (T, kv) x 9 mixers x 4 widths x 4 lrs; reduced: 3 widths x 2 lrs; quick: 2 (T, kv) x
    // 9 mixers x 2 widths x 2 lrs.
    const size_t want = file.find("reduced") != std::string::npos   ? 216u
                        : file.find("zoology") != std::string::npos ? 576u
                                                                    : 72u;
    EXPECT_EQ(cells.size(), want);
    std::set<std::string> ids;
    for (const auto& c : cells) {
      ids.insert(c.id);
      const auto cfg = seqmix::config::load_config(s.base, c.overrides);  // throws when invalid
      EXPECT_EQ(cfg.data.mqar.vocab_size, 8192);
      EXPECT_FALSE(cfg.model.mlp);
      EXPECT_EQ(seqmix::config::layer_mixers(cfg).size(), 2u);
      EXPECT_DOUBLE_EQ(cfg.train.stop_at_accuracy, 0.99);
    }
    EXPECT_EQ(ids.size(), cells.size());
    // Sweep results land in the report axes of the Zoology figure.
    EXPECT_EQ(s.plot.x, "model.d_model");
    EXPECT_EQ(s.plot.line, "mixer");
  }
}

// ------------------------------------------------------------------ end to end
TEST_F(Sweep, EndToEndThroughTheExecutable) {
  tiny_base();
  const std::string sweep = write("tiny_sweep.yaml", R"(base: base.yaml
name: tiny
grid:
  mixer: [attention, gla]
  optim.lr: [3e-3, 1e-2]
mixers:
  attention: {type: attention, n_heads: 1}
  gla: {type: gla, n_heads: 1}
metric: accuracy
plot: {x: optim.lr, line: mixer}
)");
  const std::string out = p("out");
  const std::string bin = SEQMIX_BIN;
  // --dry-run prints every cell's command and runs nothing.
  auto dry = seqmix::tu::run_command(bin + " sweep " + sweep + " --dir " + out + " --dry-run");
  ASSERT_EQ(dry.code, 0) << dry.out;
  EXPECT_NE(dry.out.find("4 cells (4 selected, 4 to run)"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("--set 'model.layers.list=[gla, gla]'"), std::string::npos) << dry.out;
  EXPECT_FALSE(fs::exists(out));

  auto run = seqmix::tu::run_command(bin + " sweep " + sweep + " --dir " + out + " --gpus 0");
  ASSERT_EQ(run.code, 0) << run.out;
  for (const char* f : {"results.csv", "results.md", "results.svg", "sweep.yaml"})
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;
  const std::string csv1 = read(out + "/results.csv");
  const auto rows = lines_of(csv1);
  ASSERT_EQ(rows.size(), 5u) << csv1;
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto f = csv_split(rows[i]);
    ASSERT_EQ(f.size(), 9u) << rows[i];  // cell, mixer, lr, accuracy, best, steps, wall, status, rc
    EXPECT_EQ(f[7], "ok") << rows[i];
    EXPECT_EQ(f[8], "0") << rows[i];
    EXPECT_EQ(f[5], "6") << rows[i];  // steps
    const double best = std::stod(f[4]);
    EXPECT_GE(best, 0.0);
    EXPECT_LE(best, 1.0);
    EXPECT_GE(best, std::stod(f[3]));  // best >= final
    EXPECT_GT(std::stod(f[6]), 0.0);   // wall seconds
    EXPECT_TRUE(fs::exists(fs::path(out) / "cells" / f[0] / "result.json")) << f[0];
    EXPECT_TRUE(fs::exists(fs::path(out) / "cells" / f[0] / "metrics.jsonl")) << f[0];
  }
  const std::string md = read(out + "/results.md");
  EXPECT_NE(md.find("| mixer | optim.lr=3e-3 | optim.lr=1e-2 |"), std::string::npos) << md;
  std::string svg = read(out + "/results.svg");
  expect_well_formed(svg);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);

  // A rerun skips every finished cell and reproduces the same results.csv.
  auto again = seqmix::tu::run_command(bin + " sweep " + sweep + " --dir " + out + " --gpus 0");
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("4 finished, 0 to run"), std::string::npos) << again.out;
  EXPECT_EQ(again.out.find("start"), std::string::npos) << again.out;
  EXPECT_EQ(read(out + "/results.csv"), csv1);

  // A cell without result.json is run again; --filter runs only the matching cells.
  const std::string redo = csv_split(rows[3])[0];
  fs::remove(fs::path(out) / "cells" / redo / "result.json");
  auto part = seqmix::tu::run_command(bin + " sweep " + sweep + " --dir " + out +
                                      " --gpus 0 --filter mixer=gla");
  ASSERT_EQ(part.code, 0) << part.out;
  EXPECT_NE(part.out.find("4 cells, 2 selected, 1 finished, 1 to run"), std::string::npos)
      << part.out;
  EXPECT_NE(part.out.find("start " + redo), std::string::npos) << part.out;
  EXPECT_TRUE(fs::exists(fs::path(out) / "cells" / redo / "result.json"));

  // A resumed cell's wall time adds its earlier segments (cells/<id>/elapsed_s); the cell has the
  // checkpoint of its finished run, so it resumes rather than starting over.
  const fs::path cell = fs::path(out) / "cells" / redo;
  ASSERT_TRUE(fs::exists(cell / "elapsed_s"));
  ASSERT_TRUE(fs::is_directory(cell / "checkpoints"));
  fs::remove(cell / "result.json");
  std::ofstream(cell / "elapsed_s") << "1000.5\n";
  auto resumed = seqmix::tu::run_command(bin + " sweep " + sweep + " --dir " + out +
                                         " --gpus 0 --filter mixer=gla");
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  double wall = -1;
  for (const auto& row : lines_of(read(out + "/results.csv")))
    if (row.rfind(redo + ",", 0) == 0) wall = std::stod(csv_split(row)[6]);
  EXPECT_GT(wall, 1000.5);
  EXPECT_LT(wall, 1000.5 + 600);
}

TEST_F(Sweep, FailedCellIsRecordedAndTheSweepContinues) {
  tiny_base();
  // n_heads 3 does not divide d_model 16: that cell fails at model construction (exit 2).
  const std::string sweep = write("bad_sweep.yaml", R"(base: base.yaml
name: bad
set: ["train.steps=3", "train.eval_every=0"]
grid:
  mixer: [bad, good]
mixers:
  bad: {type: attention, n_heads: 3}
  good: {type: attention, n_heads: 2}
)");
  const std::string out = p("out");
  // Both cells at once (--per-gpu 2 without GPUs: two unpinned slots).
  auto run = seqmix::tu::run_command(std::string(SEQMIX_BIN) + " sweep " + sweep + " --dir " + out +
                                     " --gpus 0 --per-gpu 2");
  EXPECT_EQ(run.code, 1) << run.out;
  EXPECT_NE(run.out.find("(2 at a time)"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("FAILED"), std::string::npos) << run.out;
  const auto rows = lines_of(read(out + "/results.csv"));
  ASSERT_EQ(rows.size(), 3u);
  const auto bad = csv_split(rows[1]), good = csv_split(rows[2]);
  EXPECT_EQ(bad[1], "bad");
  ASSERT_EQ(bad.size(), 8u) << rows[1];  // cell, mixer, accuracy, best, steps, wall, status, rc
  EXPECT_EQ(bad[6], "failed");
  EXPECT_EQ(bad[7], "2");  // a config error in the child: exit code 2
  EXPECT_EQ(good[6], "ok");
  EXPECT_FALSE(fs::exists(fs::path(out) / "cells" / bad[0] / "result.json"));
  EXPECT_TRUE(fs::exists(fs::path(out) / "cells" / bad[0] / "train.log"));
  EXPECT_TRUE(fs::exists(fs::path(out) / "cells" / good[0] / "result.json"));
  EXPECT_NE(read(out + "/results.md").find("failed"), std::string::npos);
  // A usage error in the sweep file is exit code 2.
  auto usage = seqmix::tu::run_command(std::string(SEQMIX_BIN) + " sweep " + sweep +
                                       " --dry-run --filter mixer=nothing");
  EXPECT_EQ(usage.code, 2) << usage.out;
}
