// DICOM folders (client/dicom_folder.h): files written here with DCMTK's own API load back
// through the modality LUT and the window as PS3.3 C.11.2.1.2 computes them by hand, labelled
// from the manifest; RLE-compressed pixels decode; every bad file, label or manifest row is
// refused by name and fails the whole folder.
#include "client/dicom_folder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_format.h"
#include "client/image_folder.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"
#include "dcmtk/dcmdata/dcrleerg.h"
#include "dcmtk/dcmdata/dctk.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "dicom_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// What a test file holds besides its pixels; empty strings leave an attribute out.
struct Spec {
  Uint16 rows = 4, cols = 4;
  Uint16 bits_stored = 16;
  std::string photometric = "MONOCHROME2";
  std::string slope, intercept, center, width;
};

// The attributes every image has, through DCMTK's API (not the code under test).
void PutImageModule(DcmDataset* data, const Spec& spec, Uint16 samples, Uint16 bits_allocated) {
  char uid[100];
  ASSERT_TRUE(data->putAndInsertString(DCM_SOPClassUID, UID_SecondaryCaptureImageStorage).good());
  ASSERT_TRUE(data->putAndInsertString(DCM_SOPInstanceUID,
                                       dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT))
                  .good());
  data->putAndInsertUint16(DCM_SamplesPerPixel, samples);
  data->putAndInsertString(DCM_PhotometricInterpretation, spec.photometric.c_str());
  data->putAndInsertUint16(DCM_Rows, spec.rows);
  data->putAndInsertUint16(DCM_Columns, spec.cols);
  data->putAndInsertUint16(DCM_BitsAllocated, bits_allocated);
  data->putAndInsertUint16(DCM_BitsStored, spec.bits_stored);
  data->putAndInsertUint16(DCM_HighBit, spec.bits_stored - 1);
  data->putAndInsertUint16(DCM_PixelRepresentation, 0);
  if (samples > 1) data->putAndInsertUint16(DCM_PlanarConfiguration, 0);
  for (const auto& [tag, value] :
       {std::pair{DCM_RescaleSlope, spec.slope}, std::pair{DCM_RescaleIntercept, spec.intercept},
        std::pair{DCM_WindowCenter, spec.center}, std::pair{DCM_WindowWidth, spec.width}}) {
    if (!value.empty()) data->putAndInsertString(tag, value.c_str());
  }
}

// A grey image of 16 bits allocated, explicit VR little endian (or `xfer`, encoded by the
// codecs registered).
void WriteDicom(const std::string& path, const std::vector<Uint16>& pixels, const Spec& spec,
                E_TransferSyntax xfer = EXS_LittleEndianExplicit) {
  DcmFileFormat file;
  DcmDataset* data = file.getDataset();
  PutImageModule(data, spec, 1, 16);
  ASSERT_TRUE(data->putAndInsertUint16Array(DCM_PixelData, pixels.data(), pixels.size()).good());
  if (xfer != EXS_LittleEndianExplicit) {
    ASSERT_TRUE(data->chooseRepresentation(xfer, nullptr).good());
  }
  const OFCondition saved = file.saveFile(path.c_str(), xfer);
  ASSERT_TRUE(saved.good()) << saved.text();
}

