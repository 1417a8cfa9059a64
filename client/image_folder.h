// A site's images in class folders (issue 15's `[data] format = "image_folder"`):
// root/<class>/*.png|*.jpg|*.jpeg, any size, grey or colour, decoded by libpng and libjpeg-turbo
// (no decoder of our own), turned grey by them and resized (bilinear) to the model's input.
// Classes are the sub-folder names in byte order, so every site that has the same classes
// numbers them alike; a study that must fix the list passes it.
//
// Or labels from a CSV manifest (`manifest`, a file in root): a header row `file,label`, then
// one row per image, the file relative to root (or absolute), the label a class name from
// `classes` or an integer class id (0..255, below the number of classes when they are given);
// a name needs `classes`, so that every site numbers the classes alike. Fields may be quoted
// as in RFC 4180. Only the listed files are loaded, in the manifest's order. DICOM folders
// (client/dicom_folder.h) take the same manifest.
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
  // Empty: labels from the class folders; else the manifest's file name in root.
  std::string manifest;
  uint64_t max_file_bytes = uint64_t{64} << 20;
};

// One row of a label manifest.
struct LabelledFile {
  std::string path;  // the file, joined to the manifest's folder when relative
  uint8_t label = 0;
  int64_t line = 0;  // in the manifest, for errors
};

// Reads a label manifest (format above). InvalidArgument naming the manifest and line for a
// header other than `file,label`, a row without exactly two fields, an empty file name, a file
// listed twice, a label that is neither one of `classes` nor a valid id, over 256 classes, or no
// rows; NotFound when the manifest is absent. Files are not opened here.
StatusOr<std::vector<LabelledFile>> ReadLabelManifest(const std::string& path,
                                                      const std::vector<std::string>& classes);

// Bilinear resampling of a grey image (in_rows x in_cols pixels) to rows x cols, pixel centres
// aligned; the same size is a copy. Image folders and DICOM folders both resize with it.
std::vector<uint8_t> ResizeGrey(const uint8_t* pixels, int64_t in_rows, int64_t in_cols,
                                int64_t rows, int64_t cols);

// The class folders of `root`, sorted by name: the labels' order unless a study fixes one.
// NotFound when the root is absent.
StatusOr<std::vector<std::string>> ImageFolderClasses(const std::string& root);

// Loads every image under root/<class>/ (a class without a folder has no examples here), or,
// with a manifest, every file it lists. InvalidArgument naming the file for one that is not a
// PNG or JPEG its library decodes, for a folder that is not one of `classes`, for over 256
// classes, for a root without images, for a manifest's error (ReadLabelManifest) or a file it
// lists that is absent; NotFound when the root is absent. One bad file fails the whole load.
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
