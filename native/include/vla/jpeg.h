// JPEG decoding in native code (libjpeg-turbo), so compressed camera frames are decoded on the
// inference thread into native memory: no decoded-frame buffers in the JS heap, whose external
// memory otherwise forces frequent full garbage collections in Node.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "vla/status.h"

namespace vla {

// True when the addon was built with libjpeg (VLA_HAVE_JPEG).
bool jpeg_available();

// True when the bytes start with a JPEG SOI marker.
bool jpeg_sniff(const uint8_t* data, size_t size);

// Decodes JPEG bytes to packed rgb8 (out resized to w * h * 3). Corrupt, truncated or
// unsupported data (libjpeg errors and warnings alike) is Code::image_decode naming `label`.
Status jpeg_decode_rgb(const uint8_t* data, size_t size, const std::string& label, std::vector<uint8_t>* out, int* w, int* h);

}  // namespace vla
