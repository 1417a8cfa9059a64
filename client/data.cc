#include "client/data.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/fileio/fileio.h"
#include "common/random/seeded_random.h"

namespace hansa {
namespace {

constexpr int kMaxIdxDims = 4;
constexpr uint8_t kIdxTypeUint8 = 0x08;

bool IsGzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
         static_cast<uint8_t>(bytes[1]) == 0x8b;
}

// Inflates one gzip member into memory, refusing to grow past `max_bytes`.
StatusOr<std::string> Gunzip(std::string_view bytes, const std::string& name, size_t max_bytes) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    return absl::InternalError(absl::StrCat(name, ": cannot initialise zlib"));
  }
  std::string out;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  // A compressed input over 4 GiB would need chunking; such files are far above any cap anyway.
  if (bytes.size() > std::numeric_limits<uInt>::max()) {
    inflateEnd(&zs);
    return absl::InvalidArgumentError(absl::StrCat(name, ": compressed file too large"));
  }
  zs.avail_in = static_cast<uInt>(bytes.size());
  int rc = Z_OK;
  char buffer[1 << 16];
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buffer);
    zs.avail_out = sizeof(buffer);
    rc = inflate(&zs, Z_NO_FLUSH);
    size_t produced = sizeof(buffer) - zs.avail_out;
    if (out.size() + produced > max_bytes) {
      inflateEnd(&zs);
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": decompresses to more than ", max_bytes,
                       " bytes (the cap for IDX files); is this the right file?"));
    }
    out.append(buffer, produced);
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;  // input ended before the stream did
  }
  std::string zmsg = zs.msg ? zs.msg : "";
  inflateEnd(&zs);
  if (rc == Z_STREAM_END) return out;
  if (rc == Z_BUF_ERROR || rc == Z_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": gzip stream is truncated (ended after ", out.size(),
                     " decompressed bytes); re-copy or re-download the file"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(name, ": corrupt gzip data (zlib: ", zmsg.empty() ? "error" : zmsg, ")"));
}

uint32_t ReadBigEndian32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}

StatusOr<IdxArray> ParseRawIdx(std::string_view bytes, const std::string& name, size_t max_bytes) {
  if (bytes.size() < 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": ", bytes.size(), " bytes is too short for an IDX header (at least 4)"));
  }
  const uint32_t magic = ReadBigEndian32(bytes.data());
  const uint8_t type = static_cast<uint8_t>(bytes[2]);
  const int ndims = static_cast<uint8_t>(bytes[3]);
  if (bytes[0] != 0 || bytes[1] != 0 || ndims == 0 || ndims > kMaxIdxDims) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: bad IDX magic number 0x%08x (expected 0x0000TTDD with 1 <= DD <= %d); "
                        "is this an IDX file?",
                        name, magic, kMaxIdxDims));
  }
  if (type != kIdxTypeUint8) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: IDX element type 0x%02x is not supported (Hansa reads uint8 IDX files, type 0x08)",
        name, type));
  }
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (bytes.size() < header) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": truncated IDX header (", bytes.size(),
                                                   " bytes, the header needs ", header, ")"));
  }
  IdxArray array;
  size_t expected = 1;
  for (int d = 0; d < ndims; ++d) {
    const uint32_t dim = ReadBigEndian32(bytes.data() + 4 + 4 * d);
    array.dims.push_back(dim);
    // Checked before multiplying so the product cannot overflow: both factors are <= max_bytes
    // < 2^32 on entry, and the product is compared before the next step.
    if (dim != 0 && expected > max_bytes / dim) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": IDX header dimensions [", absl::StrJoin(array.dims, ","),
                       "...] describe more than ", max_bytes, " bytes (the cap)"));
    }
    expected *= dim;
  }
  const size_t payload = bytes.size() - header;
  if (payload != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": IDX header dimensions [", absl::StrJoin(array.dims, ","), "] need ",
                     expected, " data bytes but the file has ", payload,
                     payload < expected ? " (truncated file?)" : " (trailing bytes)"));
  }
  array.data.assign(bytes.begin() + header, bytes.end());
  return array;
}

}  // namespace

StatusOr<IdxArray> ParseIdx(std::string_view bytes, const std::string& name, size_t max_bytes) {
  if (IsGzip(bytes)) {
    ASSIGN_OR_RETURN(std::string raw, Gunzip(bytes, name, max_bytes));
    return ParseRawIdx(raw, name, max_bytes);
  }
  if (bytes.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", bytes.size(), " bytes is over the IDX cap of ", max_bytes));
  }
  return ParseRawIdx(bytes, name, max_bytes);
}

StatusOr<IdxArray> ReadIdxFile(const std::string& path, size_t max_bytes) {
  StatusOr<std::string> bytes = ReadFile(path, max_bytes);
  if (!bytes.ok()) return Annotate(bytes.status(), "reading IDX file");
  return ParseIdx(*bytes, path, max_bytes);
}

