#include "vla/jpeg.h"

#if VLA_HAVE_JPEG
#include <csetjmp>
#include <cstdio>

#include <jpeglib.h>
#endif

namespace vla {

bool jpeg_sniff(const uint8_t* data, size_t size) { return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF; }

#if VLA_HAVE_JPEG

bool jpeg_available() { return true; }

namespace {

// libjpeg reports errors through a callback that must not return: jump back out of the decode.
struct ErrorMgr {
    jpeg_error_mgr pub;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo) {
    auto* e = reinterpret_cast<ErrorMgr*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, e->message);
    std::longjmp(e->jump, 1);
}

// Warnings (level -1: corrupt data, premature end) are errors here: a damaged frame must not
// reach the model as grey blocks.
void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) on_error(cinfo);
}

constexpr long kMaxPixels = 8192L * 8192L;

}  // namespace

Status jpeg_decode_rgb(const uint8_t* data, size_t size, const std::string& label, std::vector<uint8_t>* out, int* w, int* h) {
    if (!jpeg_sniff(data, size)) return {Code::image_decode, label + ": not JPEG data (no SOI marker)"};
    jpeg_decompress_struct cinfo;
    ErrorMgr err;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    err.message[0] = '\0';
    // Everything the jump can skip is set up before setjmp; the decoder owns no C++ objects.
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return {Code::image_decode, label + ": cannot decode JPEG (" + std::string(err.message) + ")"};
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, const_cast<unsigned char*>(data), static_cast<unsigned long>(size));
    jpeg_read_header(&cinfo, TRUE);
    // Greyscale and YCbCr come out as RGB; libjpeg turns CMYK and YCCK (print, some scanners)
    // into CMYK only, converted to RGB below.
    const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    if (long(cinfo.image_width) * long(cinfo.image_height) > kMaxPixels) {
        jpeg_destroy_decompress(&cinfo);
        return {Code::image_decode, label + ": JPEG of " + std::to_string(cinfo.image_width) + "x" + std::to_string(cinfo.image_height) + " exceeds 8192x8192 pixels"};
    }
    jpeg_start_decompress(&cinfo);
    const int width = int(cinfo.output_width), height = int(cinfo.output_height);
    out->resize(size_t(width) * size_t(height) * 3);
    // CMYK rows go through a buffer the decoder owns (so that the longjmp leaks nothing).
    JSAMPARRAY cmyk_row = cmyk ? (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE, JDIMENSION(width) * 4, 1) : nullptr;
    // Adobe's CMYK JPEGs (an APP14 marker) store inverted ink values.
    const bool inverted = cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t* dst = out->data() + size_t(cinfo.output_scanline) * size_t(width) * 3;
        if (!cmyk) {
            JSAMPROW row = dst;
            jpeg_read_scanlines(&cinfo, &row, 1);
            continue;
        }
        jpeg_read_scanlines(&cinfo, cmyk_row, 1);
        const uint8_t* src = cmyk_row[0];
        for (int x = 0; x < width; ++x, src += 4, dst += 3) {
            const unsigned k = inverted ? src[3] : 255u - src[3];
            for (int c = 0; c < 3; ++c) {
                const unsigned v = inverted ? src[c] : 255u - src[c];
                dst[c] = uint8_t((v * k + 127) / 255);
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    *w = width;
    *h = height;
    return Status::OK();
}

#else

bool jpeg_available() { return false; }

Status jpeg_decode_rgb(const uint8_t*, size_t, const std::string& label, std::vector<uint8_t>*, int*, int*) {
    return {Code::backend, label + ": this addon was built without libjpeg; decode JPEG before inference"};
}

#endif

}  // namespace vla
