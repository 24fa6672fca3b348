#include "image.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace vla {

int pixel_format_channels(PixelFormat f) {
    switch (f) {
    case PixelFormat::rgb8: case PixelFormat::bgr8: return 3;
    case PixelFormat::rgba8: case PixelFormat::bgra8: return 4;
    case PixelFormat::mono8: return 1;
    }
    return 0;
}

bool pixel_format_parse(const std::string& s, PixelFormat* out) {
    static const std::pair<const char*, PixelFormat> names[] = {
        {"rgb8", PixelFormat::rgb8}, {"bgr8", PixelFormat::bgr8}, {"rgba8", PixelFormat::rgba8},
        {"bgra8", PixelFormat::bgra8}, {"mono8", PixelFormat::mono8}};
    for (auto& [n, f] : names)
        if (s == n) { *out = f; return true; }
    return false;
}

Status image_validate(const ImageInput& in, const char* label) {
    const std::string where = std::string(label) + ": ";
    if (in.width <= 0 || in.height <= 0 || in.width > 16384 || in.height > 16384)
        return {Code::image, where + "width and height must be in 1..16384, got " + std::to_string(in.width) + "x" +
                                 std::to_string(in.height)};
    const int64_t row_bytes = int64_t(in.width) * pixel_format_channels(in.format);
    if (in.step < row_bytes)
        return {Code::image, where + "step " + std::to_string(in.step) + " is less than width * channels = " +
                                 std::to_string(row_bytes)};
    const int64_t need = int64_t(in.step) * (in.height - 1) + row_bytes;
    if (in.data == nullptr || int64_t(in.size) < need)
        return {Code::image, where + "buffer holds " + std::to_string(in.size) + " bytes, " +
                                 std::to_string(in.width) + "x" + std::to_string(in.height) + " with step " +
                                 std::to_string(in.step) + " needs " + std::to_string(need)};
    return Status::OK();
}

