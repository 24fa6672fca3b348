// Host image preprocessing (the CPU backend's op, and the reference for other backends).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "backend.h"

namespace vla {

// Checks an ImageInput's geometry against its buffer: Code::image naming what is wrong.
Status image_validate(const ImageInput& in, const char* label);

// in -> planar normalised RGB out[3][p.size * p.size].
// Follows LLaVA-1.5 / CLIPImageProcessor: pad mode letterboxes to a square of side max(w, h)
// filled with round(mean * 255) (expand2square); crop mode resizes the short side to p.size;
// both resize with PIL-style antialiased bicubic (a = -0.5), rounding to 8 bits after each pass
// as PIL does for 8-bit images, then centre-crop, rescale by 1/255 and normalise.
// pf, when given, runs the row loops of both passes in parallel (the CPU backend's pool).
using ParallelFor = std::function<void(int64_t n, const std::function<void(int64_t, int64_t)>& fn)>;
Status image_preprocess(const ImageInput& in, const PreprocessParams& p, float* out, const ParallelFor& pf = {});

// The pieces of image_preprocess a device backend reuses, so both resample identically.
// Geometry: the canvas (letterbox square or the image), where the image sits in it, the
// resized size and the centre crop.
struct PreprocessGeometry {
    int canvas_w = 0, canvas_h = 0, img_x0 = 0, img_y0 = 0, out_w = 0, out_h = 0, crop_x = 0, crop_y = 0;
    uint8_t fill[3] = {0, 0, 0};  // letterbox colour, int(mean * 255)
};
PreprocessGeometry image_preprocess_geometry(const ImageInput& in, const PreprocessParams& p);
// PIL's antialiased bicubic taps along one axis, flattened: output i reads inputs
// [lo[i], lo[i] + count[i]) with weights w[off[i] ..].
struct ResampleTaps {
    std::vector<int32_t> lo, count, off;
    std::vector<float> w;
};
ResampleTaps image_resample_taps(int in_size, int out_size);

}  // namespace vla
