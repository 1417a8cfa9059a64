// A fault-injecting TCP proxy on loopback, for tests of real processes: it listens on
// 127.0.0.1 (a port of its own) and forwards every connection to 127.0.0.1:target_port, byte
// for byte, so TLS passes through untouched and mutual TLS stays end to end. Faults switch on
// and off while connections run: latency added to each chunk, a bandwidth limit, one-shot
// faults that fire after a given number of bytes in one direction (a reset, a stall of the
// connection, a half-close of that direction, silence), and silence of every open connection at
// once. It counts connections and bytes.
//
// Threading: every method may be called from any thread. The proxy owns an accepting thread
// and two forwarding threads per connection (one per direction); the destructor stops them,
// closes every socket and joins them. A chunk is what one read() returned (at most 16 KiB).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/status/status.h"

namespace hansa::testing {

enum class Direction {
  kToServer = 0,  // from the connecting client (a site) to the target (the coordinator)
  kToClient = 1,  // back
};

// A fault that fires once, on the connection that carries the after_bytes-th byte in
// `direction` counted from Arm() over all connections; exactly after_bytes bytes pass first.
struct Fault {
  enum Kind {
    kReset,      // both sides of the connection are reset (RST), as a middlebox that lost it
    kStall,      // the connection forwards nothing either way for `stall`, then resumes
    kHalfClose,  // `direction` is closed (its receiver reads end of stream) and whatever its
                 // sender sends after is dropped; the other direction keeps flowing
    kSilence,    // the connection goes silent both ways for good (see Silence)
  };
  Kind kind = kReset;
  Direction direction = Direction::kToServer;
  int64_t after_bytes = 0;
  absl::Duration stall = absl::ZeroDuration();
};

struct ProxyStats {
  int64_t connections = 0;       // accepted
  int64_t open_connections = 0;  // not yet closed on both sides
  int64_t bytes[2] = {0, 0};     // forwarded, by Direction
  int64_t dropped_bytes = 0;     // read after a half-close or silence and not forwarded
  int64_t faults_fired = 0;
  int64_t silenced_connections = 0;
};

class FaultProxy {
 public:
  // Listens on 127.0.0.1:0 and forwards to 127.0.0.1:target_port (connected per accepted
  // connection; a refused connect closes the client's). Internal error when it cannot listen.
  static StatusOr<std::unique_ptr<FaultProxy>> Start(int target_port);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }

  // Each chunk waits `per_chunk` before it is forwarded (zero: none).
  void SetLatency(absl::Duration per_chunk);
  // Each direction of each connection forwards at most this many bytes a second (0: no limit).
  void SetBandwidth(int64_t bytes_per_second);
  // Adds a one-shot fault. REQUIRES: after_bytes >= 0; a stall's duration > 0 (it may be
  // absl::InfiniteDuration(): until ReleaseStalls).
  void Arm(const Fault& fault);
  // Ends every stall now.
  void ReleaseStalls();
  // Every connection open now goes silent both ways for good, as behind a NAT that forgot it or
  // a cable pulled: the proxy keeps both of its TCP connections open and reads and drops every
  // byte from either end, and passes on no end of stream and no reset (an end that closes its
  // side hears nothing back). Only keepalive or a deadline at either end can tell. Connections
  // accepted afterwards pass as usual.
  void Silence();

  ProxyStats stats() const;
  // Waits until `faults` faults have fired; false after `timeout`.
  bool WaitForFaults(int64_t faults, absl::Duration timeout) const;

 private:
  struct Connection;
  struct Armed {
    Fault fault;
    int64_t remaining;
  };

  FaultProxy(int listen_fd, int port, int target_port);
  void AcceptLoop();
  void Forward(Connection* c, Direction d);
  // Writes `n` bytes of `data` from c's side in direction `d` under the faults; false when the
  // connection is gone.
  bool Deliver(Connection* c, Direction d, const char* data, size_t n);
  // Waits out a stall of `c` (or the proxy stopping, or its silence).
  void WaitWhileStalled(Connection* c);
  void Silence(Connection* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fire(Connection* c, const Fault& fault) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Both sides of `c` are reset once its forwarding threads have let go of them.
  void Abort(Connection* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finished(Connection* c, Direction d);
  bool stopping() const;

  const int listen_fd_;
  const int port_;
  const int target_port_;
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration latency_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  int64_t bytes_per_second_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Armed> armed_ ABSL_GUARDED_BY(mu_);
  ProxyStats stats_ ABSL_GUARDED_BY(mu_);
  std::list<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  std::thread acceptor_;
};

}  // namespace hansa::testing
