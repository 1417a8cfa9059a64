#include "client/image_folder.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstring>
#include <filesystem>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

// Images larger than this many pixels are refused before decoding.
constexpr uint64_t kMaxPixels = uint64_t{1} << 28;

struct GreyImage {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> pixels;
};

StatusOr<GreyImage> DecodePng(const std::string& bytes, const std::string& name) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not a PNG libpng can read (", image.message, ")"));
  }
  if (static_cast<uint64_t>(image.width) * image.height > kMaxPixels) {
    png_image_free(&image);
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", image.width, " x ", image.height,
                                                   " pixels is over the limit of ", kMaxPixels));
  }
  image.format = PNG_FORMAT_GRAY;
  GreyImage out;
  out.rows = image.height;
  out.cols = image.width;
  out.pixels.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr)) {
    const std::string why = image.message;
    png_image_free(&image);
    return absl::InvalidArgumentError(absl::StrCat(name, ": PNG decoding failed (", why, ")"));
  }
  return out;
}

struct JpegError {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void JpegFail(j_common_ptr info) {
  auto* error = reinterpret_cast<JpegError*>(info->err);
  (*info->err->format_message)(info, error->message);
  std::longjmp(error->jump, 1);
}

// libjpeg reports errors by longjmp (JpegFail): everything written after setjmp lives in the
// caller's *out, not in locals of this function, whose values a longjmp would leave unspecified.
Status DecodeJpeg(const std::string& bytes, const std::string& name, GreyImage* out) {
  jpeg_decompress_struct info;
  JpegError error;
  info.err = jpeg_std_error(&error.manager);
  error.manager.error_exit = JpegFail;
  if (setjmp(error.jump)) {
    jpeg_destroy_decompress(&info);
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": JPEG decoding failed (", error.message, ")"));
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  jpeg_read_header(&info, TRUE);
  if (static_cast<uint64_t>(info.image_width) * info.image_height > kMaxPixels) {
    jpeg_destroy_decompress(&info);
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", info.image_width, " x ",
                                                   info.image_height,
                                                   " pixels is over the limit of ", kMaxPixels));
  }
  info.out_color_space = JCS_GRAYSCALE;
  jpeg_start_decompress(&info);
  out->rows = info.output_height;
  out->cols = info.output_width;
  out->pixels.resize(static_cast<size_t>(out->rows * out->cols));
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = out->pixels.data() + static_cast<size_t>(info.output_scanline) * out->cols;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return absl::OkStatus();
}

bool IsImage(const std::filesystem::path& p) {
  const std::string ext = absl::AsciiStrToLower(p.extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

// The fields of one CSV line (RFC 4180 quoting, no line breaks inside quotes); false for an
// unterminated quote.
bool SplitCsvLine(absl::string_view line, std::vector<std::string>* fields) {
  fields->clear();
  std::string field;
  size_t i = 0;
  while (true) {
    field.clear();
    if (i < line.size() && line[i] == '"') {
      for (++i;; ++i) {
        if (i >= line.size()) return false;
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            ++i;
          } else {
            ++i;
            break;
          }
        } else {
          field += line[i];
        }
      }
      const size_t comma = line.find(',', i);
      i = comma == absl::string_view::npos ? line.size() : comma;
    } else {
      const size_t comma = line.find(',', i);
      const size_t end = comma == absl::string_view::npos ? line.size() : comma;
      field.assign(line.data() + i, end - i);
      i = end;
    }
    fields->push_back(std::string(absl::StripAsciiWhitespace(field)));
    if (i >= line.size()) return true;
    ++i;  // the comma
  }
}