// An RGB image, 8 bits a sample.
void WriteColourDicom(const std::string& path, Spec spec) {
  spec.photometric = "RGB";
  spec.bits_stored = 8;
  DcmFileFormat file;
  DcmDataset* data = file.getDataset();
  PutImageModule(data, spec, 3, 8);
  const std::vector<Uint8> rgb(spec.rows * spec.cols * 3, 100);
  ASSERT_TRUE(data->putAndInsertUint8Array(DCM_PixelData, rgb.data(), rgb.size()).good());
  ASSERT_TRUE(file.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
}

// A grey image whose pixel data is encapsulated as JPEG 2000, for which Debian's DCMTK has no
// decoder (the fragment is not even a real code stream: it is never reached).
void WriteJpeg2000Dicom(const std::string& path, const Spec& spec) {
  DcmFileFormat file;
  DcmDataset* data = file.getDataset();
  PutImageModule(data, spec, 1, 16);
  auto* sequence = new DcmPixelSequence(DCM_PixelSequenceTag);
  sequence->insert(new DcmPixelItem(DCM_PixelItemTag));  // the empty offset table
  auto* fragment = new DcmPixelItem(DCM_PixelItemTag);
  const Uint8 bytes[8] = {0xFF, 0x4F, 0xFF, 0x51, 0, 0, 0, 0};
  fragment->putUint8Array(bytes, sizeof bytes);
  sequence->insert(fragment);
  auto* pixels = new DcmPixelData(DCM_PixelData);
  pixels->putOriginalRepresentation(EXS_JPEG2000LosslessOnly, nullptr, sequence);
  ASSERT_TRUE(data->insert(pixels).good());
  const OFCondition saved = file.saveFile(path.c_str(), EXS_JPEG2000LosslessOnly);
  ASSERT_TRUE(saved.good()) << saved.text();
}

void WriteManifest(const std::string& dir, const std::string& rows) {
  std::ofstream(dir + "/labels.csv") << "file,label\n" << rows;
}

// PS3.3 C.11.2.1.2.1, the linear VOI function, onto 0..255.
double Window(double x, double center, double width) {
  if (x <= center - 0.5 - (width - 1) / 2) return 0;
  if (x > center - 0.5 + (width - 1) / 2) return 255;
  return ((x - (center - 0.5)) / (width - 1) + 0.5) * 255;
}

TEST(DicomFolderTest, RescaleSlopeInterceptAndTheFilesWindowGiveTheStandardsGreyValues) {
  const std::string dir = FreshDir("window");
  Spec spec;
  spec.slope = "2";
  spec.intercept = "-1000";
  spec.center = "200";
  spec.width = "400";
  // Hounsfield-like values x = 2 s - 1000 across the window [0, 399] and past both ends.
  const std::vector<Uint16> stored = {0,   450, 500, 501, 520, 550, 575, 600,
                                      625, 650, 675, 690, 699, 700, 900, 65535};
  WriteDicom(dir + "/a.dcm", stored, spec);
  auto grey = DecodeDicomGrey(dir + "/a.dcm", 4, 4);
  ASSERT_TRUE(grey.ok()) << grey.status();
  for (size_t i = 0; i < stored.size(); ++i) {
    const double x = 2.0 * stored[i] - 1000;
    EXPECT_NEAR((*grey)[i], Window(x, 200, 400), 1.0) << "stored " << stored[i];
  }
  EXPECT_EQ((*grey)[2], 0);     // x = 0, the window's lower border
  EXPECT_EQ((*grey)[5], 63);    // x = 100: (100 - 199.5) / 399 + 0.5 = 0.2506 of 255
  EXPECT_EQ((*grey)[13], 255);  // x = 400, past the upper border
}

TEST(DicomFolderTest, WithoutAWindowTheStoredBitsFullRangeIsMappedAndMonochrome1IsInverted) {
  const std::string dir = FreshDir("nowindow");
  Spec spec;
  spec.bits_stored = 12;
  const std::vector<Uint16> stored = {0,    1,    16,   256,  1024, 2048, 3072, 4000,
                                      4080, 4090, 4094, 4095, 0,    0,    4095, 2048};
  WriteDicom(dir + "/m2.dcm", stored, spec);
  spec.photometric = "MONOCHROME1";
  WriteDicom(dir + "/m1.dcm", stored, spec);
  auto m2 = DecodeDicomGrey(dir + "/m2.dcm", 4, 4);
  auto m1 = DecodeDicomGrey(dir + "/m1.dcm", 4, 4);
  ASSERT_TRUE(m2.ok()) << m2.status();
  ASSERT_TRUE(m1.ok()) << m1.status();
  for (size_t i = 0; i < stored.size(); ++i) {
    EXPECT_NEAR((*m2)[i], stored[i] / 4095.0 * 255, 1.0) << stored[i];
    EXPECT_NEAR((*m1)[i], 255 - stored[i] / 4095.0 * 255, 1.0) << stored[i];
  }
  EXPECT_EQ((*m2)[0], 0);
  EXPECT_EQ((*m2)[11], 255);
  EXPECT_EQ((*m1)[0], 255);
}

TEST(DicomFolderTest, LabelsComeFromTheManifestByClassNameOrIdInItsOrder) {
  const std::string dir = FreshDir("labels");
  Spec spec;
  spec.rows = 8;
  spec.cols = 8;
  spec.bits_stored = 8;
  for (int i = 0; i < 3; ++i) {
    WriteDicom(absl::StrFormat("%s/%d.dcm", dir, i), std::vector<Uint16>(64, 100 * i), spec);
  }
  std::filesystem::create_directories(dir + "/sub");
  WriteDicom(dir + "/sub/3.dcm", std::vector<Uint16>(64, 255), spec);
  std::ofstream(dir + "/DICOMDIR") << "not listed, not read";
  WriteManifest(dir, "2.dcm,effusion\n0.dcm,normal\r\n\"sub/3.dcm\",1\n1.dcm,  0 \n\n");
  DicomFolderOptions options;
  options.classes = {"normal", "effusion"};
  options.rows = 4;
  options.cols = 4;
  auto data = LoadDicomFolder(dir, options);
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->size(), 4);
  EXPECT_EQ(data->rows, 4);
  EXPECT_EQ(data->labels, (std::vector<uint8_t>{1, 0, 1, 0}));
  // 8 x 8 resized to 4 x 4; a flat image stays flat; 8 stored bits map onto themselves.
  const std::vector<uint8_t> first(data->images.begin(), data->images.begin() + 16);
  EXPECT_EQ(first, std::vector<uint8_t>(16, 200));
  EXPECT_EQ(data->images[16], 0);
  EXPECT_EQ(data->images[32], 255);
  EXPECT_EQ(data->images[48], 100);
}

