#include "coordinator/state_store.h"

#include <sqlite3.h>

#include <cstring>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace hansa {
namespace {

// SQLite's last error on `db`, naming the database file and, for an I/O error or a full disk,
// the operating system's errno text; SQLITE_FULL is ResourceExhausted.
Status SqliteError(sqlite3* db) {
  const char* file = sqlite3_db_filename(db, "main");
  std::string msg =
      absl::StrCat("state database ", file ? file : "(unnamed)", ": ", sqlite3_errmsg(db));
  const int code = sqlite3_errcode(db);
  const int os = sqlite3_system_errno(db);
  if ((code == SQLITE_IOERR || code == SQLITE_FULL || code == SQLITE_CANTOPEN) && os != 0) {
    absl::StrAppend(&msg, " (", std::strerror(os), ")");
  }
  if (code == SQLITE_FULL) return MarkStorageError(absl::ResourceExhaustedError(msg));
  if (code == SQLITE_IOERR) return MarkStorageError(absl::InternalError(msg));
  return absl::InternalError(msg);
}

// RAII for a prepared statement.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Status status() const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return SqliteError(db_);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int Step() { return sqlite3_step(stmt_); }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) { return sqlite3_column_double(stmt_, col); }
  bool IsNull(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

Status StepDone(sqlite3* db, Stmt& stmt) {
  RETURN_IF_ERROR(stmt.status());
  int rc = stmt.Step();
  if (rc != SQLITE_DONE) return SqliteError(db);
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::InternalError(absl::StrCat("opening state database ", path, ": ", msg));
  }
  std::unique_ptr<StateStore> store(new StateStore(db));
  sqlite3_busy_timeout(db, 5000);
  RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL"));
  RETURN_IF_ERROR(store->Exec(
      "CREATE TABLE IF NOT EXISTS rounds ("
      " round INTEGER PRIMARY KEY, model_sha256 TEXT NOT NULL, checkpoint TEXT NOT NULL,"
      " sites TEXT NOT NULL, examples INTEGER NOT NULL, bytes_up INTEGER NOT NULL,"
      " bytes_down INTEGER NOT NULL, seconds REAL NOT NULL, metrics TEXT)"));
  RETURN_IF_ERROR(
      store->Exec("CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL)"));
  return store;
}

StateStore::~StateStore() { sqlite3_close(db_); }

Status StateStore::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);
    Status st = SqliteError(db_);
    return Status(st.code(), absl::StrCat(st.message(), " in: ", sql));
  }
  return absl::OkStatus();
}

Status StateStore::RecordRound(const RoundRecord& r) {
  Stmt stmt(db_,
            "INSERT OR REPLACE INTO rounds (round, model_sha256, checkpoint, sites, examples,"
            " bytes_up, bytes_down, seconds, metrics) VALUES (?,?,?,?,?,?,?,?,NULL)");
  stmt.Bind(1, r.round);
  stmt.Bind(2, r.model_sha256);
  stmt.Bind(3, r.checkpoint);
  stmt.Bind(4, absl::StrJoin(r.sites, ","));
  stmt.Bind(5, r.examples);
  stmt.Bind(6, r.bytes_up);
  stmt.Bind(7, r.bytes_down);
  stmt.Bind(8, r.seconds);
  return StepDone(db_, stmt);
}

Status StateStore::RecordMetrics(int64_t round, const std::string& metrics_json) {
  Stmt stmt(db_, "UPDATE rounds SET metrics = ? WHERE round = ?");
  stmt.Bind(1, metrics_json);
  stmt.Bind(2, round);
  RETURN_IF_ERROR(StepDone(db_, stmt));
  if (sqlite3_changes(db_) != 1) {
    return absl::FailedPreconditionError(absl::StrCat("round ", round, " was never recorded"));
  }
  return absl::OkStatus();
}

StatusOr<std::optional<RoundRecord>> StateStore::LastRound() {
  Stmt stmt(db_,
            "SELECT round, model_sha256, checkpoint, sites, examples, bytes_up, bytes_down,"
            " seconds, metrics FROM rounds ORDER BY round DESC LIMIT 1");
  RETURN_IF_ERROR(stmt.status());
  int rc = stmt.Step();
  if (rc == SQLITE_DONE) return std::optional<RoundRecord>();
  if (rc != SQLITE_ROW) return SqliteError(db_);
  RoundRecord r;
  r.round = stmt.Int(0);
  r.model_sha256 = stmt.Text(1);
  r.checkpoint = stmt.Text(2);
  std::string sites = stmt.Text(3);
  if (!sites.empty()) r.sites = absl::StrSplit(sites, ',');
  r.examples = stmt.Int(4);
  r.bytes_up = stmt.Int(5);
  r.bytes_down = stmt.Int(6);
  r.seconds = stmt.Double(7);
  if (!stmt.IsNull(8)) r.metrics_json = stmt.Text(8);
  return std::optional<RoundRecord>(std::move(r));
}

StatusOr<std::vector<std::string>> StateStore::AllMetrics() {
  Stmt stmt(db_, "SELECT metrics FROM rounds WHERE metrics IS NOT NULL ORDER BY round");
  RETURN_IF_ERROR(stmt.status());
  std::vector<std::string> out;
  int rc;
  while ((rc = stmt.Step()) == SQLITE_ROW) out.push_back(stmt.Text(0));
  if (rc != SQLITE_DONE) return SqliteError(db_);
  return out;
}

Status StateStore::Put(const std::string& key, const std::string& value) {
  Stmt stmt(db_, "INSERT OR REPLACE INTO facts (key, value) VALUES (?, ?)");
  stmt.Bind(1, key);
  stmt.Bind(2, value);
  return StepDone(db_, stmt);
}

StatusOr<std::optional<std::string>> StateStore::Get(const std::string& key) {
  Stmt stmt(db_, "SELECT value FROM facts WHERE key = ?");
  stmt.Bind(1, key);
  RETURN_IF_ERROR(stmt.status());
  int rc = stmt.Step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return SqliteError(db_);
  return std::optional<std::string>(stmt.Text(0));
}

}  // namespace hansa
