// hansa metrics STATE_DIR: the per-round table of a coordinator's metrics.jsonl, with a column
// for each clinical figure (balanced accuracy, macro F1, AUC, MSE, MAE, R²) some round has.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <vector>

#include "nlohmann/json.hpp"
#include "tools/command.h"

namespace hansa::tools {
namespace {

std::string Bytes(double b) {
  char buf[32];
  if (b >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  } else if (b >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2f MB", b / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  }
  return buf;
}

// The federation's clinical figures metrics.jsonl may hold (coordinator/round_metrics.h).
struct ClinicalColumn {
  const char* key;
  const char* header;
};
constexpr ClinicalColumn kClinical[] = {{"balanced_accuracy", "bal. acc"},
                                        {"macro_f1", "macro F1"},
                                        {"auc", "AUC"},
                                        {"mse", "MSE"},
                                        {"mae", "MAE"},
                                        {"r2", "R2"}};

void PrintMetrics(const std::string& state_dir, double min_accuracy) {
  std::string path = state_dir + "/metrics.jsonl";
  std::ifstream in(path);
  if (!in) {
    std::cerr << "hansa metrics: cannot read " << path
              << " (is this a coordinator state directory?)\n";
    throw CLI::RuntimeError(1);
  }
  std::vector<nlohmann::json> rounds;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json m = nlohmann::json::parse(line, nullptr, false);
    if (m.is_discarded() || !m.is_object()) {
      std::cerr << "hansa metrics: " << path << " line " << rounds.size() + 1 << " is not JSON\n";
      throw CLI::RuntimeError(1);
    }
    rounds.push_back(std::move(m));
  }
  // A column per privacy guarantee that some round spent: cumulative epsilon.
  bool client = false, record = false;
  for (const auto& m : rounds) {
    client = client || m.contains("epsilon");
    record = record || m.contains("record_epsilon");
  }
  // A column per clinical figure that some round has (classification, binary or regression).
  std::vector<const ClinicalColumn*> clinical;
  for (const ClinicalColumn& c : kClinical) {
    for (const auto& m : rounds) {
      if (m.contains(c.key)) {
        clinical.push_back(&c);
        break;
      }
    }
  }
  std::printf("%5s %5s %9s %8s", "round", "sites", "accuracy", "loss");
  for (const ClinicalColumn* c : clinical) std::printf(" %9s", c->header);
  std::printf(" %9s %11s %11s", "seconds", "bytes up", "bytes down");
  if (client) std::printf(" %10s", "site eps");
  if (record) std::printf(" %10s", "record eps");
  std::printf("\n");
  auto epsilon = [](const nlohmann::json& m, const char* key) {
    return m.contains(key) && m[key].is_number() ? m[key].get<double>() : 0.0;
  };
  double last_accuracy = -1;
  for (const auto& m : rounds) {
    double acc = m["accuracy"].is_number() ? m["accuracy"].get<double>() : -1;
    double loss = m["loss"].is_number() ? m["loss"].get<double>() : -1;
    std::printf("%5lld %5lld %9.4f %8.4f", m.value("round", 0LL), m.value("sites", 0LL), acc, loss);
    for (const ClinicalColumn* c : clinical) {
      if (m.contains(c->key) && m[c->key].is_number()) {
        std::printf(" %9.6g", m[c->key].get<double>());
      } else {
        std::printf(" %9s", "-");
      }
    }
    std::printf(" %9.1f %11s %11s", m.value("seconds", 0.0),
                Bytes(m.value("bytes_up", 0.0)).c_str(), Bytes(m.value("bytes_down", 0.0)).c_str());
    if (client) std::printf(" %10.4g", epsilon(m, "epsilon"));
    if (record) std::printf(" %10.4g", epsilon(m, "record_epsilon"));
    std::printf("\n");
    last_accuracy = acc;
  }
  const size_t lines = rounds.size();
  if (lines == 0) {
    std::cerr << "hansa metrics: " << path << " holds no rounds yet\n";
    throw CLI::RuntimeError(1);
  }
  if (min_accuracy > 0 && last_accuracy < min_accuracy) {
    std::cerr << "hansa metrics: final accuracy " << last_accuracy << " is below " << min_accuracy
              << "\n";
    throw CLI::RuntimeError(3);
  }
}

void Register(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand("metrics", "print the per-round table of a federation");
  auto state_dir = std::make_shared<std::string>();
  auto min_accuracy = std::make_shared<double>(0);
  cmd->add_option("STATE_DIR", *state_dir, "the coordinator's state directory")->required();
  cmd->add_option("--min-accuracy", *min_accuracy,
                  "exit with code 3 when the last round's accuracy is below this");
  cmd->callback([state_dir, min_accuracy] { PrintMetrics(*state_dir, *min_accuracy); });
}

HANSA_REGISTER_COMMAND(Register);

}  // namespace
}  // namespace hansa::tools
