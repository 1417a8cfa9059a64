// hansa doctor SITE_TOML: the site machine's checks (client/doctor.h), one line each with OK,
// WARN or FAIL and what to fix. Exit status 1 when any check failed.
#include <stdlib.h>

#include <cstdio>
#include <memory>
#include <string>

#include "client/doctor.h"
#include "tools/command.h"

namespace hansa::tools {
namespace {

struct DoctorFlags {
  std::string site_toml;
  double timeout_seconds = 10;
};

void RunDoctorCommand(const DoctorFlags& flags) {
  // Each failure is stated by the doctor itself; gRPC's own log lines would only repeat
  // "handshake failed" between them. GRPC_VERBOSITY=ERROR in the environment shows them.
  setenv("GRPC_VERBOSITY", "NONE", /*overwrite=*/0);
  DoctorOptions options;
  options.network_timeout = absl::Seconds(flags.timeout_seconds);
  const std::vector<CheckResult> results = RunDoctor(flags.site_toml, options);
  for (const CheckResult& r : results) std::fputs(FormatCheck(r).c_str(), stdout);
  const bool failed = AnyFailed(results);
  std::printf("%s\n", failed ? "hansa doctor: some checks FAILED (see fix: lines above)"
                             : "hansa doctor: no check failed");
  std::fflush(stdout);
  if (failed) throw CLI::RuntimeError(1);
}

void AddDoctorCommand(CLI::App& root) {
  auto flags = std::make_shared<DoctorFlags>();
  CLI::App* doctor = root.add_subcommand(
      "doctor",
      "Check a site from its own machine: site.toml parses; the certificate is readable, "
      "issued by the federation CA, valid, not expiring within 30 days, allowed for TLS client "
      "authentication and matches the key (mode 0600); the data files exist and their headers "
      "read; the clock lies within the certificates' validity and is synchronised; the "
      "coordinator's name resolves; a TCP route reaches it (directly or by HTTP CONNECT through "
      "[network] proxy or https_proxy/grpc_proxy); a mutual TLS 1.3 handshake passes the pinned "
      "fingerprint. The doctor never joins the federation: it sends no call over the "
      "connection, so the coordinator's audit log holds no trace of it. Exit status 1 when a "
      "check FAILs (WARNs do not). gRPC's own log lines are off unless GRPC_VERBOSITY is set.");
  doctor->add_option("site_toml", flags->site_toml, "the site's site.toml")->required();
  doctor
      ->add_option("--timeout", flags->timeout_seconds,
                   "seconds for each network step (TCP connection, proxy answer, TLS handshake)")
      ->check(CLI::Range(1.0, 300.0));
  doctor->callback([flags] { RunDoctorCommand(*flags); });
}

HANSA_REGISTER_COMMAND(AddDoctorCommand);

}  // namespace
}  // namespace hansa::tools
