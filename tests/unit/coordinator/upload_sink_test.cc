// UploadSink and RoundUploads with a fake owner: what a sink asks of the round as it goes.
#include "coordinator/upload_sink.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/crypto/sha256.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

// Keeps every byte folded; counts the owner's calls.
class KeepingFolder : public UpdateFolder {
 public:
  explicit KeepingFolder(std::string* kept) : kept_(kept) {}
  Status Fold(std::string_view bytes) override {
    kept_->append(bytes);
    return absl::OkStatus();
  }
  Status Complete() override { return absl::OkStatus(); }
  Status Commit() override { return absl::OkStatus(); }
  void Abort() override { kept_->clear(); }

 private:
  std::string* kept_;
};

class FakeOwner : public UploadOwner {
 public:
  Status CommitUpload(UploadSink* sink, uint64_t) override {
    return uploads.Commit(sink, true, 1, [](const UploadSink&) { return absl::OkStatus(); });
  }
  void Unregister(UploadSink* sink) override {
    ++unregistered;
    uploads.Unregister(sink);
  }
  RoundUploads uploads;
  int unregistered = 0;
};

v1::TransferHeader HeaderOf(const std::string& payload) {
  v1::TransferHeader header;
  header.set_round(1);
  header.set_total_bytes(payload.size());
  header.set_sha256(ToHex(Sha256(payload)));
  return header;
}

// A committed sink leaves the round's list at its commit, under the round's lock; going away
// afterwards needs nothing of the owner (whose lock the server step may hold for seconds).
TEST(UploadSinkTest, ACommittedSinkGoesAwayWithoutTheOwner) {
  FakeOwner owner;
  std::string kept;
  const std::string payload = "0123456789abcdef";
  auto sink = owner.uploads.Open(&owner, "a", 1, 1, HeaderOf(payload), 8,
                                 std::make_unique<KeepingFolder>(&kept));
  EXPECT_TRUE(owner.uploads.InProgress("a", 1));
  ASSERT_TRUE(sink->Write(0, {std::string_view(payload).substr(0, 3),
                              std::string_view(payload).substr(3, 5)})
                  .ok());
  ASSERT_TRUE(sink->Write(8, std::string_view(payload).substr(8)).ok());
  auto reply = sink->Finish();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(kept, payload);
  EXPECT_FALSE(owner.uploads.InProgress("a", 1));
  EXPECT_TRUE(owner.uploads.Committed("a"));
  sink.reset();
  EXPECT_EQ(owner.unregistered, 0);
}

TEST(UploadSinkTest, AnUnfinishedSinkUnregistersAndWithdrawsWhatItFolded) {
  FakeOwner owner;
  std::string kept;
  const std::string payload = "0123456789abcdef";
  auto sink = owner.uploads.Open(&owner, "a", 1, 1, HeaderOf(payload), 8,
                                 std::make_unique<KeepingFolder>(&kept));
  ASSERT_TRUE(sink->Write(0, std::string_view(payload).substr(0, 8)).ok());
  // Pieces of a chunk count as one chunk against the cap.
  Status over = sink->Write(8, {std::string_view(payload).substr(8, 5), std::string_view("xxxx")});
  EXPECT_EQ(over.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(over.message()), HasSubstr("chunk of 9 bytes exceeds the cap of 8"));
  sink.reset();
  EXPECT_EQ(owner.unregistered, 1);
  EXPECT_FALSE(owner.uploads.InProgress("a", 1));
  EXPECT_TRUE(kept.empty());
}

}  // namespace
}  // namespace hansa
