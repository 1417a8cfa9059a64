#include "client/dicom_folder.h"

#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/image_folder.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmimgle/dcmimage.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"

namespace hansa {
namespace {

// Images larger than this many pixels are refused before their pixel data is decoded.
constexpr uint64_t kMaxPixels = uint64_t{1} << 28;

// DCMTK finds decoders in a process-wide registry; registering twice would list them twice.
void RegisterDecoders() {
  static std::once_flag once;
  std::call_once(once, [] {
    DcmRLEDecoderRegistration::registerCodecs();
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
  });
}

std::string Text(DcmDataset* data, const DcmTagKey& tag) {
  OFString value;
  if (data->findAndGetOFString(tag, value).bad()) return "";
  return value.c_str();
}

// The checks a file must pass before DCMTK renders it: one grey frame of a sane size.
Status CheckGreyImage(const std::string& path, DcmDataset* data) {
  Uint16 samples = 0, rows = 0, cols = 0;
  if (data->findAndGetUint16(DCM_SamplesPerPixel, samples).bad() ||
      !data->tagExistsWithValue(DCM_PixelData)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a DICOM file without an image (no pixel data)"));
  }
  const std::string photometric = Text(data, DCM_PhotometricInterpretation);
  if (samples != 1 || (photometric != "MONOCHROME1" && photometric != "MONOCHROME2")) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a grey image (Samples per Pixel ", samples, ", Photometric Interpretation ",
        photometric.empty() ? "absent" : photometric,
        "); only MONOCHROME1/MONOCHROME2 with 1 sample per pixel is read: convert it to grey"));
  }
  data->findAndGetUint16(DCM_Rows, rows);
  data->findAndGetUint16(DCM_Columns, cols);
  if (rows == 0 || cols == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": an image of ", rows, " x ", cols, " pixels"));
  }
  if (static_cast<uint64_t>(rows) * cols > kMaxPixels) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", rows, " x ", cols, " pixels is over the limit of ", kMaxPixels));
  }
  long frames = 1;  // NOLINT(runtime/int): DCMTK's type
  if (data->findAndGetLongInt(DCM_NumberOfFrames, frames).good() && frames > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", frames, " frames; one image per file is read (split the frames into files)"));
  }
  return absl::OkStatus();
}

// Decompresses encapsulated pixel data in place with the registered decoders.
Status Decompress(const std::string& path, DcmDataset* data) {
  const DcmXfer xfer(data->getOriginalXfer());
  if (!xfer.isEncapsulated()) return absl::OkStatus();
  const OFCondition decoded = data->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
  if (decoded.bad() || !data->canWriteXfer(EXS_LittleEndianExplicit)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": pixel data compressed as ", xfer.getXferName(), " (", xfer.getXferID(),
        "), which DCMTK here cannot decode (it decodes RLE, JPEG and JPEG-LS; ", decoded.text(),
        "): store the file uncompressed, e.g. with dcmdjpeg or gdcmconv --raw"));
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::vector<uint8_t>> DecodeDicomGrey(const std::string& path, int64_t rows, int64_t cols,
                                               uint64_t max_file_bytes) {
  namespace fs = std::filesystem;
  RegisterDecoders();
  std::error_code ec;
  const uintmax_t bytes = fs::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat(path, ": cannot read it (", ec.message(), ")"));
  if (bytes > max_file_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", bytes, " bytes is over the limit of ", max_file_bytes));
  }
  DcmFileFormat file;
  const OFCondition loaded =
      file.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_fileOnly);
  if (loaded.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a DICOM file DCMTK can read (", loaded.text(), ")"));
  }
  DcmDataset* data = file.getDataset();
  RETURN_IF_ERROR(CheckGreyImage(path, data));
  RETURN_IF_ERROR(Decompress(path, data));
  DicomImage image(&file, data->getCurrentXfer());
  if (image.getStatus() != EIS_Normal || !image.isMonochrome()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": DCMTK cannot render its pixels (",
                                                   DicomImage::getString(image.getStatus()), ")"));
  }
  if (image.getWindowCount() > 0) {
    image.setWindow(0);
  } else if (image.getVoiLutCount() > 0) {
    image.setVoiLut(0);
  } else {
    image.setNoVoiTransformation();  // the full range of the rescaled stored bits
  }
  const auto* grey = static_cast<const uint8_t*>(image.getOutputData(8));
  if (grey == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": DCMTK cannot render its pixels (",
                                                   DicomImage::getString(image.getStatus()), ")"));
  }
  return ResizeGrey(grey, image.getHeight(), image.getWidth(), rows, cols);
}

