// Scalar dtype conversions (host). F16/BF16 -> F32 exact.
#pragma once
#include <cstdint>
#include <cstring>

#include "vla/safetensors.h"

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
