// Shared by the engine-level native tests: the generated test models and random frames.
#pragma once
#include <doctest/doctest.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "backend.h"
#include "vla/engine.h"

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

// An integer from the environment, or dflt when unset or empty.
inline int env_int(const char* name, int dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : dflt;
}

// printf into a std::string.
inline std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

// The pruning tests' prompt: BOS, two words, one image token (and a word) per view, 8 words;
// 4 new tokens for the text head.
inline vla::InferRequest prune_request(const vla::Engine& e, const Frames& f) {
    const auto& c = e.info().config;
    vla::InferRequest r;
    r.input_ids = {c.text.bos_id, 10, 11};
    for (size_t v = 0; v < f.views.size(); ++v) {
        r.input_ids.push_back(c.image_token_id);
        r.input_ids.push_back(13);
    }
    for (int i = 0; i < 8; ++i) r.input_ids.push_back(30 + i);
    r.views = f.views;
    r.max_new_tokens = 4;
    return r;
}

}  // namespace vla_test
