#include "image.h"

#include <algorithm>
#include <cmath>
#include <functional>
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

Status image_preprocess(const ImageInput& in, const PreprocessParams& p, float* out, const ParallelFor& pf) {
    VLA_RETURN_IF_ERROR(image_validate(in, "image"));
    if (p.size <= 0 || p.size > 4096) return {Code::input, "preprocess size must be in 1..4096"};
    const int ch = pixel_format_channels(in.format);
    const int W = in.width, H = in.height, S = p.size;
    const bool bgr = in.format == PixelFormat::bgr8 || in.format == PixelFormat::bgra8;
    auto run = [&](int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
        if (pf) pf(n, fn);
        else fn(0, n);
    };

    const PreprocessGeometry geo = image_preprocess_geometry(in, p);
    const int canvas_w = geo.canvas_w, canvas_h = geo.canvas_h, img_x0 = geo.img_x0, img_y0 = geo.img_y0,
              out_w = geo.out_w, out_h = geo.out_h;
    const uint8_t* fill = geo.fill;

    // Horizontal pass over every canvas row (8-bit intermediate), then vertical. Each image row
    // is first laid out as a canvas row of RGB bytes (letterbox fill at the sides, channels in
    // RGB order) so the taps index it directly; rows of pure padding resample to the fill colour.
    // The sums run in the taps' order, as before this layout: results are bit for bit the same.
    const Taps tx = make_taps(canvas_w, out_w, 0.0, canvas_w);
    const Taps ty = make_taps(canvas_h, out_h, 0.0, canvas_h);
    std::vector<uint8_t> mid(size_t(canvas_h) * out_w * 3);
    run(canvas_h, [&](int64_t y0, int64_t y1) {
        std::vector<uint8_t> row(size_t(canvas_w) * 3);
        for (int y = int(y0); y < int(y1); ++y) {
            uint8_t* m = &mid[size_t(y) * out_w * 3];
            if (y < img_y0 || y >= img_y0 + H) {
                for (int x = 0; x < out_w; ++x)
                    for (int c = 0; c < 3; ++c) m[x * 3 + c] = fill[c];
                continue;
            }
            const uint8_t* src = in.data + size_t(y - img_y0) * in.step;
            const uint8_t* r;
            if (ch == 3 && !bgr && img_x0 == 0 && canvas_w == W) {
                r = src;  // rgb8 filling the canvas row: read in place
            } else {
                for (int x = 0; x < canvas_w; ++x) {
                    const int ix = x - img_x0;
                    uint8_t* d = &row[size_t(x) * 3];
                    if (ix < 0 || ix >= W) {
                        d[0] = fill[0], d[1] = fill[1], d[2] = fill[2];
                    } else if (ch == 1) {
                        d[0] = d[1] = d[2] = src[ix];
                    } else {
                        const uint8_t* q = src + size_t(ix) * ch;
                        d[0] = q[bgr ? 2 : 0], d[1] = q[1], d[2] = q[bgr ? 0 : 2];
                    }
                }
                r = row.data();
            }
            for (int x = 0; x < out_w; ++x) {
                const float* w = tx.w[x].data();
                const uint8_t* q = r + size_t(tx.lo[x]) * 3;
                float s0 = 0, s1 = 0, s2 = 0;
                for (int t = 0, n = tx.count[x]; t < n; ++t) {
                    s0 += w[t] * q[3 * t];
                    s1 += w[t] * q[3 * t + 1];
                    s2 += w[t] * q[3 * t + 2];
                }
                m[x * 3] = clip8(s0), m[x * 3 + 1] = clip8(s1), m[x * 3 + 2] = clip8(s2);
            }
        }
    });
    const int crop_x = geo.crop_x, crop_y = geo.crop_y;
    run(S, [&](int64_t y0, int64_t y1) {
        for (int y = int(y0); y < int(y1); ++y) {
            const int oy = y + crop_y;
            const float* w = ty.w[oy].data();
            const int n = ty.count[oy];
            const uint8_t* base = &mid[(size_t(ty.lo[oy]) * out_w + crop_x) * 3];
            const size_t ld = size_t(out_w) * 3;
            for (int x = 0; x < S; ++x) {
                const uint8_t* q = base + size_t(x) * 3;
                float s0 = 0, s1 = 0, s2 = 0;
                for (int t = 0; t < n; ++t) {
                    s0 += w[t] * q[t * ld];
                    s1 += w[t] * q[t * ld + 1];
                    s2 += w[t] * q[t * ld + 2];
                }
                const float s[3] = {s0, s1, s2};
                for (int c = 0; c < 3; ++c) out[size_t(c) * S * S + size_t(y) * S + x] = (clip8(s[c]) / 255.f - p.mean[c]) / p.std[c];
            }
        }
    });
    return Status::OK();
}

}  // namespace vla