// A manifest's label: one of `classes`, or an integer id.
StatusOr<uint8_t> LabelId(const std::string& label, const std::vector<std::string>& classes) {
  const auto named = std::find(classes.begin(), classes.end(), label);
  if (named != classes.end()) return static_cast<uint8_t>(named - classes.begin());
  uint32_t id = 0;
  const bool digits = !label.empty() && std::all_of(label.begin(), label.end(),
                                                    [](char c) { return c >= '0' && c <= '9'; });
  if (digits && absl::SimpleAtoi(label, &id)) {
    if (!classes.empty() && id < classes.size()) return static_cast<uint8_t>(id);
    if (classes.empty() && id < 256) return static_cast<uint8_t>(id);
  }
  if (classes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("label '", label,
                     "' is no class id 0..255, and without the study's classes (data.classes) "
                     "a label must be an id"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("label '", label, "' is neither one of the study's classes (",
                   absl::StrJoin(classes, ", "), ") nor an id below ", classes.size()));
}

Status LoadManifestImages(const std::string& root, const ImageFolderOptions& options,
                          Dataset* data) {
  namespace fs = std::filesystem;
  const std::string manifest = (fs::path(root) / options.manifest).string();
  ASSIGN_OR_RETURN(const std::vector<LabelledFile> files,
                   ReadLabelManifest(manifest, options.classes));
  data->labels.reserve(files.size());
  data->images.reserve(files.size() * static_cast<size_t>(options.rows * options.cols));
  std::error_code ec;
  for (const LabelledFile& file : files) {
    if (!fs::is_regular_file(file.path, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(manifest, ":", file.line, ": ", file.path,
                                                     " does not exist or is not a file"));
    }
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(file.path, options.max_file_bytes));
    ASSIGN_OR_RETURN(std::vector<uint8_t> pixels,
                     DecodeGreyImage(bytes, file.path, options.rows, options.cols));
    data->images.insert(data->images.end(), pixels.begin(), pixels.end());
    data->labels.push_back(file.label);
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<uint8_t> ResizeGrey(const uint8_t* pixels, int64_t in_rows, int64_t in_cols,
                                int64_t rows, int64_t cols) {
  if (in_rows == rows && in_cols == cols) {
    return std::vector<uint8_t>(pixels, pixels + rows * cols);
  }
  std::vector<uint8_t> out(static_cast<size_t>(rows * cols));
  const double sy = static_cast<double>(in_rows) / rows, sx = static_cast<double>(in_cols) / cols;
  for (int64_t y = 0; y < rows; ++y) {
    const double fy = std::clamp((y + 0.5) * sy - 0.5, 0.0, static_cast<double>(in_rows - 1));
    const int64_t y0 = static_cast<int64_t>(fy), y1 = std::min(y0 + 1, in_rows - 1);
    const double wy = fy - y0;
    for (int64_t x = 0; x < cols; ++x) {
      const double fx = std::clamp((x + 0.5) * sx - 0.5, 0.0, static_cast<double>(in_cols - 1));
      const int64_t x0 = static_cast<int64_t>(fx), x1 = std::min(x0 + 1, in_cols - 1);
      const double wx = fx - x0;
      auto at = [&](int64_t r, int64_t c) { return static_cast<double>(pixels[r * in_cols + c]); };
      const double v = (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1)) +
                       wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1));
      out[y * cols + x] = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0)));
    }
  }
  return out;
}

StatusOr<std::vector<LabelledFile>> ReadLabelManifest(const std::string& path,
                                                      const std::vector<std::string>& classes) {
  namespace fs = std::filesystem;
  if (classes.size() > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", classes.size(), " classes, more than the 256 labels can hold"));
  }
  ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
  const fs::path dir = fs::path(path).parent_path();
  std::vector<LabelledFile> files;
  absl::flat_hash_map<std::string, int64_t> seen;  // file -> line
  std::vector<std::string> fields;
  int64_t line_number = 0;
  bool header = true;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    const std::string where = absl::StrCat(path, ":", line_number, ": ");
    if (!SplitCsvLine(line, &fields)) {
      return absl::InvalidArgumentError(absl::StrCat(where, "a quote that does not close"));
    }
    if (header) {
      if (fields.size() != 2 || fields[0] != "file" || fields[1] != "label") {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "the header must be `file,label`, not `", line, "`"));
      }
      header = false;
      continue;
    }
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, fields.size(), " fields; a row is `file,label`"));
    }
    if (fields[0].empty()) return absl::InvalidArgumentError(absl::StrCat(where, "no file name"));
    LabelledFile file;
    file.path = (dir / fields[0]).string();  // an absolute name stays as it is
    file.line = line_number;
    auto label = LabelId(fields[1], classes);
    if (!label.ok())
      return absl::InvalidArgumentError(absl::StrCat(where, label.status().message()));
    file.label = *label;
    const auto [previous, inserted] = seen.emplace(file.path, line_number);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, fields[0], " is listed twice (line ", previous->second, " too)"));
    }
    files.push_back(std::move(file));
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no rows; a manifest is a `file,label` header and one row per file"));
  }
  return files;
}