TEST(DicomFolderTest, FashionMnistAsWindowedDicomLoadsBackToItsPixelsAlsoWhenRleCompressed) {
  auto mnist = LoadMnistStyle(kFashionMnistDir, Split::kTest);  // dataset-fashion-mnist
  ASSERT_TRUE(mnist.ok()) << mnist.status();
  const Dataset sample = Head(*mnist, 20);
  const std::string dir = FreshDir("fmnist");
  DicomWriteOptions options;  // what examples/images writes: 16 p, back to p by slope + window
  options.bits_stored = 12;
  options.rescale_slope = 0.0625;
  options.rescale_intercept = -1020;
  options.window_center = -892;
  options.window_width = 256;
  std::string manifest;
  DcmRLEEncoderRegistration::registerCodecs();
  for (int64_t i = 0; i < sample.size(); ++i) {
    const uint8_t* p = sample.images.data() + i * 784;
    std::vector<uint16_t> stored(p, p + 784);
    for (uint16_t& v : stored) v *= 16;
    const std::string name = absl::StrFormat("%02d.dcm", i);
    ASSERT_TRUE(WriteGreyDicom(dir + "/" + name, stored, 28, 28, options).ok());
    if (i % 2 == 1) {  // every other file RLE-compressed
      DcmFileFormat file;
      ASSERT_TRUE(file.loadFile((dir + "/" + name).c_str()).good());
      ASSERT_TRUE(file.getDataset()->chooseRepresentation(EXS_RLELossless, nullptr).good());
      ASSERT_TRUE(file.saveFile((dir + "/" + name).c_str(), EXS_RLELossless).good());
    }
    absl::StrAppend(&manifest, name, ",", sample.labels[i], "\n");
  }
  DcmRLEEncoderRegistration::cleanup();
  WriteManifest(dir, manifest);
  auto loaded = LoadDicomFolder(dir, DicomFolderOptions{});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->labels, sample.labels);
  EXPECT_TRUE(loaded->images == sample.images);
  EXPECT_EQ(WriteGreyDicom(dir + "/x.dcm", {4096}, 1, 1, options).code(),
            absl::StatusCode::kInvalidArgument);  // 4096 does not fit 12 bits
}

