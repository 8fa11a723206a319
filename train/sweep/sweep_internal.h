// Internals shared by the sweep report writers (sweep.cpp: Markdown; sweep_svg.cpp: SVG): the
// results grouped into panels x lines x x-values, each entry the best metric over the cells
// that fall on it (i.e. maximised over the `best_over` axes).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "train/sweep/sweep.h"

namespace seqmix::sweep::detail {

struct Table {
  struct Entry {
    std::optional<double> value;  // max of the cells' best metric
    int failed = 0, pending = 0;
  };
  std::vector<std::string> panels;  // display values ("" when there is no panel axis)
  std::vector<std::string> lines;   // line value + other non-maximised axes ("" when none)
  std::vector<std::string> xs;      // x values in grid order
  std::vector<std::string> others;  // axes folded into the line label
  std::map<std::tuple<size_t, size_t, size_t>, Entry> entries;  // (panel, line, x)
};

std::vector<std::string> other_axes(const SweepSpec& spec);
Table build_table(const SweepSpec& spec, const std::vector<SweepCell>& cells,
                  const std::vector<CellResult>& results);

}  // namespace seqmix::sweep::detail
