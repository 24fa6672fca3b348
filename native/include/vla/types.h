// Plain value types the public API shares with the backends: activation kinds (a model's
// config names them), camera frames as the host hands them in, and CLIP preprocessing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace vla {

enum class Unary { gelu, quick_gelu, silu };

enum class PixelFormat { rgb8, bgr8, rgba8, bgra8, mono8 };
int pixel_format_channels(PixelFormat f);
bool pixel_format_parse(const std::string& s, PixelFormat* out);  // "rgb8", "bgr8", ...

// A raw camera frame on the host, as sensor_msgs/Image carries it.
struct ImageInput {
    const uint8_t* data = nullptr;
    size_t size = 0;            // bytes available at data
    int width = 0, height = 0;
    int step = 0;               // bytes per row (>= width * channels)
    PixelFormat format = PixelFormat::rgb8;
};

// CLIP-style preprocessing: to square (letterbox with the mean colour, or resize the short side
// and centre-crop), PIL-style antialiased bicubic resize to `size`, rescale to [0,1], normalise.
struct PreprocessParams {
    int size = 336;
    bool pad = true;            // true: letterbox ("pad"); false: centre crop ("crop")
    float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
};

}  // namespace vla
