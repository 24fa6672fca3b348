// Host image preprocessing (the CPU backend's op, and the reference for other backends).
#pragma once
#include "vla/backend.h"

namespace vla {

// Checks an ImageInput's geometry against its buffer: Code::image naming what is wrong.
Status image_validate(const ImageInput& in, const char* label);

// in -> planar normalised RGB out[3][p.size * p.size].
// Follows LLaVA-1.5 / CLIPImageProcessor: pad mode letterboxes to a square of side max(w, h)
// filled with round(mean * 255) (expand2square); crop mode resizes the short side to p.size;
// both resize with PIL-style antialiased bicubic (a = -0.5), rounding to 8 bits after each pass
// as PIL does for 8-bit images, then centre-crop, rescale by 1/255 and normalise.
Status image_preprocess(const ImageInput& in, const PreprocessParams& p, float* out);

}  // namespace vla
