// Images in class folders (client/image_folder.h): Fashion-MNIST written out as PNG folders
// loads back to the same pixels and labels; JPEG and resizing go through their libraries; a
// file that is no image is refused by name.
#include "client/image_folder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <jpeglib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_format.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "images_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A grey JPEG at quality 100, written with libjpeg.
void WriteJpeg(const std::string& path, const std::vector<uint8_t>& pixels, int rows, int cols) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  jpeg_compress_struct info;
  jpeg_error_mgr error;
  info.err = jpeg_std_error(&error);
  jpeg_create_compress(&info);
  jpeg_stdio_dest(&info, f);
  info.image_width = cols;
  info.image_height = rows;
  info.input_components = 1;
  info.in_color_space = JCS_GRAYSCALE;
  jpeg_set_defaults(&info);
  jpeg_set_quality(&info, 100, TRUE);
  jpeg_start_compress(&info, TRUE);
  while (info.next_scanline < info.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(pixels.data()) + info.next_scanline * cols;
    jpeg_write_scanlines(&info, &row, 1);
  }
  jpeg_finish_compress(&info);
  jpeg_destroy_compress(&info);
  std::fclose(f);
}

TEST(ImageFolderTest, FashionMnistAsPngFoldersLoadsBackToTheSamePixelsAndLabels) {
  auto mnist = LoadMnistStyle(kFashionMnistDir, Split::kTest);  // dataset-fashion-mnist
  ASSERT_TRUE(mnist.ok()) << mnist.status();
  const Dataset sample = Head(*mnist, 200);
  const std::string root = FreshDir("fmnist");
  const std::vector<std::string> names = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                          "sandal",  "shirt",   "sneaker",  "bag",   "boot"};
  for (const std::string& n : names) std::filesystem::create_directories(root + "/" + n);
  for (int64_t i = 0; i < sample.size(); ++i) {
    const auto* p = sample.images.data() + i * 784;
    ASSERT_TRUE(WriteGreyPng(absl::StrFormat("%s/%s/%05d.png", root, names[sample.labels[i]], i),
                             std::vector<uint8_t>(p, p + 784), 28, 28)
                    .ok());
  }
  ImageFolderOptions options;
  options.classes = names;  // the study's label order, not the folders' alphabetical one
  auto loaded = LoadImageFolder(root, options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), sample.size());
  // Folder by folder: every image comes back with its label and its exact pixels.
  std::multiset<std::pair<uint8_t, std::vector<uint8_t>>> want, got;
  for (int64_t i = 0; i < sample.size(); ++i) {
    const auto* p = sample.images.data() + i * 784;
    want.insert({sample.labels[i], std::vector<uint8_t>(p, p + 784)});
    const auto* q = loaded->images.data() + i * 784;
    got.insert({loaded->labels[i], std::vector<uint8_t>(q, q + 784)});
  }
  EXPECT_TRUE(want == got);
}

TEST(ImageFolderTest, JpegDecodingAndResizingAreTheLibrariesAndBilinear) {
  // A 56 x 56 grey ramp as JPEG, resized to 28 x 28: close to the ramp at half resolution.
  const std::string root = FreshDir("jpeg");
  std::filesystem::create_directories(root + "/a");
  std::vector<uint8_t> ramp(56 * 56);
  for (int y = 0; y < 56; ++y) {
    for (int x = 0; x < 56; ++x) ramp[y * 56 + x] = static_cast<uint8_t>(x * 4);
  }
  WriteJpeg(root + "/a/ramp.JPG", ramp, 56, 56);
  auto loaded = LoadImageFolder(root, ImageFolderOptions{});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 1);
  for (int x = 0; x < 28; ++x) {
    const double expected = (2 * x + 0.5) * 4;  // the centre of two source columns
    EXPECT_NEAR(loaded->images[14 * 28 + x], expected, 3.0) << x;
  }
}

TEST(ImageFolderTest, FilesThatAreNoImagesAndUnknownClassFoldersAreRefusedByName) {
  const std::string root = FreshDir("bad");
  std::filesystem::create_directories(root + "/cat");
  std::ofstream(root + "/cat/broken.png") << "\x89PNG but not really";
  auto broken = LoadImageFolder(root, ImageFolderOptions{});
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(broken.status().message()),
              HasSubstr("cat/broken.png: not a PNG libpng can read"));
  std::filesystem::remove(root + "/cat/broken.png");
  std::ofstream(root + "/cat/notes.png") << "hello";
  auto text = LoadImageFolder(root, ImageFolderOptions{});
  EXPECT_THAT(std::string(text.status().message()), HasSubstr("neither a PNG nor a JPEG"));
  std::filesystem::remove(root + "/cat/notes.png");
  auto empty = LoadImageFolder(root, ImageFolderOptions{});
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("no .png, .jpg or .jpeg images"));
  ImageFolderOptions named;
  named.classes = {"dog", "bird"};  // "cat" is not one of them: a typo would drop its images
  auto unknown = LoadImageFolder(root, named);
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("folder 'cat' is not one of the study's classes (dog, bird)"));
  EXPECT_EQ(LoadImageFolder(root + "/absent", named).status().code(), absl::StatusCode::kNotFound);
}

TEST(ImageFolderTest, AManifestLabelsTheImagesItListsInItsOrderWhateverTheirFolders) {
  const std::string root = FreshDir("manifest");
  std::filesystem::create_directories(root + "/scans");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(WriteGreyPng(absl::StrFormat("%s/scans/%d.png", root, i),
                             std::vector<uint8_t>(28 * 28, static_cast<uint8_t>(10 * i)), 28, 28)
                    .ok());
  }
  std::ofstream(root + "/labels.csv") << "file,label\nscans/2.png,dog\nscans/0.png,0\n";
  ImageFolderOptions options;
  options.classes = {"cat", "dog"};
  options.manifest = "labels.csv";
  auto loaded = LoadImageFolder(root, options);  // scans/1.png is not listed: not loaded
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->labels, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(loaded->images[0], 20);
  EXPECT_EQ(loaded->images[28 * 28], 0);

  std::ofstream(root + "/labels.csv") << "file,label\nscans/1.png,bird\n";
  auto unknown = LoadImageFolder(root, options);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("labels.csv:2: label 'bird' is neither one of the study's classes (cat, "
                        "dog) nor an id below 2"));
  std::ofstream(root + "/labels.csv") << "file,label\nscans/0.png,cat\nscans/9.png,dog\n";
  auto missing = LoadImageFolder(root, options);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("labels.csv:3: " + root + "/scans/9.png does not exist"));
  options.manifest = "absent.csv";
  EXPECT_EQ(LoadImageFolder(root, options).status().code(), absl::StatusCode::kNotFound);
}

TEST(ImageFolderTest, ResizeGreyKeepsAFlatImageFlatAndAveragesNeighbours) {
  const std::vector<uint8_t> flat(6 * 4, 77);
  EXPECT_EQ(ResizeGrey(flat.data(), 6, 4, 3, 2), std::vector<uint8_t>(6, 77));
  const std::vector<uint8_t> columns = {0, 100, 0, 100};  // 2 x 2, columns 0 and 100
  EXPECT_EQ(ResizeGrey(columns.data(), 2, 2, 1, 1), std::vector<uint8_t>{50});
}

}  // namespace
}  // namespace hansa
