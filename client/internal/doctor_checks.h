// What the doctor's check files share (client/doctor.h): results and the few phrases each
// check's lines are made of. Internal to client/doctor*.cc. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "client/doctor.h"
#include "common/pki/certificate.h"

namespace hansa::doctor_internal {

CheckResult Ok(std::string check, std::string detail);
CheckResult Warn(std::string check, std::string detail, std::string fix);
CheckResult Fail(std::string check, std::string detail, std::string fix);

// "26.4 MB", "29.5 kB", "12 bytes".
std::string Bytes(uint64_t n);
// Whole days: "364 days".
std::string Days(absl::Duration d);
// A certificate's subject for people: "'alpha' (O=Alpha Hospital, C=DE)".
std::string Who(const Certificate& cert);

}  // namespace hansa::doctor_internal
