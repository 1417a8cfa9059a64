#include "client/site_metrics.h"

#include <fstream>
#include <regex>

#include "common/monitoring/prometheus_text.h"
#include "common/privacy/ledger.h"
#include "nlohmann/json.hpp"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "spdlog/spdlog.h"

namespace hansa {

SiteMetrics::SiteMetrics(std::string site, std::string state_dir, double max_epsilon, double delta,
                         double max_record_epsilon, double record_delta)
    : site_(std::move(site)),
      state_dir_(std::move(state_dir)),
      max_epsilon_(max_epsilon),
      delta_(delta),
      max_record_epsilon_(max_record_epsilon),
      record_delta_(record_delta) {}

std::string SiteMetrics::ReasonLabel(const std::string& reason) {
  static const std::regex kPolicyKey("policy\\.([a-z_]+)");
  std::smatch m;
  if (std::regex_search(reason, m, kPolicyKey)) return m[1].str();
  return "other";
}

void SiteMetrics::ReadNewRecords() {
  std::ifstream in(state_dir_ + "/egress.jsonl", std::ios::binary);
  if (!in) return;
  in.seekg(0, std::ios::end);
  const int64_t size = in.tellg();
  if (size < offset_) offset_ = 0;  // a new ledger (another study's state): count afresh
  in.seekg(offset_);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a line still being written: read it next time
    offset_ += static_cast<int64_t>(line.size()) + 1;
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object()) continue;
    ++records_;
    const std::string event = record.value("event", "");
    const nlohmann::json& fields = record.contains("fields") ? record["fields"] : nlohmann::json();
    if (!fields.is_object()) continue;
    if (event == "message_sent") {
      const std::string type = fields.value("type", "unknown");
      bytes_by_type_[type] += fields.value("bytes", int64_t{0});
      ++messages_by_type_[type];
      const auto values = fields.find("values");
      if (type == "upload" && values != fields.end() && values->is_object()) {
        const int64_t examples = values->value("num_examples", int64_t{0});
        const double seconds = values->value("train_seconds", 0.0);
        if (examples > 0 && seconds > 0) {
          trained_examples_ += examples;
          training_seconds_ += seconds;
          last_examples_per_second_ = static_cast<double>(examples) / seconds;
        }
      }
    } else if (event == "plan_accepted") {
      ++accepted_;
    } else if (event == "plan_refused") {
      ++refused_by_reason_[ReasonLabel(fields.value("reason", ""))];
    } else if (event == "contribution_spent") {
      ++contributions_;
    }
  }
}

std::string SiteMetrics::Text() {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  prometheus::Registry registry;
  const std::map<std::string, std::string> site = {{"site", site_}};
  {
    absl::MutexLock lock(&mu_);
    ReadNewRecords();
    auto& bytes = BuildCounter()
                      .Name("hansa_site_sent_bytes_total")
                      .Help("Bytes this site sent, by message type (its egress ledger)")
                      .Register(registry);
    auto& messages = BuildCounter()
                         .Name("hansa_site_messages_sent_total")
                         .Help("Messages this site sent, by type (its egress ledger)")
                         .Register(registry);
    for (const auto& [type, n] : bytes_by_type_) {
      bytes.Add({{"site", site_}, {"type", type}}).Increment(static_cast<double>(n));
    }
    for (const auto& [type, n] : messages_by_type_) {
      messages.Add({{"site", site_}, {"type", type}}).Increment(static_cast<double>(n));
    }
    BuildCounter()
        .Name("hansa_site_plans_accepted_total")
        .Help("Plans this site accepted")
        .Register(registry)
        .Add(site)
        .Increment(static_cast<double>(accepted_));
    auto& refused = BuildCounter()
                        .Name("hansa_site_plans_refused_total")
                        .Help("Plans this site refused, by the policy key that refused them")
                        .Register(registry);
    for (const auto& [reason, n] : refused_by_reason_) {
      refused.Add({{"site", site_}, {"reason", reason}}).Increment(static_cast<double>(n));
    }
    BuildCounter()
        .Name("hansa_site_contributions_total")
        .Help("Updates this site contributed (one per plan attempt)")
        .Register(registry)
        .Add(site)
        .Increment(static_cast<double>(contributions_));
    BuildCounter()
        .Name("hansa_site_trained_examples_total")
        .Help("Examples trained on for the updates sent in the clear")
        .Register(registry)
        .Add(site)
        .Increment(static_cast<double>(trained_examples_));
    BuildCounter()
        .Name("hansa_site_training_seconds_total")
        .Help("Seconds of local training for the updates sent in the clear")
        .Register(registry)
        .Add(site)
        .Increment(training_seconds_);
    if (last_examples_per_second_ >= 0) {
      BuildGauge()
          .Name("hansa_site_training_throughput_examples_per_second")
          .Help("Examples per second of the last local training whose figures were sent")
          .Register(registry)
          .Add(site)
          .Set(last_examples_per_second_);
    }
    BuildCounter()
        .Name("hansa_site_egress_records_total")
        .Help("Records in this site's egress ledger")
        .Register(registry)
        .Add(site)
        .Increment(static_cast<double>(records_));
  }
  auto& left = BuildGauge()
                   .Name("hansa_site_privacy_epsilon_left")
                   .Help("Epsilon of the site's own budget not yet spent, per guarantee")
                   .Register(registry);
  auto& spent = BuildGauge()
                    .Name("hansa_site_privacy_epsilon_spent")
                    .Help("Epsilon this site spent, per guarantee")
                    .Register(registry);
  const auto budget = [&](const char* guarantee, const char* file, double max, double delta) {
    if (max <= 0) return;
    StatusOr<PrivacyLedger> ledger =
        PrivacyLedger::Open(state_dir_ + "/" + file, PrivacyBudget{max, delta});
    if (!ledger.ok()) {
      spdlog::warn("metrics: {}: {}", file, std::string(ledger.status().message()));
      return;
    }
    const double e = ledger->Spent().epsilon;
    spent.Add({{"site", site_}, {"guarantee", guarantee}}).Set(e);
    left.Add({{"site", site_}, {"guarantee", guarantee}}).Set(std::max(0.0, max - e));
  };
  budget("client_level", "privacy.json", max_epsilon_, delta_);
  budget("record_level", "record_privacy.json", max_record_epsilon_, record_delta_);
  return PrometheusText(registry);
}

void SiteMetrics::Serve(HttpServer& server, std::shared_ptr<SiteMetrics> metrics) {
  server.Handle("/metrics", [metrics = std::move(metrics)](const HttpRequest&) {
    HttpResponse response;
    response.content_type = kPrometheusContentType;
    response.body = metrics->Text();
    return response;
  });
}

}  // namespace hansa
