// Shared by the engine-level native tests: the generated test models and random frames.
#pragma once
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "vla/backend.h"

namespace vla_test {

// build/test-models/<name> (VLA_TEST_MODELS overrides the root); npm test generates them first.
inline std::string model_dir(const char* name = "tiny") {
    const char* root = std::getenv("VLA_TEST_MODELS");
    std::string dir = std::string(root ? root : "build/test-models") + "/" + name;
    if (!std::filesystem::exists(dir + "/config.json"))
        FAIL("test model " << dir << " is missing: run `npm run test:models` (npm test does it first)");
    return dir;
}

// n random rgb8 frames of w x h, owning their bytes.
struct Frames {
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<vla::ImageInput> views;
};

inline Frames frames(int n, uint32_t seed, int w = 40, int h = 30) {
    Frames f;
    std::mt19937 g(seed);
    for (int v = 0; v < n; ++v) {
        std::vector<uint8_t> b(static_cast<size_t>(w * h * 3));
        for (auto& x : b) x = uint8_t(g());
        f.bufs.push_back(std::move(b));
    }
    for (auto& b : f.bufs) f.views.push_back({b.data(), b.size(), w, h, w * 3, vla::PixelFormat::rgb8});
    return f;
}

}  // namespace vla_test
