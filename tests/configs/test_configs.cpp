// Run configs: defaults, YAML reading, errors that name key, file and line with suggestions,
// --set overrides, the resolved-YAML round trip, and docs/config.md kept in step with the code.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "configs/config.h"
#include "core/error.h"

using namespace seqmix;
using namespace seqmix::config;

namespace {
// The message of the Config error `f` raises ("" when none).
template <class F>
std::string config_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config) << e.message();
    return e.message();
  }
  ADD_FAILURE() << "no error raised";
  return "";
}
bool has(const std::string& s, const std::string& sub) {
  return s.find(sub) != std::string::npos;
}
}  // namespace

TEST(Config, DefaultsAreValid) {
  const RunConfig c = parse_config("", "empty.yaml");
  EXPECT_EQ(c.run.seed, 1234u);
  EXPECT_EQ(c.data.source, "mqar");
  EXPECT_EQ(layer_mixers(c), std::vector<std::string>{"A"});
  EXPECT_EQ(c.model.mixers.at("A").type, "attention");
}

TEST(Config, ReadsEverySectionAndExpandsPatterns) {
  const RunConfig c = parse_config(R"(
run: {name: t, seed: 7}
model:
  d_model: 64
  layers: {pattern: "GGA", repeat: 2}
  mixers:
    G: {type: attention, n_heads: 2, window: 16}
    A: {type: attention, n_heads: 4}
data: {source: tokens, path: /tmp/x, batch_size: 3, seq_len: 17}
train: {steps: 5, precision: fp32, device: cpu}
optim: {lr: 3e-4, schedule: wsd, warmup_steps: 2}
)",
                                   "t.yaml");
  EXPECT_EQ(c.run.seed, 7u);
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(layer_mixers(c), (std::vector<std::string>{"G", "G", "A", "G", "G", "A"}));
  EXPECT_EQ(c.model.mixers.at("G").options.at("window"), "16");
  EXPECT_EQ(c.model.mixers.at("G").locations.at("window"), "t.yaml:7");
  EXPECT_EQ(c.data.seq_len, 17);
  EXPECT_DOUBLE_EQ(c.optim.lr, 3e-4);
  EXPECT_EQ(c.optim.schedule, "wsd");
}

TEST(Config, UnknownKeyNamesPathLineAndSuggestion) {
  const std::string m = config_error([] { parse_config("train:\n  step: 10\n", "bad.yaml"); });
  EXPECT_TRUE(has(m, "bad.yaml:2")) << m;
  EXPECT_TRUE(has(m, "'train.step'")) << m;
  EXPECT_TRUE(has(m, "did you mean 'train.steps'")) << m;
  const std::string top = config_error([] { parse_config("optimizer: {lr: 1}\n", "b.yaml"); });
  EXPECT_TRUE(has(top, "did you mean 'optim'")) << top;
  const std::string far = config_error([] { parse_config("zzzzzzzz: 1\n", "b.yaml"); });
  EXPECT_TRUE(has(far, "valid keys here")) << far;
}

TEST(Config, WrongTypesAndRangesAreErrors) {
  EXPECT_TRUE(has(config_error([] { parse_config("train: {steps: many}", "f.yaml"); }),
                  "expected an integer, got 'many'"));
  EXPECT_TRUE(has(config_error([] { parse_config("train: {steps: 0}", "f.yaml"); }),
                  "'train.steps': must be > 0"));
  EXPECT_TRUE(has(config_error([] { parse_config("train:\n  device: tpu\n", "f.yaml"); }),
                  "f.yaml:2: 'train.device': must be one of auto, cpu, cuda"));
  EXPECT_TRUE(
      has(config_error([] { parse_config("run: {seed: -1}", "f.yaml"); }), "non-negative integer"));
  EXPECT_TRUE(has(config_error([] { parse_config("train: [1, 2]", "f.yaml"); }), "expected a map"));
  EXPECT_TRUE(has(config_error([] { parse_config("model: {layers: {pattern: AB}}", "f.yaml"); }),
                  "layer mixer 'B' is not a key of model.mixers"));
  EXPECT_TRUE(
      has(config_error([] { parse_config("data: {source: tokens}", "f.yaml"); }), "no data.path"));
  EXPECT_TRUE(
      has(config_error([] { parse_config("model: {mixers: {A: {n_heads: 2}}}", "f.yaml"); }),
          "needs a 'type'"));
  EXPECT_TRUE(has(config_error([] { parse_config("a: [", "f.yaml"); }), "invalid YAML"));
  EXPECT_TRUE(has(config_error([] { load_config("/nonexistent/x.yaml"); }), "not found"));
}

TEST(Config, SetOverridesAreCheckedLikeFileKeys) {
  const RunConfig c = parse_config("train: {steps: 5}\n", "o.yaml",
                                   {"train.steps=9", "optim.lr=0.01", "run.name=hello",
                                    "model.mixers.A.window=8", "model.layers.list=[A, A]"});
  EXPECT_EQ(c.train.steps, 9);
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.01);
  EXPECT_EQ(c.run.name, "hello");
  EXPECT_EQ(c.model.mixers.at("A").options.at("window"), "8");
  EXPECT_EQ(layer_mixers(c).size(), 2u);
  const std::string m = config_error([] { parse_config("", "o.yaml", {"train.stepz=3"}); });
  EXPECT_TRUE(has(m, "--set")) << m;
  EXPECT_TRUE(has(m, "did you mean 'train.steps'")) << m;
  EXPECT_TRUE(has(config_error([] { parse_config("", "o.yaml", {"train.steps"}); }),
                  "expected key.path=value"));
  EXPECT_TRUE(has(config_error([] { parse_config("", "o.yaml", {"train.steps=x"}); }),
                  "--set: 'train.steps': expected an integer"));
}

TEST(Config, ResolvedYamlRoundTrips) {
  const RunConfig c = parse_config(R"(
model: {d_model: 48, mixers: {X: {type: attention, n_heads: 3}}, layers: {pattern: X, repeat: 3}}
optim: {lr: 0.00123456789, min_lr: 1e-5}
run: {name: "with: colon"}
)",
                                   "r.yaml");
  const std::string y = to_yaml(c);
  const RunConfig d = parse_config(y, "resolved.yaml");
  EXPECT_EQ(to_yaml(d), y);
  EXPECT_DOUBLE_EQ(d.optim.lr, 0.00123456789);
  EXPECT_EQ(d.run.name, "with: colon");
  EXPECT_EQ(d.model.mixers.at("X").options.at("n_heads"), "3");
}

TEST(Config, DocsConfigMdContainsTheGeneratedReference) {
  // docs/config.md embeds reference_markdown() between markers; regenerate it with
  // `seqmix train --config-reference` when a key changes.
  std::ifstream in("docs/config.md");
  ASSERT_TRUE(in.good()) << "docs/config.md missing (tests run from the repository root)";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const std::string begin = "<!-- BEGIN GENERATED REFERENCE -->\n";
  const std::string end = "<!-- END GENERATED REFERENCE -->";
  const auto b = doc.find(begin), e = doc.find(end);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(e, std::string::npos);
  EXPECT_EQ(doc.substr(b + begin.size(), e - b - begin.size()), reference_markdown())
      << "docs/config.md is out of date: regenerate the reference section";
}
