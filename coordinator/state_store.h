// The coordinator's durable state in SQLite (WAL): which rounds completed, with which model,
// and their metrics. After a crash the coordinator resumes from the last completed round.
// Thread-compatible: the round engine's driver thread is the only caller.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status/status.h"

struct sqlite3;

namespace hansa {

struct RoundRecord {
  int64_t round = 0;
  std::string model_sha256;
  std::string checkpoint;  // path of round-NNNN.safetensors
  std::vector<std::string> sites;
  int64_t examples = 0;
  int64_t bytes_up = 0;
  int64_t bytes_down = 0;
  double seconds = 0;
  // Filled in after evaluation; absent until then.
  std::optional<std::string> metrics_json;
};

class StateStore {
 public:
  static StatusOr<std::unique_ptr<StateStore>> Open(const std::string& path);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Records a completed (aggregated and checkpointed) round.
  Status RecordRound(const RoundRecord& record);
  // Adds the evaluation metrics line of a completed round.
  Status RecordMetrics(int64_t round, const std::string& metrics_json);
  // The last completed round, if any.
  StatusOr<std::optional<RoundRecord>> LastRound();
  // Every metrics line, in round order (to rebuild metrics.jsonl).
  StatusOr<std::vector<std::string>> AllMetrics();
  // Free-form key/value for small facts (federation id, start time).
  Status Put(const std::string& key, const std::string& value);
  StatusOr<std::optional<std::string>> Get(const std::string& key);

 private:
  explicit StateStore(sqlite3* db) : db_(db) {}
  Status Exec(const std::string& sql);
  sqlite3* db_;
};

}  // namespace hansa
