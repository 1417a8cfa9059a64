// Local training data for a site: IDX files (the MNIST family's format, raw or gzipped) and
// the deterministic shard definition that gives each site a disjoint part of a data set.
//
// Everything here is plain data and free of LibTorch, so tools and tests can use it. Files
// come from the site's own disk but are still parsed defensively: every size in a header is
// checked against the file length and a cap before anything is allocated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status/status.h"

namespace hansa {

// Largest decompressed IDX file accepted unless the caller gives another cap.
inline constexpr size_t kDefaultMaxIdxBytes = size_t{1} << 30;

// Seed of the shard permutation. Every site must use the same one, so it is a constant here
// and not a setting; changing it re-deals every federation's data.
inline constexpr uint64_t kShardSeed = 0x48414e5341ull;  // "HANSA"

// An IDX array of unsigned bytes (element type 0x08), the only type the built-in data sets use.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // product(dims) bytes, row-major
};

// Parses an IDX file's bytes, which may be gzip-compressed. `name` appears in errors.
// InvalidArgument for a bad magic number, an element type other than uint8, a header whose
// sizes disagree with the payload length, a truncated or corrupt gzip stream, or a size over
// `max_bytes` (decompressed).
StatusOr<IdxArray> ParseIdx(std::string_view bytes, const std::string& name,
                            size_t max_bytes = kDefaultMaxIdxBytes);

// Reads and parses an IDX file (gzipped or raw); NotFound when it is absent.
StatusOr<IdxArray> ReadIdxFile(const std::string& path, size_t max_bytes = kDefaultMaxIdxBytes);

// Labelled examples: grey-scale images, e.g. Fashion-MNIST (image i is pixels
// [i*rows*cols, (i+1)*rows*cols)), or, when `tabular`, rows of float features (a site's CSV
// data, client/tabular.h) with a float target each.
struct Dataset {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> images;  // size() * rows * cols pixels, 0..255
  // size() class ids; tabular: the targets as class ids for classification, empty for a
  // regression.
  std::vector<uint8_t> labels;

  // Tabular examples: rows = 1, cols features each, images empty.
  bool tabular = false;
  std::vector<float> features;  // size() * cols values
  std::vector<float> targets;   // size() targets: class ids, or a regression's values

  int64_t size() const { return static_cast<int64_t>(tabular ? targets.size() : labels.size()); }
  int64_t pixels_per_image() const { return rows * cols; }
  // InvalidArgument when the vectors disagree with size(), rows and cols.
  Status Validate() const;
};

// Loads an images file (3 dims: n x rows x cols) and a labels file (1 dim: n), checking that
// the counts agree.
StatusOr<Dataset> LoadIdxDataset(const std::string& images_path, const std::string& labels_path,
                                 size_t max_bytes = kDefaultMaxIdxBytes);

// Where Debian's dataset-fashion-mnist package installs the files.
inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

enum class Split { kTrain, kTest };

// Loads the MNIST-style files of `dir`: {train,t10k}-{images-idx3,labels-idx1}-ubyte(.gz).
// Tries the gzipped name first, then the raw one.
StatusOr<Dataset> LoadMnistStyle(const std::string& dir, Split split);

// A pseudo-random permutation of 0..n-1 fixed by `seed`, the same on every platform and
// compiler (SplitMix64 + Fisher-Yates; no std:: distributions, whose output is unspecified).
std::vector<int64_t> SeededPermutation(int64_t n, uint64_t seed);

// Indices of shard `index` of `count` over a data set of `n` examples: a contiguous slice of
// SeededPermutation(n, seed). The shards of one (n, count, seed) are disjoint, cover 0..n-1,
// and differ in size by at most one. InvalidArgument when not 0 <= index < count.
StatusOr<std::vector<int64_t>> ShardIndices(int64_t n, int index, int count,
                                            uint64_t seed = kShardSeed);

// The examples of `data` at `indices`, in that order. InvalidArgument for an index out of range.
StatusOr<Dataset> Subset(const Dataset& data, const std::vector<int64_t>& indices);

// Shard `index` of `count` of `data` (see ShardIndices).
StatusOr<Dataset> Shard(const Dataset& data, int index, int count, uint64_t seed = kShardSeed);

// The first min(n, size()) examples.
Dataset Head(const Dataset& data, int64_t n);

}  // namespace hansa