Status Dataset::Validate() const {
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data set has image size ", rows, "x", cols, "; both must be positive"));
  }
  if (tabular) {
    if (rows != 1 || !images.empty() || features.size() != targets.size() * cols ||
        (!labels.empty() && labels.size() != targets.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("tabular data set has ", features.size(), " values, ", targets.size(),
                       " targets and ", labels.size(), " labels for rows of ", cols, " features"));
    }
    return absl::OkStatus();
  }
  if (images.size() != labels.size() * static_cast<size_t>(rows * cols)) {
    return absl::InvalidArgumentError(absl::StrCat("data set has ", images.size(), " pixels for ",
                                                   labels.size(), " labels of ", rows, "x", cols,
                                                   " images"));
  }
  return absl::OkStatus();
}

StatusOr<Dataset> LoadIdxDataset(const std::string& images_path, const std::string& labels_path,
                                 size_t max_bytes) {
  ASSIGN_OR_RETURN(IdxArray images, ReadIdxFile(images_path, max_bytes));
  ASSIGN_OR_RETURN(IdxArray labels, ReadIdxFile(labels_path, max_bytes));
  if (images.dims.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(images_path,
                                                   ": an images file has 3 dimensions"
                                                   " (count, rows, cols), this one has ",
                                                   images.dims.size()));
  }
  if (labels.dims.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        labels_path, ": a labels file has 1 dimension, this one has ", labels.dims.size()));
  }
  if (images.dims[0] != labels.dims[0]) {
    return absl::InvalidArgumentError(absl::StrCat(images_path, " holds ", images.dims[0],
                                                   " images but ", labels_path, " holds ",
                                                   labels.dims[0], " labels; are they a pair?"));
  }
  Dataset data;
  data.rows = images.dims[1];
  data.cols = images.dims[2];
  data.images = std::move(images.data);
  data.labels = std::move(labels.data);
  if (data.rows == 0 || data.cols == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(images_path, ": images of size ", data.rows, "x", data.cols));
  }
  return data;
}

StatusOr<Dataset> LoadMnistStyle(const std::string& dir, Split split) {
  const std::string prefix = dir + (split == Split::kTrain ? "/train" : "/t10k");
  std::string paths[2] = {prefix + "-images-idx3-ubyte", prefix + "-labels-idx1-ubyte"};
  for (std::string& path : paths) {
    std::error_code ec;
    if (std::filesystem::exists(path + ".gz", ec)) path += ".gz";
  }
  return LoadIdxDataset(paths[0], paths[1]);
}

std::vector<int64_t> SeededPermutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> perm(n > 0 ? n : 0);
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  SeededRandom random(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(random.Below(static_cast<uint64_t>(i) + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

StatusOr<std::vector<int64_t>> ShardIndices(int64_t n, int index, int count, uint64_t seed) {
  if (count <= 0 || index < 0 || index >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", index, " of ", count, " does not exist (need 0 <= index < count)"));
  }
  std::vector<int64_t> perm = SeededPermutation(n, seed);
  const int64_t begin = n * index / count;
  const int64_t end = n * (index + 1) / count;
  return std::vector<int64_t>(perm.begin() + begin, perm.begin() + end);
}

StatusOr<Dataset> Subset(const Dataset& data, const std::vector<int64_t>& indices) {
  RETURN_IF_ERROR(data.Validate());
  Dataset out;
  out.rows = data.rows;
  out.cols = data.cols;
  out.tabular = data.tabular;
  const size_t width = static_cast<size_t>(data.pixels_per_image());
  if (data.tabular) {
    out.features.resize(indices.size() * width);
    out.targets.resize(indices.size());
  } else {
    out.images.resize(indices.size() * width);
  }
  if (!data.labels.empty()) out.labels.resize(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    const int64_t i = indices[k];
    if (i < 0 || i >= data.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("example index ", i, " is outside the data set of ", data.size()));
    }
    if (data.tabular) {
      std::memcpy(out.features.data() + k * width, data.features.data() + i * width,
                  width * sizeof(float));
      out.targets[k] = data.targets[i];
    } else {
      std::memcpy(out.images.data() + k * width, data.images.data() + i * width, width);
    }
    if (!data.labels.empty()) out.labels[k] = data.labels[i];
  }
  return out;
}

StatusOr<Dataset> Shard(const Dataset& data, int index, int count, uint64_t seed) {
  ASSIGN_OR_RETURN(std::vector<int64_t> indices, ShardIndices(data.size(), index, count, seed));
  return Subset(data, indices);
}

Dataset Head(const Dataset& data, int64_t n) {
  Dataset out;
  out.rows = data.rows;
  out.cols = data.cols;
  out.tabular = data.tabular;
  n = std::max<int64_t>(0, std::min(n, data.size()));
  const int64_t width = data.pixels_per_image();
  out.labels.assign(data.labels.begin(),
                    data.labels.begin() + std::min<int64_t>(n, data.labels.size()));
  if (data.tabular) {
    out.features.assign(data.features.begin(), data.features.begin() + n * width);
    out.targets.assign(data.targets.begin(), data.targets.begin() + n);
  } else {
    out.images.assign(data.images.begin(), data.images.begin() + n * width);
  }
  return out;
}

}  // namespace hansa
