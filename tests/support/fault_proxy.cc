#include "tests/support/fault_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"

namespace hansa::testing {
namespace {

constexpr int kPollMs = 20;  // how often a blocked thread looks at stop, aborts and stalls
constexpr size_t kChunkBytes = 16 << 10;

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

void Tune(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// Closing a socket with a zero linger time sends RST instead of FIN.
void ResetOnClose(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

// Bytes the kernel still holds for `fd`'s peer (not yet acknowledged).
int Unacknowledged(int fd) {
  int pending = 0;
  return ::ioctl(fd, SIOCOUTQ, &pending) == 0 ? pending : 0;
}

}  // namespace

struct FaultProxy::Connection {
  int fd[2] = {-1, -1};  // by Direction: the socket that direction writes to
  bool aborted = false;
  bool silent = false;
  bool half_closed[2] = {false, false};
  bool done[2] = {false, false};
  absl::Time stalled_until = absl::InfinitePast();
  std::thread threads[2];

  int source(Direction d) const { return fd[1 - static_cast<int>(d)]; }
  int sink(Direction d) const { return fd[static_cast<int>(d)]; }
};

StatusOr<std::unique_ptr<FaultProxy>> FaultProxy::Start(int target_port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr = Loopback(0);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(
        absl::StrCat("fault proxy cannot listen on 127.0.0.1: ", std::strerror(err)));
  }
  return std::unique_ptr<FaultProxy>(new FaultProxy(fd, ntohs(addr.sin_port), target_port));
}

FaultProxy::FaultProxy(int listen_fd, int port, int target_port)
    : listen_fd_(listen_fd), port_(port), target_port_(target_port) {
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

FaultProxy::~FaultProxy() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  acceptor_.join();
  ::close(listen_fd_);
  // No thread adds connections any more; each connection's threads end within kPollMs.
  std::list<std::unique_ptr<Connection>> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  for (auto& c : connections) {
    for (std::thread& t : c->threads) t.join();
  }
}

void FaultProxy::SetLatency(absl::Duration per_chunk) {
  absl::MutexLock lock(&mu_);
  latency_ = per_chunk;
}

void FaultProxy::SetBandwidth(int64_t bytes_per_second) {
  absl::MutexLock lock(&mu_);
  bytes_per_second_ = bytes_per_second;
}

void FaultProxy::Arm(const Fault& fault) {
  absl::MutexLock lock(&mu_);
  armed_.push_back({fault, fault.after_bytes});
}

void FaultProxy::ReleaseStalls() {
  absl::MutexLock lock(&mu_);
  for (auto& c : connections_) c->stalled_until = absl::InfinitePast();
}

void FaultProxy::Silence() {
  absl::MutexLock lock(&mu_);
  for (auto& c : connections_) Silence(c.get());
}

void FaultProxy::Silence(Connection* c) {
  if (c->silent || c->aborted) return;
  c->silent = true;
  ++stats_.silenced_connections;
}

ProxyStats FaultProxy::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

bool FaultProxy::WaitForFaults(int64_t faults, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto fired = [this, faults]()
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stats_.faults_fired >= faults; };
  return mu_.AwaitWithTimeout(absl::Condition(&fired), timeout);
}

bool FaultProxy::stopping() const {
  absl::MutexLock lock(&mu_);
  return stop_;
}

void FaultProxy::AcceptLoop() {
  while (!stopping()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, kPollMs) <= 0) continue;
    int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in target = Loopback(target_port_);
    if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0) {
      // Nothing listens there: the client sees a refused connection, as it would directly.
      ResetOnClose(client);
      ::close(client);
      if (server >= 0) ::close(server);
      continue;
    }
    Tune(client);
    Tune(server);
    auto c = std::make_unique<Connection>();
    c->fd[static_cast<int>(Direction::kToServer)] = server;
    c->fd[static_cast<int>(Direction::kToClient)] = client;
    Connection* raw = c.get();
    absl::MutexLock lock(&mu_);
    ++stats_.connections;
    ++stats_.open_connections;
    connections_.push_back(std::move(c));
    raw->threads[0] = std::thread([this, raw] { Forward(raw, Direction::kToServer); });
    raw->threads[1] = std::thread([this, raw] { Forward(raw, Direction::kToClient); });
  }
}

void FaultProxy::Forward(Connection* c, Direction d) {
  char buf[kChunkBytes];
  const int from = c->source(d);
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_ || c->aborted) break;
    }
    pollfd p{from, POLLIN, 0};
    if (::poll(&p, 1, kPollMs) <= 0) continue;
    ssize_t n = ::recv(from, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {  // reset by the peer: reset the other side too, unless it hears nothing
      absl::MutexLock lock(&mu_);
      if (!c->silent) Abort(c);
      break;
    }
    if (n == 0) {  // end of stream: pass it on, the other direction may go on
      absl::MutexLock lock(&mu_);
      if (!c->aborted && !c->half_closed[static_cast<int>(d)] && !c->silent) {
        ::shutdown(c->sink(d), SHUT_WR);
      }
      break;
    }
    if (!Deliver(c, d, buf, static_cast<size_t>(n))) break;
  }
  Finished(c, d);
}