StatusOr<std::vector<uint8_t>> DecodeGreyImage(const std::string& bytes, const std::string& name,
                                               int64_t rows, int64_t cols) {
  static constexpr unsigned char kPng[] = {0x89, 'P', 'N', 'G'};
  static constexpr unsigned char kJpeg[] = {0xFF, 0xD8, 0xFF};
  GreyImage image;
  if (bytes.size() >= 4 && std::memcmp(bytes.data(), kPng, 4) == 0) {
    ASSIGN_OR_RETURN(image, DecodePng(bytes, name));
  } else if (bytes.size() >= 3 && std::memcmp(bytes.data(), kJpeg, 3) == 0) {
    RETURN_IF_ERROR(DecodeJpeg(bytes, name, &image));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(name, ": neither a PNG nor a JPEG file"));
  }
  if (image.rows == 0 || image.cols == 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": an image without pixels"));
  }
  if (image.rows == rows && image.cols == cols) return std::move(image.pixels);
  return ResizeGrey(image.pixels.data(), image.rows, image.cols, rows, cols);
}

StatusOr<std::vector<std::string>> ImageFolderClasses(const std::string& root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat("image folder ", root, " does not exist"));
  }
  std::vector<std::string> classes;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (entry.is_directory()) classes.push_back(entry.path().filename().string());
  }
  std::sort(classes.begin(), classes.end());
  return classes;
}

StatusOr<Dataset> LoadImageFolder(const std::string& root, const ImageFolderOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!options.manifest.empty()) {
    if (!fs::is_directory(root, ec)) {
      return absl::NotFoundError(absl::StrCat("image folder ", root, " does not exist"));
    }
    Dataset data;
    data.rows = options.rows;
    data.cols = options.cols;
    RETURN_IF_ERROR(LoadManifestImages(root, options, &data));
    RETURN_IF_ERROR(data.Validate());
    return data;
  }
  ASSIGN_OR_RETURN(const std::vector<std::string> found, ImageFolderClasses(root));
  const std::vector<std::string>& classes = options.classes.empty() ? found : options.classes;
  if (classes.size() > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat(root, ": ", classes.size(), " classes, more than the 256 labels can hold"));
  }
  Dataset data;
  data.rows = options.rows;
  data.cols = options.cols;
  // A site may lack some classes (its data is its own); a folder that is no class of the study
  // is a mistake (a typo would silently drop its images).
  for (const std::string& folder : found) {
    if (std::find(classes.begin(), classes.end(), folder) == classes.end()) {
      return absl::InvalidArgumentError(absl::StrCat(root, ": folder '", folder,
                                                     "' is not one of the study's classes (",
                                                     absl::StrJoin(classes, ", "), ")"));
    }
  }
  for (size_t label = 0; label < classes.size(); ++label) {
    const fs::path dir = fs::path(root) / classes[label];
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.is_regular_file() && IsImage(entry.path())) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      ASSIGN_OR_RETURN(std::string bytes, ReadFile(file.string(), options.max_file_bytes));
      ASSIGN_OR_RETURN(std::vector<uint8_t> pixels,
                       DecodeGreyImage(bytes, file.string(), options.rows, options.cols));
      data.images.insert(data.images.end(), pixels.begin(), pixels.end());
      data.labels.push_back(static_cast<uint8_t>(label));
    }
  }
  if (data.labels.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(root, ": no .png, .jpg or .jpeg images in its class folders"));
  }
  RETURN_IF_ERROR(data.Validate());
  return data;
}

Status WriteGreyPng(const std::string& path, const std::vector<uint8_t>& pixels, int64_t rows,
                    int64_t cols) {
  if (static_cast<int64_t>(pixels.size()) != rows * cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(pixels.size(), " pixels for a ", rows, " x ", cols, " image"));
  }
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(cols);
  image.height = static_cast<png_uint_32>(rows);
  image.format = PNG_FORMAT_GRAY;
  if (!png_image_write_to_file(&image, path.c_str(), 0, pixels.data(), 0, nullptr)) {
    return absl::InternalError(absl::StrCat("writing ", path, ": ", image.message));
  }
  return absl::OkStatus();
}

}  // namespace hansa
