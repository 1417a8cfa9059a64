#include "client/egress.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/audit/events.h"
#include "common/audit/record_text.h"
#include "common/audit/verify.h"
#include "common/crypto/sha256.h"
#include "common/logging/logging.h"
#include "spdlog/spdlog.h"

namespace hansa {

namespace {

using nlohmann::json;

json Figure(double v) { return std::isfinite(v) ? json(v) : json(); }

template <typename Repeated>
json Counts(const Repeated& counts) {
  json out = json::array();
  for (uint64_t c : counts) out.push_back(c);
  return out;
}

}  // namespace

json EgressValues(const v1::MetricsReport& report) {
  json values = {{"num_examples", report.num_examples()},
                 {"loss", Figure(report.loss())},
                 {"accuracy", Figure(report.accuracy())},
                 {"seconds", Figure(report.seconds())}};
  if (report.classes() > 0) values["classes"] = report.classes();
  if (report.confusion_size() > 0) values["confusion"] = Counts(report.confusion());
  if (report.positive_scores_size() > 0) {
    values["positive_scores"] = Counts(report.positive_scores());
    values["negative_scores"] = Counts(report.negative_scores());
  }
  if (report.has_regression() && report.regression().count() > 0) {
    const v1::RegressionReport& r = report.regression();
    values["regression"] = {{"count", r.count()},
                            {"squared_error", Figure(r.squared_error())},
                            {"absolute_error", Figure(r.absolute_error())},
                            {"target", Figure(r.target())},
                            {"target_squared", Figure(r.target_squared())}};
  }
  return values;
}

json EgressValues(const v1::TransferHeader& header) {
  if (header.num_examples() == 0) return nullptr;
  return {{"num_examples", header.num_examples()},
          {"train_loss", Figure(header.train_loss())},
          {"train_seconds", Figure(header.train_seconds())}};
}

StatusOr<std::string> EgressRecorder::Sending(const char* type, uint64_t round,
                                              const std::string& bytes, json values) const {
  if (ledger_ == nullptr) return std::string();
  return Sending(type, round, bytes.size(), ToHex(Sha256(bytes)), std::move(values));
}

StatusOr<std::string> EgressRecorder::Sending(const char* type, uint64_t round, uint64_t bytes,
                                              std::string sha256, json values) const {
  // Nothing leaves unrecorded: a ledger that cannot be written stops the send.
  AuditEvent sent = MessageSent(type, static_cast<int64_t>(round), bytes, sha256);
  if (!values.is_null()) sent.fields["values"] = std::move(values);
  RETURN_IF_ERROR(Append(sent));
  return sha256;
}

Status EgressRecorder::Joined(const v1::JoinReply& reply) {
  std::string joined = absl::StrCat(reply.federation(), "\n", reply.site());
  if (ledger_ == nullptr || joined == joined_) return absl::OkStatus();
  // The coordinator's words, made fit for a record: a name that is not UTF-8 must not stop
  // the site from joining.
  RETURN_IF_ERROR(
      Append(FederationJoined(RecordText(reply.federation(), 256), RecordText(reply.site(), 256),
                              RecordText(reply.coordinator_country(), 16))));
  joined_ = std::move(joined);
  return absl::OkStatus();
}

Status EgressRecorder::Outcome(const char* type, uint64_t round, const std::string& sha256,
                               const Status& sent) const {
  if (sent.ok() || ledger_ == nullptr) return sent;
  auto recorded = ledger_->Append(
      SendFailed(type, static_cast<int64_t>(round), sha256, std::string(sent.message())));
  if (!recorded.ok()) spdlog::error("egress ledger: {}", recorded.status().message());
  return sent;
}

Status EgressRecorder::Append(const AuditEvent& event) const {
  if (ledger_ == nullptr) return absl::OkStatus();
  return Annotate(ledger_->Append(event).status(), "egress ledger");
}

Status RecordSendCutShort(const std::string& path, const EgressRecorder& egress) {
  if (egress.ledger() == nullptr || egress.ledger()->size() == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<AuditRecord> records, ReadAuditRecordsUnverified(path));
  if (records.empty() || records.back().event != audit_events::kMessageSent) {
    return absl::OkStatus();
  }
  const nlohmann::json& f = records.back().fields;
  const std::string type = f.value("type", "");
  return egress.Append(
      SendFailed(type, f.value("round", int64_t{0}), f.value("sha256", ""),
                 absl::StrCat("the site stopped before it knew whether this ", type, " arrived")));
}

}  // namespace hansa
