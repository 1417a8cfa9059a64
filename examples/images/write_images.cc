// hansa-example-images OUT: Fashion-MNIST (Debian's dataset-fashion-mnist) written as three
// sites' own files, in the two forms a hospital might hold images in:
//   OUT/png/site-{a,b,c}/{train,test}/<class>/NNNNN.png   class folders, and labels.csv
//   OUT/dicom/site-{a,b,c}/{train,test}/NNNNN.dcm         DICOM files, and labels.csv
// Site k of n gets shard k of n of each split (ShardIndices, client/data.h), the first --train
// and --test examples of it: the very examples the IDX path gives a site with shard_count = n,
// train_limit and test_limit, in the same order in labels.csv, so that the three forms can be
// compared. The DICOM files store each grey value p as 16 p in 12 bits with Rescale Slope
// 1/16, Rescale Intercept -1020 and a window (centre -892, width 256) that maps the rescaled
// values back onto exactly p: what a site reads back goes through DCMTK's modality LUT and
// windowing, and still equals the PNG's pixels.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/str_format.h"
#include "client/data.h"
#include "client/dicom_folder.h"
#include "client/image_folder.h"

namespace hansa {
namespace {

const std::vector<std::string> kClasses = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                           "sandal",  "shirt",   "sneaker",  "bag",   "boot"};

Status WriteSplit(const Dataset& data, const std::string& png_dir, const std::string& dicom_dir) {
  namespace fs = std::filesystem;
  for (const std::string& name : kClasses) fs::create_directories(fs::path(png_dir) / name);
  fs::create_directories(dicom_dir);
  std::ofstream png_manifest(png_dir + "/labels.csv"), dicom_manifest(dicom_dir + "/labels.csv");
  png_manifest << "file,label\n";
  dicom_manifest << "file,label\n";
  DicomWriteOptions dicom;
  dicom.bits_stored = 12;
  dicom.rescale_slope = 0.0625;
  dicom.rescale_intercept = -1020;
  dicom.window_center = -892;
  dicom.window_width = 256;
  const int64_t n = data.pixels_per_image();
  std::vector<uint16_t> stored(static_cast<size_t>(n));
  for (int64_t i = 0; i < data.size(); ++i) {
    const uint8_t* p = data.images.data() + i * n;
    const std::string& label = kClasses[data.labels[i]];
    const std::string png = absl::StrFormat("%s/%05d.png", label, i);
    RETURN_IF_ERROR(
        WriteGreyPng(png_dir + "/" + png, std::vector<uint8_t>(p, p + n), data.rows, data.cols));
    png_manifest << png << "," << label << "\n";
    for (int64_t j = 0; j < n; ++j) stored[j] = static_cast<uint16_t>(p[j] * 16);
    const std::string dcm = absl::StrFormat("%05d.dcm", i);
    RETURN_IF_ERROR(WriteGreyDicom(dicom_dir + "/" + dcm, stored, data.rows, data.cols, dicom));
    dicom_manifest << dcm << "," << label << "\n";
  }
  if (!png_manifest || !dicom_manifest) {
    return absl::InternalError(
        absl::StrCat("writing ", png_dir, "/labels.csv or ", dicom_dir, "/labels.csv failed"));
  }
  return absl::OkStatus();
}

// Loads a written training split back as a site would (manifest order) and checks that its
// pixels and labels are the IDX shard's; prints the decoding rate.
Status Verify(const Dataset& want, const std::string& png_dir, const std::string& dicom_dir) {
  using Clock = std::chrono::steady_clock;
  ImageFolderOptions png;
  png.classes = kClasses;
  png.manifest = "labels.csv";
  DicomFolderOptions dicom;
  dicom.classes = kClasses;
  const auto t0 = Clock::now();
  ASSIGN_OR_RETURN(const Dataset from_png, LoadImageFolder(png_dir, png));
  const auto t1 = Clock::now();
  ASSIGN_OR_RETURN(const Dataset from_dicom, LoadDicomFolder(dicom_dir, dicom));
  const auto t2 = Clock::now();
  for (const auto& [name, got] : {std::pair{"PNG", &from_png}, std::pair{"DICOM", &from_dicom}}) {
    if (got->images != want.images || got->labels != want.labels) {
      return absl::InternalError(absl::StrCat(name, " files read back differ from the IDX data"));
    }
  }
  const auto rate = [&](auto a, auto b) {
    return want.size() / std::chrono::duration<double>(b - a).count();
  };
  std::cout << absl::StrFormat("  read back equal to IDX: PNG %.0f images/s, DICOM %.0f images/s\n",
                               rate(t0, t1), rate(t1, t2));
  return absl::OkStatus();
}

Status Run(const std::string& out, int sites, int64_t train_limit, int64_t test_limit,
           bool verify) {
  ASSIGN_OR_RETURN(const Dataset train, LoadMnistStyle(kFashionMnistDir, Split::kTrain));
  ASSIGN_OR_RETURN(const Dataset test, LoadMnistStyle(kFashionMnistDir, Split::kTest));
  for (int k = 0; k < sites; ++k) {
    const std::string site = absl::StrFormat("site-%c", static_cast<char>('a' + k));
    for (const auto& [split, all, limit] :
         {std::tuple{"train", &train, train_limit}, std::tuple{"test", &test, test_limit}}) {
      ASSIGN_OR_RETURN(Dataset shard, Shard(*all, k, sites));
      if (limit > 0) shard = Head(shard, limit);
      const std::string png = absl::StrFormat("%s/png/%s/%s", out, site, split);
      const std::string dicom = absl::StrFormat("%s/dicom/%s/%s", out, site, split);
      RETURN_IF_ERROR(WriteSplit(shard, png, dicom));
      std::cout << site << " " << split << ": " << shard.size() << " images\n";
      if (verify) RETURN_IF_ERROR(Verify(shard, png, dicom));
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace hansa

int main(int argc, char** argv) {
  CLI::App app{"Writes Fashion-MNIST as three sites' PNG class folders and DICOM files"};
  std::string out;
  int sites = 3;
  int64_t train = 5000, test = 0;
  bool verify = false;
  app.add_option("OUT", out, "the folder to write png/ and dicom/ into")->required();
  app.add_option("--sites", sites, "how many sites (a, b, c, ...)")->check(CLI::Range(1, 26));
  app.add_option("--train", train, "training images per site (0: its whole shard)");
  app.add_option("--test", test, "test images per site (0: its whole shard)");
  app.add_flag("--verify", verify,
               "read each split back as a site does and check it against the IDX data");
  CLI11_PARSE(app, argc, argv);
  const hansa::Status status = hansa::Run(out, sites, train, test, verify);
  if (!status.ok()) {
    std::cerr << "hansa-example-images: " << status << "\n";
    return 1;
  }
  return 0;
}
