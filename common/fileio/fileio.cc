#include "common/fileio/fileio.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace hansa {
namespace {

Status ErrnoError(const char* what, const std::string& path) {
  int err = errno;
  std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
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

}  // namespace

Status SyncDir(const std::string& dir) {
  Fd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError("opening directory", dir);
  if (::fsync(fd.get()) != 0) return ErrnoError("fsync of directory", dir);
  return absl::OkStatus();
}

Status WriteFileAtomically(const std::string& path, std::string_view bytes, int mode) {
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (fd.get() < 0) return ErrnoError("creating", tmp);
  ::fchmod(fd.get(), mode);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status st = ErrnoError("writing", tmp);
      ::unlink(tmp.c_str());
      return st;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    Status st = ErrnoError("fsync of", tmp);
    ::unlink(tmp.c_str());
    return st;
  }
  ::close(fd.Release());
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = ErrnoError("renaming into place", path);
    ::unlink(tmp.c_str());
    return st;
  }
  return SyncDir(std::filesystem::path(path).parent_path().string());
}

StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError("opening", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("stat of", path);
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
      return ErrnoError("reading", path);
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
      return ErrnoError("creating directory", partial.string());
    }
  }
  return absl::OkStatus();
}

}  // namespace hansa
