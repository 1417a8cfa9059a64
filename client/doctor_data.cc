// hansa doctor: the data files a site trains on (doctor.h CheckDataFiles), read only as far as
// their headers.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/doctor.h"
#include "client/internal/doctor_checks.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/model/task.h"

namespace hansa {
namespace {

using doctor_internal::Bytes;
using doctor_internal::Days;
using doctor_internal::Fail;
using doctor_internal::Ok;
using doctor_internal::Warn;
using doctor_internal::Who;
namespace fs = std::filesystem;

// ---- data ----

constexpr char kDataFix[] =
    "check the path in site.toml's [data] (relative paths are from site.toml's folder) and that "
    "the user running hansa-client may read it";

// Size of a readable regular file, or why not.
StatusOr<uint64_t> ReadableFileSize(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  if (!fs::is_regular_file(status)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }
  if (access(path.c_str(), R_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, " is not readable: ", std::strerror(errno)));
  }
  return static_cast<uint64_t>(fs::file_size(path, ec));
}

struct IdxHeader {
  std::vector<int64_t> dims;
  uint64_t payload_bytes = 0;  // what the header promises after itself
};

uint32_t BigEndian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// The first `want` bytes of `path`, inflated when it is gzip. *gzip says which; for gzip,
// *isize holds the trailer's uncompressed size (mod 2^32).
StatusOr<std::string> ReadHead(const std::string& path, size_t want, bool* gzip, uint32_t* isize) {
  std::ifstream in(path, std::ios::binary);
  std::string raw(64 << 10, '\0');
  in.read(raw.data(), static_cast<std::streamsize>(raw.size()));
  raw.resize(static_cast<size_t>(in.gcount()));
  *gzip = raw.size() >= 2 && static_cast<unsigned char>(raw[0]) == 0x1f &&
          static_cast<unsigned char>(raw[1]) == 0x8b;
  if (!*gzip) return raw.substr(0, std::min(want, raw.size()));
  std::ifstream tail(path, std::ios::binary | std::ios::ate);
  unsigned char trailer[4] = {};
  tail.seekg(-4, std::ios::end);
  tail.read(reinterpret_cast<char*>(trailer), 4);
  *isize = uint32_t{trailer[0]} | (uint32_t{trailer[1]} << 8) | (uint32_t{trailer[2]} << 16) |
           (uint32_t{trailer[3]} << 24);
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return absl::InternalError("zlib init failed");
  std::string out(want, '\0');
  z.next_in = reinterpret_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_SYNC_FLUSH);
  const size_t got = want - z.avail_out;
  inflateEnd(&z);
  if (rc != Z_OK && rc != Z_STREAM_END) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": corrupt gzip stream"));
  }
  out.resize(got);
  return out;
}

// An IDX file's header: magic (uint8 elements), `ndims` dimensions, and a size that agrees.
StatusOr<IdxHeader> ReadIdxHeader(const std::string& path, int ndims, uint64_t file_size) {
  bool gzip = false;
  uint32_t isize = 0;
  ASSIGN_OR_RETURN(std::string head,
                   ReadHead(path, 4 + 4 * static_cast<size_t>(ndims), &gzip, &isize));
  const auto* p = reinterpret_cast<const unsigned char*>(head.data());
  if (head.size() < 4 || p[0] != 0 || p[1] != 0 || p[2] != 0x08) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not an IDX file of bytes (bad magic number)"));
  }
  if (p[3] != ndims || head.size() < 4 + 4 * static_cast<size_t>(ndims)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has ", int{p[3]}, " dimensions; expected ", ndims));
  }
  IdxHeader header;
  header.payload_bytes = 1;
  for (int i = 0; i < ndims; ++i) {
    header.dims.push_back(BigEndian32(p + 4 + 4 * i));
    header.payload_bytes *= static_cast<uint64_t>(header.dims.back());
  }
  const uint64_t total = header.payload_bytes + 4 + 4 * static_cast<uint64_t>(ndims);
  const uint64_t have = gzip ? isize : file_size;
  if ((gzip ? (total & 0xffffffffu) : total) != have) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the header promises ", total, " bytes but the file holds ", have,
                     gzip ? " (uncompressed, mod 2^32)" : "", ": truncated or not the file meant"));
  }
  return header;
}

CheckResult CheckIdxPair(const std::string& split, const std::string& images,
                         const std::string& labels) {
  const std::string check = absl::StrCat("data ", split);
  StatusOr<uint64_t> image_size = ReadableFileSize(images);
  if (!image_size.ok()) return Fail(check, std::string(image_size.status().message()), kDataFix);
  StatusOr<uint64_t> label_size = ReadableFileSize(labels);
  if (!label_size.ok()) return Fail(check, std::string(label_size.status().message()), kDataFix);
  StatusOr<IdxHeader> ih = ReadIdxHeader(images, 3, *image_size);
  if (!ih.ok()) return Fail(check, std::string(ih.status().message()), kDataFix);
  StatusOr<IdxHeader> lh = ReadIdxHeader(labels, 1, *label_size);
  if (!lh.ok()) return Fail(check, std::string(lh.status().message()), kDataFix);
  if (ih->dims[0] != lh->dims[0]) {
    return Fail(check,
                absl::StrCat(images, " holds ", ih->dims[0], " images but ", labels, " ",
                             lh->dims[0], " labels"),
                "data.*_images and data.*_labels must be the two files of one IDX data set");
  }
  return Ok(check, absl::StrCat(images, " (", ih->dims[0], " images ", ih->dims[1], "x",
                                ih->dims[2], ", ", Bytes(*image_size), "), ", labels, " (",
                                Bytes(*label_size), "): IDX headers read, counts agree"));
}

