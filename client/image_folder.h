// A site's images in class folders (issue 15's `[data] format = "image_folder"`):
// root/<class>/*.png|*.jpg|*.jpeg, any size, grey or colour, decoded by libpng and libjpeg-turbo
// (no decoder of our own), turned grey by them and resized (bilinear) to the model's input.
// Classes are the sub-folder names in byte order, so every site that has the same classes
// numbers them alike; a study that must fix the list passes it.
//
// Plain data, free of LibTorch. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/data.h"
#include "common/status/status.h"

namespace hansa {

struct ImageFolderOptions {
  int64_t rows = 28, cols = 28;  // the model's input; images are resized to it (bilinear)
  // The classes, in label order; empty: the sub-folders of the root, sorted.
  std::vector<std::string> classes;
  uint64_t max_file_bytes = uint64_t{64} << 20;
};

// The class folders of `root`, sorted by name: the labels' order unless a study fixes one.
// NotFound when the root is absent.
StatusOr<std::vector<std::string>> ImageFolderClasses(const std::string& root);

// Loads every image under root/<class>/ (a class without a folder has no examples here).
// InvalidArgument naming the file for one that is not a PNG or JPEG its library decodes, for a
// folder that is not one of `classes`, for over 256 classes, or for a root without images;
// NotFound when the root is absent.
StatusOr<Dataset> LoadImageFolder(const std::string& root, const ImageFolderOptions& options);

// One grey image decoded from PNG or JPEG bytes (by its signature), `rows` x `cols` after
// resizing. `name` starts errors.
StatusOr<std::vector<uint8_t>> DecodeGreyImage(const std::string& bytes, const std::string& name,
                                               int64_t rows, int64_t cols);

// Writes `pixels` (rows x cols, grey) as an 8-bit grey PNG: Fashion-MNIST as image folders, for
// the examples and tests.
Status WriteGreyPng(const std::string& path, const std::vector<uint8_t>& pixels, int64_t rows,
                    int64_t cols);

}  // namespace hansa
