// PNG through libpng. libpng reports errors by calling an error function that
// must not return; ours longjmps back into the two small functions below that
// hold the setjmp. Those functions touch only plain data, so the jump skips no
// C++ destructor; buffers are allocated outside them.
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "data/image.h"
#include "data/image_codecs.h"

namespace clipscale::image_internal {
namespace {

struct PngContext {
  const unsigned char* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  bool truncated = false;
  char message[200] = {0};
};

void OnPngError(png_structp png, png_const_charp message) {
  auto* context = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(context->message, sizeof(context->message), "%s", message);
  png_longjmp(png, 1);
}

void OnPngWarning(png_structp, png_const_charp) {}

void ReadFromMemory(png_structp png, png_bytep out, png_size_t length) {
  auto* context = static_cast<PngContext*>(png_get_io_ptr(png));
  if (length > context->size - context->pos) {
    context->truncated = true;
    png_error(png, "file is truncated");
  }
  std::memcpy(out, context->data + context->pos, length);
  context->pos += length;
}

// Owns libpng's structs; lives in DecodePng's frame, which a longjmp never leaves.
struct PngReader {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngReader() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

// The decoded layout after libpng's transforms.
struct PngLayout {
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  int channels = 0;   // 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
  int bit_depth = 0;  // 8, or 16 for 16-bit grey only
  size_t row_bytes = 0;
};

// Reads the header and sets the transforms that give Pillow's samples: palettes
// expanded, 1/2/4-bit grey scaled to 8 bits (Pillow's L;2/L;4 unpackers multiply
// by 0x55/0x11, as libpng does), 16-bit samples cut to their high byte (Pillow's
// ;16B unpackers), except 16-bit grey which Pillow keeps as I;16.
bool ReadPngHeader(PngReader* reader, PngContext* context, PngLayout* layout) {
  png_structp png = reader->png;
  png_infop info = reader->info;
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, context, ReadFromMemory);
  png_read_info(png, info);
  int color_type = png_get_color_type(png, info);
  int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16 && color_type != PNG_COLOR_TYPE_GRAY) png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  layout->width = png_get_image_width(png, info);
  layout->height = png_get_image_height(png, info);
  layout->channels = png_get_channels(png, info);
  layout->bit_depth = png_get_bit_depth(png, info);
  layout->row_bytes = png_get_rowbytes(png, info);
  return true;
}

bool ReadPngRows(PngReader* reader, png_bytepp rows) {
  if (setjmp(png_jmpbuf(reader->png))) return false;
  // Pillow checks the CRCs of the chunks before the image data but not those of
  // IDAT chunks, and it ignores whatever follows the pixels (no png_read_end).
  png_set_crc_action(reader->png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
  png_read_image(reader->png, rows);
  return true;
}

// Pillow's convert("RGB"): grey replicated, alpha dropped, I;16 clipped to 255.
void ToRgb(const PngLayout& layout, const uint8_t* in, uint8_t* out) {
  const size_t pixels = static_cast<size_t>(layout.width) * layout.height;
  const int channels = layout.channels;
  if (layout.bit_depth == 16) {
    for (size_t i = 0; i < pixels; ++i, in += 2, out += 3) {
      int v = (in[0] << 8) | in[1];
      out[0] = out[1] = out[2] = static_cast<uint8_t>(v > 255 ? 255 : v);
    }
  } else if (channels <= 2) {
    for (size_t i = 0; i < pixels; ++i, in += channels, out += 3) out[0] = out[1] = out[2] = in[0];
  } else {
    for (size_t i = 0; i < pixels; ++i, in += channels, out += 3) std::memcpy(out, in, 3);
  }
}

}  // namespace

absl::Status DecodePng(const std::string& bytes, Image* image) {
  PngContext context;
  context.data = reinterpret_cast<const unsigned char*>(bytes.data());
  context.size = bytes.size();
  PngReader reader;
  reader.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &context, OnPngError, OnPngWarning);
  if (reader.png != nullptr) reader.info = png_create_info_struct(reader.png);
  if (reader.info == nullptr) return absl::ResourceExhaustedError("PNG: out of memory");

  PngLayout layout;
  if (!ReadPngHeader(&reader, &context, &layout)) {
    if (context.truncated) return absl::DataLossError("PNG: file is truncated in its header");
    return absl::InvalidArgumentError(absl::StrCat("PNG: invalid header: ", context.message));
  }
  RETURN_IF_ERROR(CheckImageSize("PNG", layout.width, layout.height));
  const bool direct = layout.channels == 3 && layout.bit_depth == 8;
  if (!direct && layout.bit_depth == 16 && layout.channels != 1) {
    return absl::InternalError("PNG: unexpected 16-bit layout after transforms");
  }
  uint8_t* rgb = SizeImage(image, static_cast<int>(layout.width), static_cast<int>(layout.height));
  std::vector<uint8_t> decoded(direct ? 0 : layout.row_bytes * layout.height);
  uint8_t* base = direct ? rgb : decoded.data();
  std::vector<png_bytep> rows(layout.height);
  for (png_uint_32 y = 0; y < layout.height; ++y) rows[y] = base + y * layout.row_bytes;
  if (!ReadPngRows(&reader, rows.data())) {
    return absl::DataLossError(absl::StrCat("PNG: corrupt image data: ", context.message));
  }
  if (!direct) ToRgb(layout, decoded.data(), rgb);
  return absl::OkStatus();
}

}  // namespace clipscale::image_internal