bool FaultProxy::Deliver(Connection* c, Direction d, const char* data, size_t n) {
  const int i = static_cast<int>(d);
  absl::Duration latency;
  {
    absl::MutexLock lock(&mu_);
    latency = latency_;
  }
  const absl::Time send_at = absl::Now() + latency;
  for (size_t off = 0;;) {
    std::optional<Fault> due;
    size_t take = n - off;
    int64_t bytes_per_second = 0;
    {
      absl::MutexLock lock(&mu_);
      if (stop_ || c->aborted) return false;
      if (c->half_closed[i] || c->silent) {
        stats_.dropped_bytes += static_cast<int64_t>(n - off);
        return true;
      }
      for (auto it = armed_.begin(); it != armed_.end(); ++it) {
        if (it->fault.direction != d) continue;
        if (it->remaining == 0) {
          due = it->fault;
          armed_.erase(it);
          break;
        }
        take = std::min<size_t>(take, static_cast<size_t>(it->remaining));
      }
      if (!due && off == n) return true;
      if (!due) {
        for (Armed& a : armed_) {
          if (a.fault.direction == d) a.remaining -= static_cast<int64_t>(take);
        }
        stats_.bytes[i] += static_cast<int64_t>(take);
        bytes_per_second = bytes_per_second_;
      }
    }
    if (due) {
      if (due->kind == Fault::kReset) {
        // What passed before the fault reaches the peer first: wait for its acknowledgement.
        const absl::Time until = absl::Now() + absl::Seconds(2);
        while (Unacknowledged(c->sink(d)) > 0 && absl::Now() < until) {
          absl::SleepFor(absl::Milliseconds(1));
        }
      }
      absl::MutexLock lock(&mu_);
      ++stats_.faults_fired;
      switch (due->kind) {
        case Fault::kReset:
          Abort(c);
          return false;
        case Fault::kStall:
          c->stalled_until = absl::Now() + due->stall;
          break;
        case Fault::kHalfClose:
          if (!c->aborted) ::shutdown(c->sink(d), SHUT_WR);
          c->half_closed[i] = true;
          break;
        case Fault::kSilence:
          Silence(c);
          break;
      }
      continue;
    }
    // Latency holds the chunk once; the bandwidth limit spaces its slices.
    while (absl::Now() < send_at) {
      if (stopping()) return false;
      absl::SleepFor(std::min(send_at - absl::Now(), absl::Milliseconds(kPollMs)));
    }
    if (bytes_per_second > 0) {
      absl::SleepFor(absl::Seconds(static_cast<double>(take) / bytes_per_second));
    }
    WaitWhileStalled(c);
    {
      absl::MutexLock lock(&mu_);
      if (c->silent) {  // since the slice was taken: it is dropped, not forwarded
        stats_.bytes[i] -= static_cast<int64_t>(take);
        stats_.dropped_bytes += static_cast<int64_t>(n - off);
        return true;
      }
    }
    for (size_t sent = 0; sent < take;) {
      ssize_t w = ::send(c->sink(d), data + off + sent, take - sent, MSG_NOSIGNAL);
      if (w > 0) {
        sent += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && (errno == EAGAIN || errno == EINTR)) {  // the receiver reads slower
        {
          absl::MutexLock lock(&mu_);
          if (stop_ || c->aborted) return false;
          if (c->silent) return true;
        }
        pollfd p{c->sink(d), POLLOUT, 0};
        ::poll(&p, 1, kPollMs);
        continue;
      }
      absl::MutexLock lock(&mu_);  // the receiver is gone: so is the connection
      if (c->silent) return true;
      Abort(c);
      return false;
    }
    off += take;
  }
}

void FaultProxy::WaitWhileStalled(Connection* c) {
  for (;;) {
    absl::Time until;
    {
      absl::MutexLock lock(&mu_);
      if (stop_ || c->aborted || c->silent) return;
      until = c->stalled_until;
    }
    const absl::Time now = absl::Now();
    if (now >= until) return;
    absl::SleepFor(std::min(until - now, absl::Milliseconds(kPollMs)));
  }
}

void FaultProxy::Abort(Connection* c) {
  if (c->aborted) return;
  c->aborted = true;
  // The sockets close (with RST) in Finished, once neither thread uses them.
  ResetOnClose(c->fd[0]);
  ResetOnClose(c->fd[1]);
}

void FaultProxy::Finished(Connection* c, Direction d) {
  absl::MutexLock lock(&mu_);
  c->done[static_cast<int>(d)] = true;
  if (!c->done[0] || !c->done[1]) return;
  ::close(c->fd[0]);
  ::close(c->fd[1]);
  c->fd[0] = c->fd[1] = -1;
  --stats_.open_connections;
}

}  // namespace hansa::testing
