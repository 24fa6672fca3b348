// Native JPEG decoding: a frame encoded here with libjpeg decodes to its size and (lossy) pixels;
// truncated, garbled, empty and non-JPEG bytes are Code::image_decode, never a crash.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "vla/jpeg.h"

#if VLA_HAVE_JPEG
#include <jpeglib.h>

namespace {

// A horizontal gradient with a bright square, encoded at quality 95, 4:4:4.
std::vector<uint8_t> encode(int w, int h, std::vector<uint8_t>* rgb) {
    rgb->resize(size_t(w) * h * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            uint8_t* p = rgb->data() + (size_t(y) * w + x) * 3;
            const bool sq = x > w / 4 && x < w / 2 && y > h / 4 && y < h / 2;
            p[0] = uint8_t(sq ? 250 : x * 255 / w);
            p[1] = uint8_t(sq ? 240 : y * 255 / h);
            p[2] = uint8_t(sq ? 30 : 128);
        }
    jpeg_compress_struct c;
    jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char* mem = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &mem, &size);
    c.image_width = JDIMENSION(w);
    c.image_height = JDIMENSION(h);
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    for (int i = 0; i < 3; ++i) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = rgb->data() + size_t(c.next_scanline) * w * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    std::vector<uint8_t> out(mem, mem + size);
    free(mem);
    return out;
}

}  // namespace

TEST_CASE("decodes a JPEG to its size and close to its pixels") {
    REQUIRE(vla::jpeg_available());
    std::vector<uint8_t> rgb;
    const auto jpg = encode(97, 45, &rgb);  // awkward size: partial MCUs
    CHECK(vla::jpeg_sniff(jpg.data(), jpg.size()));
    std::vector<uint8_t> out;
    int w = 0, h = 0;
    const vla::Status st = vla::jpeg_decode_rgb(jpg.data(), jpg.size(), "camera 'front'", &out, &w, &h);
    REQUIRE(st.ok());
    CHECK(w == 97);
    CHECK(h == 45);
    REQUIRE(out.size() == rgb.size());
    double err = 0;
    for (size_t i = 0; i < out.size(); ++i) err += std::fabs(double(out[i]) - double(rgb[i]));
    CHECK(err / double(out.size()) < 3.0);  // quality 95
}

// A CMYK JPEG of flat patches (libjpeg writes CMYK with Adobe's APP14 marker, whose convention
// is inverted ink: 255 = none), as print workflows and some scanners produce.
std::vector<uint8_t> encode_cmyk(int w, int h, const uint8_t (&patches)[4][4]) {
    std::vector<uint8_t> cmyk(size_t(w) * h * 4);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const uint8_t* p = patches[(y * 2 / h) * 2 + x * 2 / w];
            std::copy(p, p + 4, cmyk.data() + (size_t(y) * w + x) * 4);
        }
    jpeg_compress_struct c;
    jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char* mem = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &mem, &size);
    c.image_width = JDIMENSION(w);
    c.image_height = JDIMENSION(h);
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 98, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = cmyk.data() + size_t(c.next_scanline) * w * 4;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    std::vector<uint8_t> out(mem, mem + size);
    free(mem);
    return out;
}

TEST_CASE("CMYK JPEGs decode to RGB (Adobe's inverted ink: r = c * k / 255)") {
    // {c, m, y, k} as stored (inverted): white, red, a mid grey, black
    const uint8_t patches[4][4] = {{255, 255, 255, 255}, {255, 0, 0, 255}, {255, 255, 255, 128}, {255, 255, 255, 0}};
    const auto jpg = encode_cmyk(32, 32, patches);
    std::vector<uint8_t> out;
    int w = 0, h = 0;
    const vla::Status st = vla::jpeg_decode_rgb(jpg.data(), jpg.size(), "camera 'cmyk'", &out, &w, &h);
    REQUIRE(st.ok());
    REQUIRE(w == 32);
    REQUIRE(h == 32);
    auto px = [&](int x, int y, int c) { return int(out[(size_t(y) * w + x) * 3 + c]); };
    const int want[4][3] = {{255, 255, 255}, {255, 0, 0}, {128, 128, 128}, {0, 0, 0}};
    for (int p = 0; p < 4; ++p) {
        const int x = (p % 2) * 16 + 8, y = (p / 2) * 16 + 8;  // patch centres
        for (int c = 0; c < 3; ++c) CHECK(std::abs(px(x, y, c) - want[p][c]) <= 4);
    }
}

TEST_CASE("bad bytes are image_decode naming the label") {
    std::vector<uint8_t> rgb;
    const auto jpg = encode(64, 48, &rgb);
    std::vector<uint8_t> garbled = jpg;
    for (size_t i = garbled.size() / 3; i < garbled.size() / 3 + 200 && i < garbled.size(); ++i) garbled[i] ^= 0x5a;
    const std::vector<std::vector<uint8_t>> bad = {
        std::vector<uint8_t>(jpg.begin(), jpg.begin() + jpg.size() / 2),  // truncated
        std::vector<uint8_t>(jpg.begin(), jpg.begin() + 20),              // header only
        garbled,
        {0xFF, 0xD8, 0xFF},                                                // SOI and nothing
        {1, 2, 3, 4},                                                      // not JPEG
        {},
    };
    for (const auto& b : bad) {
        std::vector<uint8_t> out;
        int w = 0, h = 0;
        const vla::Status st = vla::jpeg_decode_rgb(b.data(), b.size(), "camera 'left'", &out, &w, &h);
        CHECK(st.code() == vla::Code::image_decode);
        CHECK(st.message().find("camera 'left'") != std::string::npos);
    }
    // The decoder is usable after failures.
    std::vector<uint8_t> out;
    int w = 0, h = 0;
    CHECK(vla::jpeg_decode_rgb(jpg.data(), jpg.size(), "x", &out, &w, &h).ok());
}

#else

TEST_CASE("without libjpeg the decoder says so") {
    CHECK_FALSE(vla::jpeg_available());
    std::vector<uint8_t> out;
    int w = 0, h = 0;
    CHECK(vla::jpeg_decode_rgb(nullptr, 0, "x", &out, &w, &h).code() == vla::Code::backend);
}

#endif
