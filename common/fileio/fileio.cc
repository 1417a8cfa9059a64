#include "common/fileio/fileio.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

namespace hansa {

Status ErrnoStatus(const char* what, const std::string& path) {
  int err = errno;
  std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

namespace {

// The injected fault: `armed` is the fast path; the rest under `mu`.
struct Injection {
  std::atomic<bool> armed{false};
  std::mutex mu;
  FileFault fault;
  int64_t seen = 0;
  int64_t failed = 0;
};

Injection& TheInjection() {
  static Injection* injection = new Injection;  // never destroyed: used until exit
  return *injection;
}

// The errno the injected fault fails this call with, or 0.
int InjectedError(FileOp op, const std::string& path) {
  Injection& in = TheInjection();
  if (!in.armed.load(std::memory_order_acquire)) return 0;
  std::lock_guard<std::mutex> lock(in.mu);
  const FileFault& f = in.fault;
  if (f.op != op || path.find(f.path_contains) == std::string::npos) return 0;
  const int64_t n = in.seen++;
  if (n < f.skip || (n > f.skip && !f.sticky)) return 0;
  ++in.failed;
  return f.error;
}

// False with errno set on an error.
bool WriteLoop(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

Status Sync(int fd, const std::string& path, const char* what) {
  if (int injected = InjectedError(FileOp::kSync, path); injected != 0) {
    errno = injected;
    return MarkStorageError(ErrnoStatus(what, path));
  }
  if (::fsync(fd) != 0) return MarkStorageError(ErrnoStatus(what, path));
  return absl::OkStatus();
}

}  // namespace

void InjectFileFault(FileFault fault) {
  Injection& in = TheInjection();
  std::lock_guard<std::mutex> lock(in.mu);
  in.fault = std::move(fault);
  in.seen = 0;
  in.failed = 0;
  in.armed.store(true, std::memory_order_release);
}

void ClearFileFault() {
  Injection& in = TheInjection();
  std::lock_guard<std::mutex> lock(in.mu);
  in.armed.store(false, std::memory_order_release);
}

int64_t InjectedFileFailures() {
  Injection& in = TheInjection();
  std::lock_guard<std::mutex> lock(in.mu);
  return in.failed;
}

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  if (int injected = InjectedError(FileOp::kWrite, path); injected != 0) {
    WriteLoop(fd, bytes.substr(0, bytes.size() / 2));
    errno = injected;
    return MarkStorageError(ErrnoStatus("writing", path));
  }
  if (!WriteLoop(fd, bytes)) return MarkStorageError(ErrnoStatus("writing", path));
  return absl::OkStatus();
}

Status SyncFile(int fd, const std::string& path) { return Sync(fd, path, "fsync of"); }

Status SyncDir(const std::string& dir) {
  const std::string name = dir.empty() ? "." : dir;
  Fd fd(::open(name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("opening directory", name);
  return Sync(fd.get(), name, "fsync of directory");
}

Status WriteFileAtomically(const std::string& path, std::string_view bytes, int mode) {
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (fd.get() < 0) return MarkStorageError(ErrnoStatus("creating", tmp));
  ::fchmod(fd.get(), mode);
  // The temporary file goes on any error, so a full disk is not kept full by it.
  Status st = WriteAll(fd.get(), bytes, tmp);
  if (st.ok()) st = SyncFile(fd.get(), tmp);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  ::close(fd.Release());
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = MarkStorageError(ErrnoStatus("renaming into place", path));
    ::unlink(tmp.c_str());
    return st;
  }
  return SyncDir(std::filesystem::path(path).parent_path().string());
}

StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("opening", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat of", path);
  if (static_cast<size_t>(st.st_size) > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is ", st.st_size, " bytes, more than the limit of ", max_bytes));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("reading", path);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

Status MakeDirs(const std::string& path, int mode) {
  std::error_code ec;
  std::filesystem::path p(path);
  if (std::filesystem::is_directory(p, ec)) return absl::OkStatus();
  std::filesystem::path partial;
  for (const auto& part : p) {
    partial /= part;
    if (partial.empty() || std::filesystem::is_directory(partial, ec)) continue;
    if (::mkdir(partial.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST) {
      return MarkStorageError(ErrnoStatus("creating directory", partial.string()));
    }
  }
  return absl::OkStatus();
}

}  // namespace hansa
