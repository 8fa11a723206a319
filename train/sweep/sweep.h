// Sweeps: a grid of training runs described by one YAML file (`seqmix sweep SWEEP.yaml`).
// This header holds the spec (parse), the grid expansion into cells with stable ids and their
// `--set` overrides, per-cell results (read from a run's metrics.jsonl, kept in result.json), and
// the three report writers: results.csv, results.md (Markdown tables) and results.svg (plot).
// The file format is documented in train/sweep/README.md.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace seqmix::sweep {

// One grid axis: one key (`model.d_model`) or zipped keys (`"data.seq_len,data.mqar.num_kv_pairs"`)
// whose values move together. values[i][k] is the YAML scalar text of keys[k] in point i.
struct SweepAxis {
  std::string name;               // as written in the file ("a.b" or "a.b,c.d" or "mixer")
  std::vector<std::string> keys;  // the zipped keys
  std::vector<std::vector<std::string>> values;
};

struct PlotSpec {
  std::string x;      // axis name on the x axis (log2 scale); default: the first axis
  std::string line;   // axis name, one polyline per value; default: `mixer` if any, else none
  std::string panel;  // axis name, one panel per value; default: none
};

struct SweepSpec {
  std::string file;  // the sweep file ("" when parsed from text)
  std::string name;
  std::string base;  // the base run config, resolved (see resolve_base)
  std::vector<std::string> set;
  std::vector<SweepAxis> grid;                // in file order
  std::map<std::string, std::string> mixers;  // name -> spec as flow YAML ("{type: gla, ...}")
  std::string metric = "accuracy";
  double stop_at = 0;                  // > 0: train.stop_at_accuracy
  std::vector<std::string> best_over;  // axis names maximised over in the report
  PlotSpec plot;
  const SweepAxis* axis(const std::string& name) const;  // nullptr when absent
};

// Parses a sweep file. `base` is resolved against the sweep file's directory first, then the
// working directory. Raises ErrorKind::Config naming the file and key.
SweepSpec load_sweep(const std::string& path);
// Parses sweep YAML text (`dir` resolves a relative base; "" = working directory only).
SweepSpec parse_sweep(const std::string& yaml_text, const std::string& source_name,
                      const std::string& dir);

// One point of the grid.
struct SweepCell {
  std::string id;  // stable: readable key/value summary + hash of every (key, value)
  // axis name -> display value (zipped values joined by ","), for every axis.
  std::map<std::string, std::string> axis_values;
  // Every individual key (zipped keys split; `mixer` stays `mixer`) with its value, grid order.
  std::vector<std::pair<std::string, std::string>> key_values;
  std::vector<std::string> overrides;  // the `--set` list passed to `seqmix train`
};

// Expands the grid (cartesian product, first axis slowest). `layers` is the base config's layer
// count (the mixer axis writes `model.layers.list` with that many entries).
std::vector<SweepCell> expand_grid(const SweepSpec& spec, int64_t layers);
// The base config's layer count (loads the base with the fixed `set` overrides).
int64_t base_layer_count(const SweepSpec& spec);

// `--filter KEY=VALUE`: KEY an axis name or one key; a cell is kept when, for every filtered key,
// its value equals one of the given values (numbers compare by value: 1e-4 == 0.0001).
bool cell_matches(const SweepCell& cell, const std::vector<std::string>& filters);

// The outcome of one cell.
struct CellResult {
  std::string status = "pending";  // ok | failed | pending
  int exit_code = 0;
  double wall_s = 0;
  int64_t steps = 0;                   // last step in metrics.jsonl
  std::optional<double> final_metric;  // the metric at the last eval
  std::optional<double> best_metric;   // max over the run's evals
};

// Reads `<run dir>/metrics.jsonl`: eval lines ("split": "val") carrying `metric`.
CellResult read_metrics(const std::string& metrics_path, const std::string& metric);
// result.json: written by the runner after a cell succeeded; presence = finished.
void write_result_json(const std::string& path, const SweepCell& cell, const CellResult& r);
std::optional<CellResult> read_result_json(const std::string& path);

// Reports. `results[i]` belongs to `cells[i]`.
std::string results_csv(const SweepSpec& spec, const std::vector<SweepCell>& cells,
                        const std::vector<CellResult>& results);
std::string results_markdown(const SweepSpec& spec, const std::vector<SweepCell>& cells,
                             const std::vector<CellResult>& results);
std::string results_svg(const SweepSpec& spec, const std::vector<SweepCell>& cells,
                        const std::vector<CellResult>& results);

// SVG geometry (exposed for tests): panel p's plot area and the value -> pixel maps.
struct SvgGeometry {
  static constexpr double kPanelW = 360, kPanelH = 300;
  static constexpr double kLeft = 60, kRight = 20, kTop = 40, kBottom = 50;
  double x_lo = 0, x_hi = 1;               // log2 range of x
  double y_lo = 0, y_hi = 1;               // metric range
  int columns = 1;                         // panels per row
  double x_px(int panel, double x) const;  // x in data units (> 0)
  double y_px(int panel, double y) const;
};

}  // namespace seqmix::sweep