// Loads `dir` and returns the error's message, expecting InvalidArgument.
std::string Refusal(const std::string& dir, const DicomFolderOptions& options) {
  auto data = LoadDicomFolder(dir, options);
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument) << data.status();
  return std::string(data.status().message());
}

TEST(DicomFolderTest, OneBadFileOrRowFailsTheWholeFolderAndIsNamed) {
  const std::string dir = FreshDir("bad");
  Spec spec;
  WriteDicom(dir + "/good.dcm", std::vector<Uint16>(16, 7), spec);
  std::ofstream(dir + "/notes.dcm") << "a text file, no DICOM";
  WriteColourDicom(dir + "/colour.dcm", spec);
  WriteJpeg2000Dicom(dir + "/j2k.dcm", spec);
  DicomFolderOptions options;
  options.classes = {"normal", "effusion"};
  options.rows = 4;
  options.cols = 4;

  WriteManifest(dir, "good.dcm,normal\nnotes.dcm,normal\n");
  EXPECT_THAT(Refusal(dir, options), HasSubstr("notes.dcm: not a DICOM file DCMTK can read"));
  WriteManifest(dir, "good.dcm,normal\ncolour.dcm,effusion\n");
  EXPECT_THAT(Refusal(dir, options),
              HasSubstr("colour.dcm: not a grey image (Samples per Pixel 3, Photometric "
                        "Interpretation RGB)"));
  WriteManifest(dir, "good.dcm,normal\nj2k.dcm,effusion\n");
  EXPECT_THAT(Refusal(dir, options), HasSubstr("j2k.dcm: pixel data compressed as JPEG 2000"));
  EXPECT_THAT(Refusal(dir, options), HasSubstr("which DCMTK here cannot decode"));
  WriteManifest(dir, "good.dcm,normal\ngood.dcm,cat\n");
  EXPECT_THAT(Refusal(dir, options),
              HasSubstr("labels.csv:3: label 'cat' is neither one of the study's classes "
                        "(normal, effusion) nor an id below 2"));
  WriteManifest(dir, "good.dcm,2\n");
  EXPECT_THAT(Refusal(dir, options), HasSubstr("labels.csv:2: label '2' is neither"));
  WriteManifest(dir, "good.dcm,normal\nabsent.dcm,normal\n");
  EXPECT_THAT(Refusal(dir, options),
              HasSubstr("labels.csv:3: " + dir + "/absent.dcm does not exist or is not a file"));
  WriteManifest(dir, "good.dcm,normal\ngood.dcm,effusion\n");
  EXPECT_THAT(Refusal(dir, options), HasSubstr("labels.csv:3: good.dcm is listed twice (line 2"));
  WriteManifest(dir, "good.dcm\n");
  EXPECT_THAT(Refusal(dir, options), HasSubstr("labels.csv:2: 1 fields; a row is `file,label`"));
  WriteManifest(dir, "");
  EXPECT_THAT(Refusal(dir, options), HasSubstr("labels.csv: no rows"));
  std::ofstream(dir + "/labels.csv") << "path,class\ngood.dcm,normal\n";
  EXPECT_THAT(Refusal(dir, options),
              HasSubstr("labels.csv:1: the header must be `file,label`, not `path,class`"));
  options.classes.clear();  // names need the study's classes: a site's own list could differ
  WriteManifest(dir, "good.dcm,normal\n");
  EXPECT_THAT(Refusal(dir, options),
              HasSubstr("label 'normal' is no class id 0..255, and without the study's classes"));

  std::filesystem::remove(dir + "/labels.csv");
  EXPECT_EQ(LoadDicomFolder(dir, options).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadDicomFolder(dir + "/absent", options).status().code(), absl::StatusCode::kNotFound);
  WriteManifest(dir, "good.dcm,0\n");
  EXPECT_TRUE(LoadDicomFolder(dir, options).ok());  // the good file alone loads
}

}  // namespace
}  // namespace hansa
