// AutoPrune schedule and FLOPs accounting against the reference's worked numbers (docs/autoprune.md, "Budget").
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "prune/schedule.h"

using namespace vla;

TEST_CASE("worked schedules, T = 64, N_v = 576, L = 32") {
    struct Case { double mi, k, scale; std::vector<int> kept; };
    const Case cases[] = {
        {0.0, 0.4, 1.043, {160, 126, 125, 125, 125, 124, 123, 122, 119, 117, 113, 107, 100, 90, 79, 67,
                           55, 43, 33, 25, 18, 13, 9, 7, 5, 4, 3, 3, 2, 2, 2, 2}},
        {1.0, 0.2, 1.051, {160, 121, 118, 117, 115, 112, 109, 106, 102, 98, 94, 88, 83, 77, 71, 65,
                           59, 52, 46, 41, 36, 31, 27, 23, 20, 17, 14, 12, 10, 9, 8, 7}},
    };
    for (const auto& c : cases) {
        Schedule s = autoprune_schedule(32, 576, 64, c.mi);
        CHECK(s.n1 == 160);
        CHECK(s.k == doctest::Approx(c.k));
        CHECK(s.scale == doctest::Approx(c.scale).epsilon(5e-4));
        CHECK(s.kept == c.kept);
        CHECK(s.avg_tokens == doctest::Approx(64.0));
    }
    Schedule s = autoprune_schedule(32, 576, 64, 1.5);
    CHECK(s.k == doctest::Approx(0.1));
    CHECK(s.kept[1] == 102);
    CHECK(s.kept[2] == 99);
    CHECK(s.kept[3] == 97);
    CHECK(s.kept[30] == 24);
    CHECK(s.kept[31] == 22);
    for (size_t l = 2; l < s.kept.size(); ++l) CHECK(s.kept[l] <= s.kept[l - 1]);
    s = autoprune_schedule(32, 576, 64, 2.0);
    CHECK(s.k == 0.0);
    CHECK(s.scale == doctest::Approx(0.996).epsilon(5e-4));
    CHECK(s.kept[1] == 64);
    for (size_t l = 2; l < s.kept.size(); ++l) CHECK(s.kept[l] == 61);
    CHECK(s.avg_tokens == doctest::Approx(64.19).epsilon(1e-3));  // bisection cannot hit the integer target
}

TEST_CASE("T = 192 and 128: N1 and landmarks of the worked schedule; the average equals T") {
    Schedule s = autoprune_schedule(32, 576, 192, 0);
    CHECK(s.n1 == 480);
    CHECK(s.kept[1] == 382);
    CHECK(s.kept[2] == 379);
    CHECK(s.kept[12] == 300);
    CHECK(s.kept[15] == 203);
    CHECK(s.kept[18] == 99);
    CHECK(s.kept[21] == 37);
    CHECK(s.kept[31] == 2);
    for (double mi : {0.0, 1.0, 1.5, 2.0, 3.7}) {
        for (double T : {64.0, 128.0, 192.0}) {
            Schedule t = autoprune_schedule(32, 576, T, mi);
            INFO("T=" << T << " MI=" << mi);
            CHECK(std::fabs(t.avg_tokens - T) <= 0.5);  // integer counts: within rounding
            CHECK(t.n1 == std::min(int(2.5 * T), 576));
        }
    }
}

TEST_CASE("relative prefill FLOPs of LLaVA-1.5-7B shapes fall in the spec's band") {
    // P = 35, N_t = 40 as the issue states (and 20); the reference's simulation gives 41-45% / 31-35% / 21-26%
    // for T = 192 / 128 / 64. (N_t = 60 at T = 128 lands at 35.4%, just above that band.)
    const double lo[] = {0.21, 0.31, 0.41}, hi[] = {0.26, 0.35, 0.45};
    const double T[] = {64, 128, 192};
    for (int i = 0; i < 3; ++i)
        for (int nt : {20, 40}) {
            Schedule s = autoprune_schedule(32, 576, T[i], 0.0);
            std::vector<int> in(32, 576), full(32, 576);
            for (int l = 1; l < 32; ++l) in[size_t(l)] = s.kept[size_t(l - 1)];
            const double rel = prefill_flops(in, 35, nt, 4096, 11008) / prefill_flops(full, 35, nt, 4096, 11008);
            INFO("T=" << T[i] << " N_t=" << nt << " rel=" << rel);
            CHECK(rel >= lo[i]);
            CHECK(rel <= hi[i]);
        }
}

TEST_CASE("layer FLOPs formula") {
    CHECK(layer_flops(1, 1, 1) == 9);
    CHECK(layer_flops(10, 2, 3) == 4 * 10 * 4 + 2 * 100 * 2 + 3 * 10 * 2 * 3);
}
