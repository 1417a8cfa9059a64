// Enrollment, the participant's side: make a key and a signing request that go nowhere but the
// request to the operator, then install the certificate the operator sends back.
//
// An enrollment folder (`hansa enroll --out DIR`):
//   key.pem (0600)         made here, never leaves this machine
//   request.csr            sent to the federation operator (public)
//   cert.pem, ca.pem       installed from the operator's reply
//   site.toml              (a site) template with the coordinator's address and pinned
//                          fingerprint; an existing one keeps everything but those two lines
//   coordinator.toml       (the coordinator) template, when there is none yet
//   crl.pem                (the coordinator) the CA's revocation list, from the reply
// And what the operator sends back (`hansa ca sign --out REPLY_DIR`, see ca_registry.h):
//   cert.pem, ca.pem, coordinator.sha256, coordinator.address, and crl.pem in a coordinator's
//   reply: public material only.
//
// Functions only; any thread may call them, but not two on the same folder at once.
#pragma once

#include <string>
#include <vector>

#include "common/pki/ca_registry.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "common/pki/signing_request.h"
#include "common/status/status.h"

namespace hansa {

struct EnrollRequest {
  std::string out_dir;
  ParticipantRole role = ParticipantRole::kSite;
  SubjectName subject;             // CN = the participant's name
  std::vector<std::string> hosts;  // a coordinator's DNS names / IPs
  KeyType key_type = KeyType::kEd25519;
};

struct Enrollment {
  std::string key_path;
  std::string request_path;
  SigningRequest request;
};

// Validates, makes the key and request, writes DIR/key.pem (0600) and DIR/request.csr.
// FailedPrecondition when DIR already holds a key.pem (an enrolled participant renews through
// the operator, `hansa ca renew`, and keeps its key).
StatusOr<Enrollment> Enroll(const EnrollRequest& request);

// Writes the operator's reply: REPLY_DIR/cert.pem, ca.pem, coordinator.sha256 and
// coordinator.address when the registry knows a coordinator, and crl.pem when `issued` is a
// coordinator's. Returns the files written.
StatusOr<std::vector<std::string>> WriteReply(const std::string& reply_dir,
                                              const CaRegistry& registry,
                                              const Certificate& issued);

struct AcceptOptions {
  std::string dir;        // the enrollment folder (holds key.pem)
  std::string reply_dir;  // the operator's reply
  // Overrides the reply's coordinator.address (a site) / the listen address (the coordinator).
  std::string coordinator_address;
  std::string dataset_dir = "/usr/share/datasets/fashion-mnist";
};

struct Accepted {
  ParticipantRole role = ParticipantRole::kSite;
  Certificate certificate;
  std::string config_path;  // site.toml or coordinator.toml
  bool config_created = false;
  std::string coordinator_fingerprint;  // a site's pin
};

// Checks that the reply's certificate is the CA's (signature, validity), belongs to DIR's key,
// and, when DIR already holds a ca.pem, that the reply names the same CA; then installs
// cert.pem and ca.pem (and a coordinator's crl.pem, once its CA signature verifies) and writes
// or updates the config. PermissionDenied for a certificate
// of another key or CA; InvalidArgument for a site reply without coordinator.sha256 or an
// address.
StatusOr<Accepted> AcceptReply(const AcceptOptions& options);

}  // namespace hansa
