// A whole SecAgg+ round in one thread: the coordinator's session and every site's, with the
// messages handed over directly. For tests and benchmarks that need sites in a given stage
// (say, masking) and the coordinator's result, without a transport. Honest-but-curious mode,
// no dropouts: the protocol tests drive those stage by stage themselves.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/secagg/client.h"
#include "common/secagg/server.h"
#include "common/status/status.h"

namespace hansa {

class LocalRound {
 public:
  // Sessions for params.num_sites sites; InvalidArgument for parameters the sessions refuse.
  static StatusOr<LocalRound> Create(const SecAggParams& params);

  ClientSession& site(SiteId id) { return *sites_[id - 1]; }
  ServerSession& server() { return *server_; }

  // Advertises and shares keys; every site is then in its masking stage.
  Status ExchangeKeys();
  // One site's masked input, as the serialized chunks it would upload.
  Status Upload(const std::vector<std::string>& chunks);
  // Closes the masked input and unmasks with every site's help: the coordinator's result,
  // the masks removed by `apply` (ServerSession::Finish).
  StatusOr<SecAggResult> Unmask(const ServerSession::MaskApplier& apply = ApplyMasksOnCpu);

 private:
  LocalRound() = default;
  std::unique_ptr<ServerSession> server_;
  std::vector<std::unique_ptr<ClientSession>> sites_;
};

}  // namespace hansa
