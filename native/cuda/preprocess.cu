// Camera frames on the GPU: the raw sensor_msgs/Image bytes (rgb8, bgr8, rgba8, bgra8, mono8,
// any row step) are uploaded once and resampled here with the CPU's own taps (image.h), so the
// two backends differ only where float rounding lands a value on an 8-bit boundary.
#include "common.cuh"
#include "kernels.h"

namespace vla::cuda {

namespace {

__device__ __forceinline__ uint8_t clip8(float v) { return uint8_t(fminf(255.f, fmaxf(0.f, roundf(v)))); }

// Horizontal pass over every canvas row into the 8-bit intermediate [canvas_h][out_w][3].
__global__ void k_resize_h(const uint8_t* __restrict__ raw, ResizeGeometry g, DeviceTaps tx, uint8_t* __restrict__ mid) {
    const int64_t total = int64_t(g.canvas_h) * g.out_w * 3;
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
        const int c = int(t % 3);
        const int x = int((t / 3) % g.out_w);
        const int y = int(t / (3 * int64_t(g.out_w)));
        const int iy = y - g.img_y0;
        if (iy < 0 || iy >= g.H) {  // a padding row resamples to the fill colour
            mid[t] = g.fill[c];
            continue;
        }
        const uint8_t* row = raw + int64_t(iy) * g.step;
        const int src_c = g.ch == 1 ? 0 : (g.bgr ? 2 - c : c);
        const int lo = tx.lo[x], cnt = tx.count[x];
        const float* w = tx.w + tx.off[x];
        float s = 0.f;
        for (int k = 0; k < cnt; ++k) {
            const int ix = lo + k - g.img_x0;
            const float v = (ix < 0 || ix >= g.W) ? float(g.fill[c]) : float(row[int64_t(ix) * g.ch + src_c]);
            s += w[k] * v;
        }
        mid[t] = clip8(s);
    }
}

// Vertical pass, centre crop, rescale and normalise into planar out [3][S][S].
__global__ void k_resize_v(const uint8_t* __restrict__ mid, ResizeGeometry g, DeviceTaps ty, float* __restrict__ out) {
    const int S = g.S;
    const int64_t total = int64_t(3) * S * S;
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
        const int x = int(t % S);
        const int y = int((t / S) % S);
        const int c = int(t / (int64_t(S) * S));
        const int oy = y + g.crop_y, ox = x + g.crop_x;
        const int lo = ty.lo[oy], cnt = ty.count[oy];
        const float* w = ty.w + ty.off[oy];
        float s = 0.f;
        for (int k = 0; k < cnt; ++k) s += w[k] * float(mid[(int64_t(lo + k) * g.out_w + ox) * 3 + c]);
        out[t] = (float(clip8(s)) / 255.f - g.mean[c]) / g.std[c];
    }
}

}  // namespace

void preprocess(const uint8_t* raw, const ResizeGeometry& g, const DeviceTaps& tx, const DeviceTaps& ty, uint8_t* mid,
                float* out, cudaStream_t s) {
    const int64_t n_mid = int64_t(g.canvas_h) * g.out_w * 3, n_out = int64_t(3) * g.S * g.S;
    VLA_LAUNCH(k_resize_h, grid_for(n_mid, 256), 256, 0, s, raw, g, tx, mid);
    VLA_LAUNCH(k_resize_v, grid_for(n_out, 256), 256, 0, s, mid, g, ty, out);
}

}  // namespace vla::cuda
