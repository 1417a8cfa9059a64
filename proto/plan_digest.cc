#include "proto/plan_digest.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "common/crypto/sha256.h"

namespace hansa {

std::string PlanSha256(const v1::RoundPlan& plan) {
  v1::RoundPlan copy = plan;
  copy.clear_upload_deadline_unix_ms();
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    copy.SerializeToCodedStream(&coded);
  }
  return ToHex(Sha256(bytes));
}

}  // namespace hansa
