// A site's DICOM images (issue 15's `[data] format = "dicom_folder"`): a folder holding one
// DICOM file per image and a label manifest (client/image_folder.h: a `file,label` header, then
// one row per file, the file relative to the folder, the label a class name of the study or an
// integer id). Only the files the manifest lists are read, in its order; other files in the
// folder (a DICOMDIR, reports) are left alone.
//
// DCMTK reads everything (no decoder of our own). A file must be a DICOM file with its meta
// header (Part 10, "DICM"), one frame of grey pixels (Samples per Pixel 1, MONOCHROME1 or
// MONOCHROME2), of any bit depth, signed or not, uncompressed or compressed in a transfer
// syntax DCMTK decodes here (RLE, JPEG baseline/extended/lossless, JPEG-LS; Debian's DCMTK has
// no JPEG 2000 decoder). DCMTK applies the modality LUT (Rescale Slope and Intercept), then the
// file's first VOI window (Window Center and Width) or, failing that, its first VOI LUT or,
// failing both, the full range the stored bits can hold after rescaling, mapped to 0..255 grey
// (MONOCHROME1 inverted, so that bright is dense everywhere). The result is resized
// (bilinear, ResizeGrey) to the model's input.
//
// Plain data, free of LibTorch. Thread-compatible; the first call registers DCMTK's decoders
// for the process, once (thread-safe).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/data.h"
#include "common/status/status.h"

namespace hansa {

struct DicomFolderOptions {
  int64_t rows = 28, cols = 28;  // the model's input; images are resized to it (bilinear)
  // The study's classes in label order; empty: the manifest's labels must be ids.
  std::vector<std::string> classes;
  std::string manifest = "labels.csv";  // in the folder
  uint64_t max_file_bytes = uint64_t{1} << 30;
};

// Loads every file the folder's manifest lists. InvalidArgument naming the manifest and line
// for a manifest error (ReadLabelManifest) or a listed file that is absent, and naming the file
// for one DecodeDicomGrey refuses; NotFound when the folder or its manifest is absent. One bad
// file fails the whole load: a site trains on all of its data or on none.
StatusOr<Dataset> LoadDicomFolder(const std::string& root, const DicomFolderOptions& options);

// One DICOM file's grey image, windowed to 0..255 and resized to rows x cols. InvalidArgument
// naming the file for one that is not DICOM, not grey, has several frames or no pixel data, is
// compressed in a transfer syntax no decoder here reads, is over `max_file_bytes` or 2^28
// pixels; NotFound when absent.
StatusOr<std::vector<uint8_t>> DecodeDicomGrey(const std::string& path, int64_t rows, int64_t cols,
                                               uint64_t max_file_bytes = uint64_t{1} << 30);

// What WriteGreyDicom stores beside the pixels.
struct DicomWriteOptions {
  int bits_stored = 16;  // of 16 allocated, unsigned; every stored value must fit
  double rescale_slope = 1, rescale_intercept = 0;
  double window_center = 0, window_width = 0;  // width 0: the file has no window
};

// Writes `stored` (rows x cols values) as a grey (MONOCHROME2) Secondary Capture image in
// explicit VR little endian: Fashion-MNIST as DICOM, for the examples and tests.
// InvalidArgument when the sizes disagree or a value does not fit bits_stored.
Status WriteGreyDicom(const std::string& path, const std::vector<uint16_t>& stored, int64_t rows,
                      int64_t cols, const DicomWriteOptions& options);

}  // namespace hansa
