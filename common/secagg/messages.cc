#include "common/secagg/messages.h"

#include <cstring>

#include "common/secagg/shamir.h"

namespace hansa {

namespace {

// 2: AdvertiseKeys carries a graph contribution, KeyDirectory the coordinator's graph seed.
constexpr uint8_t kVersion = 2;
enum Tag : uint8_t {
  kAdvertise = 1,
  kDirectory,
  kShareKeys,
  kDelivery,
  kChunk,
  kSurvivors,
  kConsistency,
  kUnmaskRequest,
  kUnmaskResponse
};
constexpr uint32_t kMaxEntries = 1u << 20;

class Writer {
 public:
  Writer(Tag tag) {
    U8(tag);
    U8(kVersion);
  }
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void Raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  void Bytes(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    Raw(s.data(), s.size());
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  Reader(std::string_view in, const char* what) : in_(in), what_(what) {}
  Status Header(Tag tag) {
    uint8_t t = 0, v = 0;
    RETURN_IF_ERROR(U8(&t));
    RETURN_IF_ERROR(U8(&v));
    if (t != tag) return Error(absl::StrCat("wrong message type ", t));
    if (v != kVersion) return Error(absl::StrCat("unsupported version ", v));
    return absl::OkStatus();
  }
  Status U8(uint8_t* v) {
    RETURN_IF_ERROR(Need(1));
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return absl::OkStatus();
  }
  Status U32(uint32_t* v) {
    RETURN_IF_ERROR(Need(4));
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= uint32_t{static_cast<uint8_t>(in_[i])} << (8 * i);
    in_.remove_prefix(4);
    return absl::OkStatus();
  }
  Status U64(uint64_t* v) {
    RETURN_IF_ERROR(Need(8));
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= uint64_t{static_cast<uint8_t>(in_[i])} << (8 * i);
    in_.remove_prefix(8);
    return absl::OkStatus();
  }
  Status Raw(void* p, size_t n) {
    RETURN_IF_ERROR(Need(n));
    std::memcpy(p, in_.data(), n);
    in_.remove_prefix(n);
    return absl::OkStatus();
  }
  Status Bytes(std::string_view* s) {
    uint32_t n = 0;
    RETURN_IF_ERROR(U32(&n));
    RETURN_IF_ERROR(Need(n));
    *s = in_.substr(0, n);
    in_.remove_prefix(n);
    return absl::OkStatus();
  }
  // A count of entries each at least `min_size` bytes long, checked against what is left.
  Status Count(uint32_t* n, size_t min_size) {
    RETURN_IF_ERROR(U32(n));
    if (*n > kMaxEntries || static_cast<uint64_t>(*n) * min_size > in_.size()) {
      return Error(absl::StrCat("entry count ", *n, " does not fit the message"));
    }
    return absl::OkStatus();
  }
  Status Done() {
    if (!in_.empty()) return Error(absl::StrCat(in_.size(), " trailing bytes"));
    return absl::OkStatus();
  }
  Status Error(absl::string_view why) const {
    return absl::InvalidArgumentError(absl::StrCat("malformed SecAgg ", what_, ": ", why));
  }

 private:
  Status Need(size_t n) const {
    if (in_.size() < n) return Error("truncated");
    return absl::OkStatus();
  }
  std::string_view in_;
  const char* what_;
};

void WriteAdvertise(const AdvertiseKeys& m, Writer& w) {
  w.U64(m.round);
  w.U32(m.sender);
  w.Raw(m.encryption_key.data(), m.encryption_key.size());
  w.Raw(m.mask_key.data(), m.mask_key.size());
  w.Raw(m.graph_contribution.data(), m.graph_contribution.size());
  w.U8(m.signature.has_value() ? 1 : 0);
  if (m.signature) w.Raw(m.signature->data(), m.signature->size());
}

Status ReadAdvertise(Reader& r, AdvertiseKeys* m) {
  RETURN_IF_ERROR(r.U64(&m->round));
  RETURN_IF_ERROR(r.U32(&m->sender));
  RETURN_IF_ERROR(r.Raw(m->encryption_key.data(), m->encryption_key.size()));
  RETURN_IF_ERROR(r.Raw(m->mask_key.data(), m->mask_key.size()));
  RETURN_IF_ERROR(r.Raw(m->graph_contribution.data(), m->graph_contribution.size()));
  uint8_t has_sig = 0;
  RETURN_IF_ERROR(r.U8(&has_sig));
  if (has_sig > 1) return r.Error("bad signature flag");
  if (has_sig == 1) {
    Ed25519Signature sig;
    RETURN_IF_ERROR(r.Raw(sig.data(), sig.size()));
    m->signature = sig;
  }
  return absl::OkStatus();
}

void WriteShares(const std::vector<EncryptedShare>& shares, Writer& w) {
  w.U32(static_cast<uint32_t>(shares.size()));
  for (const auto& s : shares) {
    w.U32(s.peer);
    w.Bytes(s.ciphertext);
  }
}

Status ReadShares(Reader& r, std::vector<EncryptedShare>* shares) {
  uint32_t n = 0;
  RETURN_IF_ERROR(r.Count(&n, 8));
  shares->resize(n);
  for (auto& s : *shares) {
    RETURN_IF_ERROR(r.U32(&s.peer));
    std::string_view ct;
    RETURN_IF_ERROR(r.Bytes(&ct));
    s.ciphertext = std::string(ct);
  }
  return absl::OkStatus();
}

void WriteIds(const std::vector<SiteId>& ids, Writer& w) {
  w.U32(static_cast<uint32_t>(ids.size()));
  for (SiteId id : ids) w.U32(id);
}

Status ReadIds(Reader& r, std::vector<SiteId>* ids) {
  uint32_t n = 0;
  RETURN_IF_ERROR(r.Count(&n, 4));
  ids->resize(n);
  for (auto& id : *ids) RETURN_IF_ERROR(r.U32(&id));
  return absl::OkStatus();
}

void WriteConsistency(const ConsistencySignature& m, Writer& w) {
  w.U64(m.round);
  w.U32(m.sender);
  w.Raw(m.signature.data(), m.signature.size());
}

Status ReadConsistency(Reader& r, ConsistencySignature* m) {
  RETURN_IF_ERROR(r.U64(&m->round));
  RETURN_IF_ERROR(r.U32(&m->sender));
  return r.Raw(m->signature.data(), m->signature.size());
}

}  // namespace

std::string AdvertiseKeys::Serialize() const {
  Writer w(kAdvertise);
  WriteAdvertise(*this, w);
  return w.Take();
}

StatusOr<AdvertiseKeys> AdvertiseKeys::Parse(std::string_view bytes) {
  Reader r(bytes, "AdvertiseKeys");
  AdvertiseKeys m;
  RETURN_IF_ERROR(r.Header(kAdvertise));
  RETURN_IF_ERROR(ReadAdvertise(r, &m));
  RETURN_IF_ERROR(r.Done());
  return m;
}

std::string KeyDirectory::Serialize() const {
  Writer w(kDirectory);
  w.U64(round);
  w.U32(static_cast<uint32_t>(entries.size()));
  for (const auto& e : entries) WriteAdvertise(e, w);
  w.Raw(graph_seed.data(), graph_seed.size());
  return w.Take();
}

StatusOr<KeyDirectory> KeyDirectory::Parse(std::string_view bytes) {
  Reader r(bytes, "KeyDirectory");
  KeyDirectory m;
  RETURN_IF_ERROR(r.Header(kDirectory));
  RETURN_IF_ERROR(r.U64(&m.round));
  uint32_t n = 0;
  RETURN_IF_ERROR(r.Count(&n, 109));  // an unsigned entry
  m.entries.resize(n);
  for (auto& e : m.entries) RETURN_IF_ERROR(ReadAdvertise(r, &e));
  RETURN_IF_ERROR(r.Raw(m.graph_seed.data(), m.graph_seed.size()));
  RETURN_IF_ERROR(r.Done());
  return m;
}

std::string ShareKeys::Serialize() const {
  Writer w(kShareKeys);
  w.U64(round);
  w.U32(sender);
  WriteShares(shares, w);
  return w.Take();
}

StatusOr<ShareKeys> ShareKeys::Parse(std::string_view bytes) {
  Reader r(bytes, "ShareKeys");
  ShareKeys m;
  RETURN_IF_ERROR(r.Header(kShareKeys));
  RETURN_IF_ERROR(r.U64(&m.round));
  RETURN_IF_ERROR(r.U32(&m.sender));
  RETURN_IF_ERROR(ReadShares(r, &m.shares));
  RETURN_IF_ERROR(r.Done());
  return m;
}

std::string ShareDelivery::Serialize() const {
  Writer w(kDelivery);
  w.U64(round);
  w.U32(receiver);
  WriteShares(shares, w);
  return w.Take();
}

StatusOr<ShareDelivery> ShareDelivery::Parse(std::string_view bytes) {
  Reader r(bytes, "ShareDelivery");
  ShareDelivery m;
  RETURN_IF_ERROR(r.Header(kDelivery));
  RETURN_IF_ERROR(r.U64(&m.round));
  RETURN_IF_ERROR(r.U32(&m.receiver));
  RETURN_IF_ERROR(ReadShares(r, &m.shares));
  RETURN_IF_ERROR(r.Done());
  return m;
}

std::string MaskedInputChunk::Serialize() const {
  Writer w(kChunk);
  w.U64(round);
  w.U32(sender);
  w.U64(offset);
  w.U8(static_cast<uint8_t>(data.width));
  std::string body = RingToBytes(data);
  w.U32(static_cast<uint32_t>(data.size()));
  w.Raw(body.data(), body.size());
  return w.Take();
}

StatusOr<MaskedInputChunk> MaskedInputChunk::Parse(std::string_view bytes) {
  Reader r(bytes, "MaskedInputChunk");
  MaskedInputChunk m;
  RETURN_IF_ERROR(r.Header(kChunk));
  RETURN_IF_ERROR(r.U64(&m.round));
  RETURN_IF_ERROR(r.U32(&m.sender));
  RETURN_IF_ERROR(r.U64(&m.offset));
  uint8_t width = 0;
  RETURN_IF_ERROR(r.U8(&width));
  if (width != 32 && width != 64) return r.Error(absl::StrCat("ring width ", width));
  RingWidth ring = static_cast<RingWidth>(width);
  uint32_t count = 0;
  RETURN_IF_ERROR(r.Count(&count, RingWordSize(ring)));
  std::string body(count * RingWordSize(ring), '\0');
  RETURN_IF_ERROR(r.Raw(body.data(), body.size()));
  RETURN_IF_ERROR(r.Done());
  ASSIGN_OR_RETURN(m.data, RingFromBytes(ring, body));
  return m;
}

std::string SurvivorList::Serialize() const {
  Writer w(kSurvivors);
  w.U64(round);
  WriteIds(survivors, w);
  return w.Take();
}

StatusOr<SurvivorList> SurvivorList::Parse(std::string_view bytes) {
  Reader r(bytes, "SurvivorList");
  SurvivorList m;
  RETURN_IF_ERROR(r.Header(kSurvivors));
  RETURN_IF_ERROR(r.U64(&m.round));
  RETURN_IF_ERROR(ReadIds(r, &m.survivors));
  RETURN_IF_ERROR(r.Done());
  return m;
}

std::string ConsistencySignature::Serialize() const {
  Writer w(kConsistency);
  WriteConsistency(*this, w);
  return w.Take();
}

StatusOr<ConsistencySignature> ConsistencySignature::Parse(std::string_view bytes) {
  Reader r(bytes, "ConsistencySignature");
  ConsistencySignature m;
  RETURN_IF_ERROR(r.Header(kConsistency));
  RETURN_IF_ERROR(ReadConsistency(r, &m));
  RETURN_IF_ERROR(r.Done());
  return m;
}

std::string UnmaskRequest::Serialize() const {
  Writer w(kUnmaskRequest);
  w.U64(round);
  WriteIds(survivors, w);
  w.U32(static_cast<uint32_t>(signatures.size()));
  for (const auto& s : signatures) WriteConsistency(s, w);
  return w.Take();
}

StatusOr<UnmaskRequest> UnmaskRequest::Parse(std::string_view bytes) {
  Reader r(bytes, "UnmaskRequest");
  UnmaskRequest m;
  RETURN_IF_ERROR(r.Header(kUnmaskRequest));
  RETURN_IF_ERROR(r.U64(&m.round));
  RETURN_IF_ERROR(ReadIds(r, &m.survivors));
  uint32_t n = 0;
  RETURN_IF_ERROR(r.Count(&n, 76));
  m.signatures.resize(n);
  for (auto& s : m.signatures) RETURN_IF_ERROR(ReadConsistency(r, &s));
  RETURN_IF_ERROR(r.Done());
  return m;
}

std::string UnmaskResponse::Serialize() const {
  Writer w(kUnmaskResponse);
  w.U64(round);
  w.U32(sender);
  w.U32(static_cast<uint32_t>(shares.size()));
  for (const auto& s : shares) {
    w.U32(s.owner);
    w.U8(static_cast<uint8_t>(s.kind));
    w.Bytes(s.share.view());
  }
  return w.Take();
}

StatusOr<UnmaskResponse> UnmaskResponse::Parse(std::string_view bytes) {
  Reader r(bytes, "UnmaskResponse");
  UnmaskResponse m;
  RETURN_IF_ERROR(r.Header(kUnmaskResponse));
  RETURN_IF_ERROR(r.U64(&m.round));
  RETURN_IF_ERROR(r.U32(&m.sender));
  uint32_t n = 0;
  RETURN_IF_ERROR(r.Count(&n, 9));
  m.shares.resize(n);
  for (auto& s : m.shares) {
    RETURN_IF_ERROR(r.U32(&s.owner));
    uint8_t kind = 0;
    RETURN_IF_ERROR(r.U8(&kind));
    if (kind != 1 && kind != 2) return r.Error(absl::StrCat("share kind ", kind));
    s.kind = static_cast<ShareKind>(kind);
    std::string_view share;
    RETURN_IF_ERROR(r.Bytes(&share));
    if (share.size() != kShamirShareSize) return r.Error("share of the wrong size");
    s.share = SecretBytes(share);
  }
  RETURN_IF_ERROR(r.Done());
  return m;
}

}  // namespace hansa