namespace {

double bicubic(double x) {
    constexpr double a = -0.5;
    x = std::fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

// PIL's resampling coefficients for one axis: output i reads inputs [lo[i], lo[i] + w.size).
struct Taps {
    std::vector<int> lo, count;
    std::vector<std::vector<float>> w;
};

Taps make_taps(int in_size, int out_size, double offset, double span) {
    // Maps output [0, out_size) onto input [offset, offset + span).
    Taps t;
    const double scale = span / out_size;
    const double filterscale = std::max(scale, 1.0);
    const double support = 2.0 * filterscale;
    t.lo.resize(out_size);
    t.count.resize(out_size);
    t.w.resize(out_size);
    for (int i = 0; i < out_size; ++i) {
        const double center = offset + (i + 0.5) * scale;
        int xmin = std::max(0, int(std::floor(center - support + 0.5)));
        int xmax = std::min(in_size, int(std::floor(center + support + 0.5)));
        std::vector<float> ws;
        double sum = 0;
        for (int x = xmin; x < xmax; ++x) {
            double v = bicubic((x - center + 0.5) / filterscale);
            ws.push_back(float(v));
            sum += v;
        }
        if (sum != 0)
            for (auto& v : ws) v = float(v / sum);
        t.lo[i] = xmin;
        t.count[i] = xmax - xmin;
        t.w[i] = std::move(ws);
    }
    return t;
}

inline uint8_t clip8(float v) { return uint8_t(std::min(255.f, std::max(0.f, std::round(v)))); }

}  // namespace

PreprocessGeometry image_preprocess_geometry(const ImageInput& in, const PreprocessParams& p) {
    // The square region of a virtual canvas that is resized to S x S.
    // pad: canvas is max(W, H) square with the image centred (PIL paste offset floor((side-W)/2)).
    // crop: the image itself, short side scaled to S, then the centre S x S (HF rounding).
    const int W = in.width, H = in.height, S = p.size;
    PreprocessGeometry g;
    if (p.pad) {
        const int side = std::max(W, H);
        g.canvas_w = g.canvas_h = side;
        g.img_x0 = (side - W) / 2;
        g.img_y0 = (side - H) / 2;
        g.out_w = g.out_h = S;
    } else {
        g.canvas_w = W;
        g.canvas_h = H;
        if (W <= H) {
            g.out_w = S;
            g.out_h = int(int64_t(S) * H / W);
        } else {
            g.out_h = S;
            g.out_w = int(int64_t(S) * W / H);
        }
    }
    g.crop_x = (g.out_w - S) / 2;
    g.crop_y = (g.out_h - S) / 2;
    for (int c = 0; c < 3; ++c) g.fill[c] = uint8_t(int(p.mean[c] * 255.f));
    return g;
}

ResampleTaps image_resample_taps(int in_size, int out_size) {
    const Taps t = make_taps(in_size, out_size, 0.0, in_size);
    ResampleTaps r;
    for (int i = 0; i < out_size; ++i) {
        r.lo.push_back(t.lo[size_t(i)]);
        r.count.push_back(t.count[size_t(i)]);
        r.off.push_back(int32_t(r.w.size()));
        r.w.insert(r.w.end(), t.w[size_t(i)].begin(), t.w[size_t(i)].end());
    }
    return r;
}

Status image_preprocess(const ImageInput& in, const PreprocessParams& p, float* out) {
    VLA_RETURN_IF_ERROR(image_validate(in, "image"));
    if (p.size <= 0 || p.size > 4096) return {Code::input, "preprocess size must be in 1..4096"};
    const int ch = pixel_format_channels(in.format);
    const int W = in.width, H = in.height, S = p.size;
    const bool bgr = in.format == PixelFormat::bgr8 || in.format == PixelFormat::bgra8;

    // Source pixel (x, y) as RGB bytes.
    auto px = [&](int x, int y, int c) -> uint8_t {
        const uint8_t* row = in.data + size_t(y) * in.step + size_t(x) * ch;
        if (ch == 1) return row[0];
        return row[bgr ? 2 - c : c];
    };

    const PreprocessGeometry geo = image_preprocess_geometry(in, p);
    const int canvas_w = geo.canvas_w, canvas_h = geo.canvas_h, img_x0 = geo.img_x0, img_y0 = geo.img_y0,
              out_w = geo.out_w, out_h = geo.out_h;
    const uint8_t* fill = geo.fill;
    auto canvas = [&](int x, int y, int c) -> uint8_t {
        const int ix = x - img_x0, iy = y - img_y0;
        if (ix < 0 || iy < 0 || ix >= W || iy >= H) return fill[c];
        return px(ix, iy, c);
    };

    // Horizontal pass over every canvas row (8-bit intermediate), then vertical.
    const Taps tx = make_taps(canvas_w, out_w, 0.0, canvas_w);
    const Taps ty = make_taps(canvas_h, out_h, 0.0, canvas_h);
    std::vector<uint8_t> mid(size_t(canvas_h) * out_w * 3);
    for (int y = 0; y < canvas_h; ++y) {
        if (y < img_y0 || y >= img_y0 + H) {  // a padding row resamples to the fill colour
            for (int x = 0; x < out_w; ++x)
                for (int c = 0; c < 3; ++c) mid[(size_t(y) * out_w + x) * 3 + c] = fill[c];
            continue;
        }
        for (int x = 0; x < out_w; ++x)
            for (int c = 0; c < 3; ++c) {
                float s = 0;
                for (int t = 0; t < tx.count[x]; ++t) s += tx.w[x][t] * canvas(tx.lo[x] + t, y, c);
                mid[(size_t(y) * out_w + x) * 3 + c] = clip8(s);
            }
    }
    const int crop_x = geo.crop_x, crop_y = geo.crop_y;
    for (int y = 0; y < S; ++y) {
        const int oy = y + crop_y;
        for (int x = 0; x < S; ++x) {
            const int ox = x + crop_x;
            for (int c = 0; c < 3; ++c) {
                float s = 0;
                for (int t = 0; t < ty.count[oy]; ++t) s += ty.w[oy][t] * mid[(size_t(ty.lo[oy] + t) * out_w + ox) * 3 + c];
                out[size_t(c) * S * S + size_t(y) * S + x] = (clip8(s) / 255.f - p.mean[c]) / p.std[c];
            }
        }
    }
    return Status::OK();
}

}  // namespace vla