StatusOr<Dataset> LoadDicomFolder(const std::string& root, const DicomFolderOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat("DICOM folder ", root, " does not exist"));
  }
  const std::string manifest = (fs::path(root) / options.manifest).string();
  ASSIGN_OR_RETURN(const std::vector<LabelledFile> files,
                   ReadLabelManifest(manifest, options.classes));
  Dataset data;
  data.rows = options.rows;
  data.cols = options.cols;
  data.labels.reserve(files.size());
  data.images.reserve(files.size() * static_cast<size_t>(options.rows * options.cols));
  for (const LabelledFile& file : files) {
    if (!fs::is_regular_file(file.path, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(manifest, ":", file.line, ": ", file.path,
                                                     " does not exist or is not a file"));
    }
    ASSIGN_OR_RETURN(
        const std::vector<uint8_t> pixels,
        DecodeDicomGrey(file.path, options.rows, options.cols, options.max_file_bytes));
    data.images.insert(data.images.end(), pixels.begin(), pixels.end());
    data.labels.push_back(file.label);
  }
  RETURN_IF_ERROR(data.Validate());
  return data;
}

Status WriteGreyDicom(const std::string& path, const std::vector<uint16_t>& stored, int64_t rows,
                      int64_t cols, const DicomWriteOptions& options) {
  if (rows <= 0 || cols <= 0 || rows > 65535 || cols > 65535 ||
      static_cast<int64_t>(stored.size()) != rows * cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(stored.size(), " values for a ", rows, " x ", cols, " DICOM image"));
  }
  if (options.bits_stored < 1 || options.bits_stored > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("bits_stored is ", options.bits_stored, "; it must be 1..16"));
  }
  const uint32_t limit = uint32_t{1} << options.bits_stored;
  for (uint16_t v : stored) {
    if (v >= limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("value ", v, " does not fit ", options.bits_stored, " bits"));
    }
  }
  DcmFileFormat file;
  DcmDataset* data = file.getDataset();
  char uid[100];
  const auto ds = [](double v) { return absl::StrFormat("%.10g", v); };  // DS: 16 characters
  const auto bits = static_cast<Uint16>(options.bits_stored);
  OFCondition ok = data->putAndInsertString(DCM_SOPClassUID, UID_SecondaryCaptureImageStorage);
  if (ok.good()) {
    ok = data->putAndInsertString(DCM_SOPInstanceUID,
                                  dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT));
  }
  if (ok.good()) ok = data->putAndInsertString(DCM_Modality, "OT");
  if (ok.good()) ok = data->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  if (ok.good()) ok = data->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  if (ok.good()) ok = data->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(rows));
  if (ok.good()) ok = data->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(cols));
  if (ok.good()) ok = data->putAndInsertUint16(DCM_BitsAllocated, 16);
  if (ok.good()) ok = data->putAndInsertUint16(DCM_BitsStored, bits);
  if (ok.good()) ok = data->putAndInsertUint16(DCM_HighBit, bits - 1);
  if (ok.good()) ok = data->putAndInsertUint16(DCM_PixelRepresentation, 0);
  if (ok.good()) ok = data->putAndInsertString(DCM_RescaleSlope, ds(options.rescale_slope).c_str());
  if (ok.good()) {
    ok = data->putAndInsertString(DCM_RescaleIntercept, ds(options.rescale_intercept).c_str());
  }
  if (ok.good() && options.window_width > 0) {
    ok = data->putAndInsertString(DCM_WindowCenter, ds(options.window_center).c_str());
    if (ok.good()) {
      ok = data->putAndInsertString(DCM_WindowWidth, ds(options.window_width).c_str());
    }
  }
  if (ok.good()) {
    ok = data->putAndInsertUint16Array(DCM_PixelData, stored.data(),
                                       static_cast<unsigned long>(stored.size()));
  }
  if (ok.good()) ok = file.saveFile(path.c_str(), EXS_LittleEndianExplicit);
  if (ok.bad()) {
    return absl::InternalError(absl::StrCat("writing ", path, ": ", ok.text()));
  }
  return absl::OkStatus();
}

}  // namespace hansa
