// Scalar dtype conversions (host). F16/BF16 -> F32 exact.
#pragma once
#include <cstdint>
#include <cstring>

#include "safetensors.h"

namespace vla {

inline float bf16_to_f32(uint16_t h) {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else {  // subnormal: renormalise
            exp = 127 - 15 + 1;
            while ((mant & 0x400u) == 0) { mant <<= 1; --exp; }
            u = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// F32 -> F16 / BF16, round to nearest even (the hardware's _rn conversions); F16 saturates to inf.
inline uint16_t f32_to_f16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000;
    const int32_t e = int32_t((u >> 23) & 0xff) - 127 + 15;
    uint32_t mant = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) return uint16_t(sign | 0x7c00 | (mant ? 0x200 : 0));  // inf, NaN
    if (((u >> 23) & 0xff) == 0) return uint16_t(sign);
    if (e >= 31) return uint16_t(sign | 0x7c00);
    if (e <= 0) {  // subnormal
        if (e < -10) return uint16_t(sign);
        mant |= 0x800000;
        const uint32_t shift = uint32_t(14 - e);
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) ++h;
        return uint16_t(sign | h);
    }
    uint32_t h = sign | (uint32_t(e) << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // a carry into the exponent is correct rounding
    return uint16_t(h);
}

inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fff + ((u >> 16) & 1);
    return uint16_t(u >> 16);
}

// Converts n elements starting at element `first` of a weight buffer to F32.
inline void convert_to_f32(const void* src, DType t, int64_t first, int64_t n, float* dst) {
    switch (t) {
    case DType::f32: std::memcpy(dst, static_cast<const float*>(src) + first, n * sizeof(float)); break;
    case DType::f16: {
        const uint16_t* s = static_cast<const uint16_t*>(src) + first;
        for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
        break;
    }
    case DType::bf16: {
        const uint16_t* s = static_cast<const uint16_t*>(src) + first;
        for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
        break;
    }
    case DType::i32: {  // index tensors: values converted (not a weight dtype)
        const int32_t* s = static_cast<const int32_t*>(src) + first;
        for (int64_t i = 0; i < n; ++i) dst[i] = float(s[i]);
        break;
    }
    }
}

}  // namespace vla