CheckResult CheckCsvFile(const std::string& split, const std::string& path, const CsvSchema& csv) {
  const std::string check = absl::StrCat("data ", split);
  StatusOr<uint64_t> size = ReadableFileSize(path);
  if (!size.ok()) return Fail(check, std::string(size.status().message()), kDataFix);
  if (!csv.columns.empty()) {
    return Ok(check, absl::StrCat(path, " (", Bytes(*size), "; columns named in site.toml)"));
  }
  std::ifstream in(path);
  std::string line;
  for (int i = 0; i <= csv.skip_lines; ++i) std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  std::vector<std::string> columns;
  for (absl::string_view c : absl::StrSplit(line, ',')) {
    c = absl::StripAsciiWhitespace(c);
    if (c.size() >= 2 && c.front() == '"' && c.back() == '"') c = c.substr(1, c.size() - 2);
    columns.emplace_back(c);
  }
  std::vector<std::string> wanted = csv.features;
  wanted.push_back(csv.label);
  for (const std::string& w : wanted) {
    if (std::find(columns.begin(), columns.end(), w) == columns.end()) {
      return Fail(check,
                  absl::StrCat(path, ": the header row has no column '", w, "' (it has ",
                               columns.size(), " columns)"),
                  "data.csv.label and data.csv.features must name columns of the header row");
    }
  }
  return Ok(check, absl::StrCat(path, " (", Bytes(*size), "): header row has ", columns.size(),
                                " columns, label '", csv.label, "' among them"));
}

CheckResult CheckDataFolder(const std::string& split, const std::string& dir,
                            const SiteConfig& config) {
  const std::string check = absl::StrCat("data ", split);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Fail(check, absl::StrCat(dir, " is not a directory"), kDataFix);
  }
  if (access(dir.c_str(), R_OK | X_OK) != 0) {
    return Fail(check, absl::StrCat(dir, " is not readable: ", std::strerror(errno)), kDataFix);
  }
  std::string manifest = config.manifest;
  if (manifest.empty() && config.format == "dicom_folder") manifest = "labels.csv";
  if (!manifest.empty()) {
    StatusOr<uint64_t> size = ReadableFileSize(dir + "/" + manifest);
    if (!size.ok()) {
      return Fail(check, std::string(size.status().message()),
                  "each of data.train_dir and data.test_dir needs its label manifest "
                  "(data.manifest)");
    }
  }
  int folders = 0;
  uint64_t files = 0, bytes = 0;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) {
      if (it.depth() == 0) ++folders;
    } else if (it->is_regular_file(ec)) {
      ++files;
      bytes += it->file_size(ec);
    }
  }
  for (const std::string& c : config.classes) {
    if (manifest.empty() && !fs::is_directory(fs::path(dir) / c, ec)) {
      return Fail(check, absl::StrCat(dir, " has no folder for class '", c, "'"),
                  "data.classes must name class folders of data.train_dir and data.test_dir");
    }
  }
  if (files == 0) return Fail(check, absl::StrCat(dir, " holds no files"), kDataFix);
  return Ok(check, absl::StrCat(dir, ": ", folders, " folders, ", files, " files, ", Bytes(bytes),
                                manifest.empty() ? "" : absl::StrCat(", manifest ", manifest)));
}

}  // namespace

std::vector<CheckResult> CheckDataFiles(const SiteConfig& config) {
  std::vector<CheckResult> out;
  if (config.format == "idx") {
    out.push_back(CheckIdxPair("train", config.train_images, config.train_labels));
    out.push_back(CheckIdxPair("test", config.test_images, config.test_labels));
  } else if (config.format == "csv") {
    out.push_back(CheckCsvFile("train", config.train_file, config.csv));
    if (!config.test_file.empty()) {
      out.push_back(CheckCsvFile("test", config.test_file, config.csv));
    }
  } else {
    out.push_back(CheckDataFolder("train", config.train_dir, config));
    out.push_back(CheckDataFolder("test", config.test_dir, config));
  }
  for (const std::string& file : config.model_files) {
    StatusOr<std::string> bytes = ReadFile(file, config.policy.max_model_bytes);
    if (!bytes.ok()) {
      out.push_back(Fail("model file", std::string(bytes.status().message()),
                         "[model] files must name readable TorchScript files within "
                         "policy.max_model_bytes"));
      continue;
    }
    const std::string name = ScriptModelName(ToHex(Sha256(*bytes)));
    const auto& allowed = config.policy.allowed_models;
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      out.push_back(Warn("model file",
                         absl::StrCat(file, " is ", name,
                                      ", which [policy] allowed_models does "
                                      "not list: the site will not load it"),
                         "if the site's data-protection officer approved this model, add its "
                         "hash to [policy] allowed_models"));
    } else {
      out.push_back(Ok("model file", absl::StrCat(file, " (", Bytes(bytes->size()), ") is ", name,
                                                  ", allowed by the policy")));
    }
  }
  std::error_code ec;
  const std::string& state = config.state_dir;
  const std::string parent = fs::path(state).parent_path().string();
  if (fs::is_directory(state, ec) ? access(state.c_str(), W_OK | X_OK) != 0
                                  : access(parent.empty() ? "." : parent.c_str(), W_OK) != 0) {
    out.push_back(Fail("state directory",
                       absl::StrCat(state, " is not writable (nor can it be created)"),
                       "site.state_dir must be writable by the user that runs hansa-client"));
  } else {
    out.push_back(
        Ok("state directory",
           absl::StrCat(state, fs::exists(state, ec) ? " is writable" : " will be created")));
  }
  return out;
}

}  // namespace hansa
