// Engine end to end on the generated tiny model: determinism, identities of the KV cache and the
// heads, and every bad-input path with real bad input. VLA_TEST_MODEL names the tiny model
// directory (npm test generates it first: `npm run test:models`).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <unistd.h>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "vla/config.h"
#include "vla/engine.h"
#include "test-models.h"
#include "safetensors.h"

using namespace vla;
using vla_test::Frames;
using vla_test::frames;
using vla_test::model_dir;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Engine> load(const std::string& dir, int threads = 2) {
    std::unique_ptr<Engine> e;
    EngineOptions o;
    o.n_threads = threads;
    Status st = Engine::load(dir, o, &e);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return e;
}

// BOS, a few words, one image token per view, instruction words.
std::vector<int32_t> prompt(const Engine& e, int n_views, int salt = 0) {
    const auto& c = e.info().config;
    std::vector<int32_t> ids{c.text.bos_id, 10, 11, 12};
    for (int v = 0; v < n_views; ++v) {
        ids.push_back(c.image_token_id);
        ids.push_back(13);
    }
    for (int i = 0; i < 6; ++i) ids.push_back(20 + ((i * 7 + salt) % 200));
    return ids;
}

InferResult run(Engine& e, const InferRequest& r) {
    InferResult out;
    Status st = e.infer(r, &out);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return out;
}

std::string slurp(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Temporary model copies, removed when the test binary exits.
struct TempDirs {
    std::vector<std::string> dirs;
    ~TempDirs() {
        std::error_code ec;
        for (auto& d : dirs) fs::remove_all(d, ec);
    }
} g_temp_dirs;

// A copy of the tiny model with config.json or the weights altered.
std::string mutated_copy(const std::string& name, const std::function<void(const std::string&)>& mutate) {
    std::string dir = (fs::temp_directory_path() / ("vla-test-" + name + "-" + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    fs::copy(model_dir(), dir);
    g_temp_dirs.dirs.push_back(dir);
    mutate(dir);
    return dir;
}

}  // namespace

TEST_CASE("waypoints: finite, deterministic, independent of the thread count") {
    auto e = load(model_dir());
    const auto& c = e->info().config;
    REQUIRE(c.vla.head == ActionHead::waypoints);
    auto f = frames(int(c.vla.cameras.size()), 1);
    InferRequest r;
    r.input_ids = prompt(*e, int(f.views.size()));
    r.views = f.views;
    r.return_hidden = true;
    auto a = run(*e, r);
    CHECK(a.n_waypoints == c.vla.n_waypoints);
    CHECK(a.waypoint_dim == c.vla.waypoint_dim);
    REQUIRE(a.waypoints.size() == size_t(c.vla.n_waypoints * c.vla.waypoint_dim));
    for (float v : a.waypoints) CHECK(std::isfinite(v));
    CHECK(a.hidden.size() == size_t(c.vla.n_waypoints * c.text.hidden));
    CHECK(a.n_visual_tokens == int64_t(f.views.size()) * c.vision.n_patches());
    CHECK(a.n_prompt_tokens == int64_t(r.input_ids.size()) - int64_t(f.views.size()) + a.n_visual_tokens + c.vla.n_waypoints);
    CHECK(a.timings.total_ms >= a.timings.prefill_ms);
    auto b = run(*e, r);
    CHECK(a.waypoints == b.waypoints);  // bit-identical
    auto e1 = load(model_dir(), 1);
    CHECK(run(*e1, r).waypoints == a.waypoints);  // work split by output columns: same sums
}

TEST_CASE("the output depends on every view and on the instruction") {
    auto e = load(model_dir());
    const int nv = int(e->info().config.vla.cameras.size());
    auto f = frames(nv, 2);
    InferRequest r;
    r.input_ids = prompt(*e, nv);
    r.views = f.views;
    auto base = run(*e, r).waypoints;
    for (int v = 0; v < nv; ++v) {
        auto g = frames(nv, 2);
        for (auto& x : g.bufs[size_t(v)]) x = uint8_t(255 - x);
        InferRequest r2 = r;
        r2.views = g.views;
        CHECK_MESSAGE(run(*e, r2).waypoints != base, "view " << v);
    }
    InferRequest r3 = r;
    r3.input_ids = prompt(*e, nv, 5);
    CHECK(run(*e, r3).waypoints != base);
    // fewer views than cameras is allowed (camera order is kept)
    InferRequest r4 = r;
    r4.views.resize(1);
    r4.input_ids = prompt(*e, 1);
    CHECK(run(*e, r4).n_visual_tokens == e->info().config.vision.n_patches());
}

TEST_CASE("text head: greedy decoding with the KV cache equals re-running the prefill") {
    auto e = load(model_dir("tiny-text"));
    const auto& c = e->info().config;
    REQUIRE(c.vla.head == ActionHead::text);
    auto f = frames(int(c.vla.cameras.size()), 3);
    InferRequest r;
    r.input_ids = prompt(*e, int(f.views.size()));
    r.views = f.views;
    r.max_new_tokens = 5;
    r.return_logits = true;
    auto a = run(*e, r);
    REQUIRE(a.tokens.size() >= 2);
    CHECK(a.logits.size() == size_t(c.text.vocab));
    for (size_t k = 1; k < a.tokens.size(); ++k) {
        InferRequest r2 = r;
        r2.input_ids.insert(r2.input_ids.end(), a.tokens.begin(), a.tokens.begin() + long(k));
        r2.max_new_tokens = 1;
        auto b = run(*e, r2);
        REQUIRE(b.tokens.size() == 1);
        CHECK_MESSAGE(b.tokens[0] == a.tokens[k], "step " << k);
    }
    // a stop id ends generation before it is emitted: stop on the first token not seen before
    size_t k = 1;
    while (k < a.tokens.size() && std::find(a.tokens.begin(), a.tokens.begin() + long(k), a.tokens[k]) != a.tokens.begin() + long(k)) ++k;
    REQUIRE(k < a.tokens.size());
    InferRequest r3 = r;
    r3.stop_ids = {a.tokens[k]};
    auto s = run(*e, r3);
    CHECK(s.stopped);
    CHECK(s.tokens.size() == k);
    // max_new_tokens 0 generates nothing
    r3.stop_ids.clear();
    r3.max_new_tokens = 0;
    CHECK(run(*e, r3).tokens.empty());
    // the waypoint head of the same model still runs on request
    InferRequest r4 = r;
    r4.head = int(ActionHead::waypoints);
    CHECK(run(*e, r4).waypoints.size() == size_t(c.vla.n_waypoints * c.vla.waypoint_dim));
}

TEST_CASE("half-precision weights give the same result within tolerance") {
    auto e32 = load(model_dir());
    auto e16 = load(model_dir("tiny-f16"));
    auto eb = load(model_dir("tiny-bf16"));
    auto f = frames(int(e32->info().config.vla.cameras.size()), 4);
    InferRequest r;
    r.input_ids = prompt(*e32, int(f.views.size()));
    r.views = f.views;
    auto a = run(*e32, r).waypoints, b = run(*e16, r).waypoints, c = run(*eb, r).waypoints;
    double scale = 0, d16 = 0, dbf = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        scale = std::max(scale, double(std::fabs(a[i])));
        d16 = std::max(d16, double(std::fabs(a[i] - b[i])));
        dbf = std::max(dbf, double(std::fabs(a[i] - c[i])));
    }
    CHECK(d16 <= 2e-2 * std::max(1.0, scale));
    CHECK(dbf <= 1e-1 * std::max(1.0, scale));
    CHECK(e16->info().weight_bytes * 2 == e32->info().weight_bytes);
}

TEST_CASE("activation memory: freed after every inference; over the limit is VLA_E_OOM and the engine carries on") {
    auto e = load(model_dir());
    const int cams = int(e->info().config.vla.cameras.size());
    REQUIRE(cams >= 2);
    auto f = frames(cams, 21);
    InferRequest one, all;
    one.input_ids = prompt(*e, 1);
    one.views = {f.views[0]};
    all.input_ids = prompt(*e, cams);
    all.views = f.views;
    const InferResult r1 = run(*e, one);
    const int64_t idle = e->activation_bytes();  // the decoder's reusable scratch
    const InferResult ra = run(*e, all);
    for (int i = 0; i < 5; ++i) {
        run(*e, all);
        run(*e, one);
    }
    CHECK(e->activation_bytes() <= idle + (ra.peak_activation_bytes - r1.peak_activation_bytes));  // scratch grows to the longest, no more
    const int64_t settled = e->activation_bytes();
    for (int i = 0; i < 5; ++i) run(*e, all);
    CHECK(e->activation_bytes() == settled);
    REQUIRE(ra.peak_activation_bytes > r1.peak_activation_bytes);
    CHECK(r1.peak_activation_bytes > 0);

    // A limit between the two peaks: one view fits, every camera does not.
    EngineOptions o;
    o.n_threads = 2;
    o.max_activation_bytes = (r1.peak_activation_bytes + ra.peak_activation_bytes) / 2;
    std::unique_ptr<Engine> lim;
    REQUIRE(Engine::load(model_dir(), o, &lim).ok());
    InferResult out;
    Status st = lim->infer(all, &out);
    CHECK(st.code() == Code::oom);
    CHECK(st.message().find("limit") != std::string::npos);
    const InferResult again = run(*lim, one);
    CHECK(again.waypoints == r1.waypoints);
    o.max_activation_bytes = -1;
    CHECK(Engine::load(model_dir(), o, &lim).code() == Code::input);
}

TEST_CASE("engine options and synthetic models: bad values are VLA_E_INPUT, synthetic weights are seeded") {
    std::unique_ptr<Engine> e;
    auto bad = [&](auto set) {
        EngineOptions o;
        set(o);
        return Engine::load(model_dir(), o, &e);
    };
    CHECK(bad([](EngineOptions& o) { o.weight_dtype = "f8"; }).code() == Code::input);
    CHECK(bad([](EngineOptions& o) { o.device = -1; }).code() == Code::input);
    CHECK(bad([](EngineOptions& o) { o.pool_bytes = -1; }).code() == Code::input);
    CHECK(bad([](EngineOptions& o) { o.backend = "tpu"; }).code() == Code::backend);
    ModelConfig cfg;
    REQUIRE(config_load(model_dir() + "/config.json", &cfg).ok());
    EngineOptions o;
    o.n_threads = 2;
    CHECK(Engine::create_synthetic(cfg, o, 1, -1.0, &e).code() == Code::input);
    CHECK(Engine::create_synthetic(cfg, o, 1, std::nan(""), &e).code() == Code::input);
    // Seeded: the same seed gives the same plan, another seed another one; std 0 is allowed.
    std::unique_ptr<Engine> a, b, c, z;
    REQUIRE(Engine::create_synthetic(cfg, o, 7, 0.05, &a).ok());
    REQUIRE(Engine::create_synthetic(cfg, o, 7, 0.05, &b).ok());
    REQUIRE(Engine::create_synthetic(cfg, o, 8, 0.05, &c).ok());
    REQUIRE(Engine::create_synthetic(cfg, o, 7, 0.0, &z).ok());
    auto f = frames(int(cfg.vla.cameras.size()), 5);
    InferRequest r;
    r.input_ids = prompt(*a, int(f.views.size()));
    r.views = f.views;
    const auto wa = run(*a, r).waypoints;
    CHECK(wa == run(*b, r).waypoints);
    CHECK(wa != run(*c, r).waypoints);
    for (float v : run(*z, r).waypoints) CHECK(std::isfinite(v));
    CHECK(a->info().n_params == load(model_dir())->info().n_params);
    CHECK(a->activation_bytes() < a->info().weight_bytes);  // synthetic weights are not activations
}

TEST_CASE("bad requests are coded errors") {
    auto e = load(model_dir());
    const auto& c = e->info().config;
    const int nv = int(c.vla.cameras.size());
    auto f = frames(nv, 5);
    InferRequest good;
    good.input_ids = prompt(*e, nv);
    good.views = f.views;
    InferResult out;
    auto code = [&](const InferRequest& r) { return e->infer(r, &out).code(); };

    InferRequest r = good;
    r.input_ids.clear();
    CHECK(code(r) == Code::input);
    r = good;
    r.input_ids.push_back(c.text.vocab + 5);
    CHECK(code(r) == Code::input);
    r = good;
    r.input_ids.push_back(-1);
    CHECK(code(r) == Code::input);
    r = good;
    r.views.pop_back();  // one image token too many
    CHECK(code(r) == Code::input);
    r = good;
    r.views.clear();
    CHECK(code(r) == Code::input);
    r = good;
    for (int i = 0; i < 2; ++i) { r.views.push_back(r.views[0]); r.input_ids.push_back(c.image_token_id); }
    for (int i = 0; i < nv; ++i) { r.views.push_back(r.views[0]); r.input_ids.push_back(c.image_token_id); }
    CHECK(code(r) == Code::input);  // more views than cameras
    r = good;
    r.views[1].step = 2;  // step below width * 3
    Status st = e->infer(r, &out);
    CHECK(st.code() == Code::image);
    CHECK(st.message().find("view 1") != std::string::npos);
    r = good;
    r.views[0].size = 100;  // buffer shorter than the frame
    CHECK(code(r) == Code::image);
    r = good;
    r.views[0].height = 0;
    CHECK(code(r) == Code::image);
    r = good;
    r.head = int(ActionHead::text);  // the tiny waypoints model keeps an lm_head: allowed
    r.max_new_tokens = 2;
    CHECK(code(r) == Code::ok);
    r = good;
    r.stop_ids = {c.text.vocab};
    r.head = int(ActionHead::text);
    CHECK(code(r) == Code::input);
    r = good;
    r.input_ids.insert(r.input_ids.end(), size_t(c.text.max_positions), 5);
    CHECK(code(r) == Code::input);  // longer than max_position_embeddings
    // after every failure the engine still works
    CHECK(code(good) == Code::ok);
}

TEST_CASE("concurrent calls on one engine: busy or correct, never corrupt") {
    auto e = load(model_dir());
    auto f = frames(int(e->info().config.vla.cameras.size()), 6);
    InferRequest r;
    r.input_ids = prompt(*e, int(f.views.size()));
    r.views = f.views;
    const auto ref = run(*e, r).waypoints;
    std::atomic<int> ok{0}, busy{0}, bad{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < 5; ++i) {
                InferResult out;
                Status st = e->infer(r, &out);
                if (st.ok()) (out.waypoints == ref ? ok : bad)++;
                else (st.code() == Code::busy ? busy : bad)++;
            }
        });
    for (auto& t : ts) t.join();
    CHECK(bad.load() == 0);
    CHECK(ok.load() >= 1);
    CHECK(ok.load() + busy.load() == 20);
}

TEST_CASE("loader: every broken model is a coded error naming what is wrong") {
    std::unique_ptr<Engine> e;
    EngineOptions o;
    auto load_code = [&](const std::string& dir, std::string* msg = nullptr) {
        Status st = Engine::load(dir, o, &e);
        if (msg) *msg = st.message();
        return st.code();
    };
    std::string msg;
    CHECK(load_code("/nonexistent/model") == Code::io);

    auto set_config = [](const std::string& dir, const std::string& from, const std::string& to) {
        std::string s = slurp(dir + "/config.json");
        auto p = s.find(from);
        REQUIRE_MESSAGE(p != std::string::npos, from);
        s.replace(p, from.size(), to);
        std::ofstream(dir + "/config.json", std::ios::binary | std::ios::trunc) << s;
    };
    std::string d = mutated_copy("badjson", [](const std::string& dir) {
        std::ofstream(dir + "/config.json", std::ios::trunc) << "{\"text_config\": {";
    });
    CHECK(load_code(d, &msg) == Code::config);
    CHECK(msg.find("config.json") != std::string::npos);

    d = mutated_copy("layers", [&](const std::string& dir) {
        set_config(dir, "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 4");  // text_config comes first
    });
    CHECK(load_code(d, &msg) == Code::tensor_missing);
    CHECK(msg.find("layers.3") != std::string::npos);

    d = mutated_copy("shape", [&](const std::string& dir) { set_config(dir, "\"intermediate_size\": 160", "\"intermediate_size\": 128"); });
    CHECK(load_code(d, &msg) == Code::tensor_shape);
    CHECK(msg.find("gate_proj") != std::string::npos);
    CHECK(msg.find("model.safetensors") != std::string::npos);

    d = mutated_copy("gqa", [&](const std::string& dir) { set_config(dir, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"); });
    CHECK(load_code(d) == Code::config);

    d = mutated_copy("head", [&](const std::string& dir) { set_config(dir, "\"action_head\": \"waypoints\"", "\"action_head\": \"steer\""); });
    CHECK(load_code(d) == Code::config);

    d = mutated_copy("truncated", [](const std::string& dir) {
        const auto p = dir + "/model.safetensors";
        fs::resize_file(p, fs::file_size(p) - 100);
    });
    CHECK(load_code(d, &msg) == Code::weights_truncated);
    CHECK(msg.find("model.safetensors") != std::string::npos);

    d = mutated_copy("noweights", [](const std::string& dir) { fs::remove(dir + "/model.safetensors"); });
    CHECK(load_code(d) == Code::io);

    o.backend = "tpu";
    CHECK(load_code(model_dir()) == Code::backend);
}

namespace {

// Rewrites the tiny model's weights under new names into one or more shards (with an index),
// keeping the bytes: exercises the loader the way a real llava-hf checkpoint would.
void rewrite_weights(const std::string& dir, const std::function<std::string(const std::string&)>& rename, int n_shards) {
    std::unique_ptr<SafetensorsFile> f;
    REQUIRE(SafetensorsFile::open(dir + "/model.safetensors", &f).ok());
    std::vector<std::pair<std::string, const TensorView*>> all;
    for (auto& [name, tv] : f->tensors()) all.emplace_back(rename(name), &tv);
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    std::vector<std::string> files;
    for (int s = 0; s < n_shards; ++s) {
        const std::string file = n_shards == 1 ? "model.safetensors"
                                               : "model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(n_shards) + ".safetensors";
        nlohmann::json header = {{"__metadata__", {{"format", "pt"}}}};
        std::string data;
        for (size_t i = size_t(s); i < all.size(); i += size_t(n_shards)) {
            const auto& [name, tv] = all[i];
            const char* dt = tv->dtype == DType::f32 ? "F32" : tv->dtype == DType::f16 ? "F16" : "BF16";
            header[name] = {{"dtype", dt}, {"shape", tv->shape}, {"data_offsets", {data.size(), data.size() + tv->nbytes}}};
            data.append(reinterpret_cast<const char*>(tv->data), tv->nbytes);
            index["weight_map"][name] = file;
        }
        std::string h = header.dump();
        while (h.size() % 8) h += ' ';
        files.push_back(file);
        std::string out;
        uint64_t n = h.size();
        out.append(reinterpret_cast<const char*>(&n), 8);
        out += h;
        out += data;
        std::ofstream(dir + "/" + file + ".tmp", std::ios::binary) << out;
    }
    f.reset();
    fs::remove(dir + "/model.safetensors");
    for (auto& file : files) fs::rename(dir + "/" + file + ".tmp", dir + "/" + file);
    if (n_shards > 1) std::ofstream(dir + "/model.safetensors.index.json") << index.dump(2);
}

std::string newer_spelling(const std::string& n) {
    auto starts = [&](const char* p) { return n.rfind(p, 0) == 0; };
    if (starts("vision_tower.")) return "model." + n;
    if (starts("multi_modal_projector.")) return "model." + n;
    if (starts("language_model.model.")) return "model.language_model." + n.substr(std::strlen("language_model.model."));
    if (n == "language_model.lm_head.weight") return "lm_head.weight";
    return n;
}

}  // namespace

TEST_CASE("llava-hf layouts: the newer tensor spelling and sharded checkpoints give identical results") {
    auto ref_engine = load(model_dir());
    auto f = frames(int(ref_engine->info().config.vla.cameras.size()), 8);
    InferRequest r;
    r.input_ids = prompt(*ref_engine, int(f.views.size()));
    r.views = f.views;
    const auto ref = run(*ref_engine, r).waypoints;

    std::string d = mutated_copy("newer", [](const std::string& dir) { rewrite_weights(dir, newer_spelling, 1); });
    CHECK(run(*load(d), r).waypoints == ref);
    d = mutated_copy("sharded", [](const std::string& dir) { rewrite_weights(dir, newer_spelling, 3); });
    auto sharded = load(d);
    CHECK(run(*sharded, r).waypoints == ref);
    CHECK(sharded->info().n_params == ref_engine->info().n_params);
    d = mutated_copy("shard-missing", [](const std::string& dir) {
        rewrite_weights(dir, [](const std::string& n) { return n; }, 2);
        fs::remove(dir + "/model-00002-of-00002.safetensors");
    });
    std::unique_ptr<Engine> e;
    Status st = Engine::load(d, {}, &e);
    CHECK(st.code() == Code::io);
    CHECK(st.message().find("model-00002-of-00002.safetensors") != std::string::npos);
}

TEST_CASE("a plain LLaVA config.json (no vla section) loads as one camera with the text head") {
    std::string d = mutated_copy("plain", [](const std::string& dir) {
        auto j = nlohmann::json::parse(slurp(dir + "/config.json"));
        j.erase("vla");
        std::ofstream(dir + "/config.json", std::ios::trunc) << j.dump(2);
    });
    auto e = load(d);
    const auto& c = e->info().config;
    CHECK(c.vla.cameras == std::vector<std::string>{"image"});
    CHECK(c.vla.head == ActionHead::text);
    CHECK_FALSE(c.vla.camera_embedding);
    auto f = frames(1, 9);
    InferRequest r;
    r.input_ids = prompt(*e, 1);
    r.views = f.views;
    r.max_new_tokens = 3;
    auto out = run(*e, r);
    CHECK(out.head == ActionHead::text);
    CHECK(out.tokens.size() <= 3);
    InferRequest w = r;
    w.head = int(ActionHead::waypoints);
    InferResult o2;
    CHECK(e->infer(w, &o2).code() == Code::input);  // no waypoint head without the vla section
}

namespace {

// llava-hf/llava-1.5-7b-hf's config.json as published (transformers 4.36 layout): most text and
// vision fields are left to the LlamaConfig / CLIP defaults.
const char* kLlava15Config = R"({
  "architectures": ["LlavaForConditionalGeneration"],
  "ignore_index": -100,
  "image_token_index": 32000,
  "model_type": "llava",
  "pad_token_id": 32001,
  "projector_hidden_act": "gelu",
  "text_config": {
    "_name_or_path": "lmsys/vicuna-7b-v1.5",
    "architectures": ["LlamaForCausalLM"],
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "rms_norm_eps": 1e-05,
    "torch_dtype": "float16",
    "vocab_size": 32064
  },
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.36.0.dev0",
  "vision_config": {
    "hidden_size": 1024,
    "image_size": 336,
    "intermediate_size": 4096,
    "model_type": "clip_vision_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "patch_size": 14,
    "projection_dim": 768,
    "vocab_size": 32000
  },
  "vision_feature_layer": -2,
  "vision_feature_select_strategy": "default",
  "vocab_size": 32064
})";

// Every tensor of llava-1.5-7b-hf (older spelling), F16, split over 3 shards with an index like
// the published checkpoint. Data is a sparse hole: the files take no disk space.
void write_llava15_skeleton(const std::string& dir) {
    std::vector<std::pair<std::string, std::vector<int64_t>>> t;
    const std::string v = "vision_tower.vision_model.";
    t.push_back({v + "embeddings.class_embedding", {1024}});
    t.push_back({v + "embeddings.patch_embedding.weight", {1024, 3, 14, 14}});
    t.push_back({v + "embeddings.position_embedding.weight", {577, 1024}});
    t.push_back({v + "pre_layrnorm.weight", {1024}});
    t.push_back({v + "pre_layrnorm.bias", {1024}});
    t.push_back({v + "post_layernorm.weight", {1024}});
    t.push_back({v + "post_layernorm.bias", {1024}});
    for (int l = 0; l < 24; ++l) {
        const std::string p = v + "encoder.layers." + std::to_string(l) + ".";
        for (const char* n : {"layer_norm1", "layer_norm2"}) {
            t.push_back({p + n + ".weight", {1024}});
            t.push_back({p + n + ".bias", {1024}});
        }
        for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
            t.push_back({p + "self_attn." + n + ".weight", {1024, 1024}});
            t.push_back({p + "self_attn." + n + ".bias", {1024}});
        }
        t.push_back({p + "mlp.fc1.weight", {4096, 1024}});
        t.push_back({p + "mlp.fc1.bias", {4096}});
        t.push_back({p + "mlp.fc2.weight", {1024, 4096}});
        t.push_back({p + "mlp.fc2.bias", {1024}});
    }
    t.push_back({"multi_modal_projector.linear_1.weight", {4096, 1024}});
    t.push_back({"multi_modal_projector.linear_1.bias", {4096}});
    t.push_back({"multi_modal_projector.linear_2.weight", {4096, 4096}});
    t.push_back({"multi_modal_projector.linear_2.bias", {4096}});
    t.push_back({"language_model.model.embed_tokens.weight", {32064, 4096}});
    t.push_back({"language_model.model.norm.weight", {4096}});
    t.push_back({"language_model.lm_head.weight", {32064, 4096}});
    for (int l = 0; l < 32; ++l) {
        const std::string p = "language_model.model.layers." + std::to_string(l) + ".";
        t.push_back({p + "input_layernorm.weight", {4096}});
        t.push_back({p + "post_attention_layernorm.weight", {4096}});
        for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) t.push_back({p + "self_attn." + n + ".weight", {4096, 4096}});
        t.push_back({p + "mlp.gate_proj.weight", {11008, 4096}});
        t.push_back({p + "mlp.up_proj.weight", {11008, 4096}});
        t.push_back({p + "mlp.down_proj.weight", {4096, 11008}});
    }
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    const int shards = 3;
    for (int s = 0; s < shards; ++s) {
        const std::string file = "model-0000" + std::to_string(s + 1) + "-of-00003.safetensors";
        nlohmann::json h = {{"__metadata__", {{"format", "pt"}}}};
        uint64_t off = 0;
        for (size_t i = size_t(s); i < t.size(); i += shards) {
            uint64_t n = 2;
            for (auto d : t[i].second) n *= uint64_t(d);
            h[t[i].first] = {{"dtype", "F16"}, {"shape", t[i].second}, {"data_offsets", {off, off + n}}};
            off += n;
            index["weight_map"][t[i].first] = file;
        }
        std::string hs = h.dump();
        while (hs.size() % 8) hs += ' ';
        const std::string path = dir + "/" + file;
        {
            std::ofstream f(path, std::ios::binary);
            uint64_t len = hs.size();
            f.write(reinterpret_cast<const char*>(&len), 8);
            f << hs;
        }
        fs::resize_file(path, 8 + hs.size() + off);  // sparse
    }
    std::ofstream(dir + "/model.safetensors.index.json") << index.dump();
    std::ofstream(dir + "/config.json") << kLlava15Config;
}

}  // namespace

TEST_CASE("llava-1.5-7b-hf: the published config and a checkpoint of its exact tensors load as they are") {
    ModelConfig c;
    REQUIRE(config_parse(kLlava15Config, "config.json", &c).ok());
    CHECK(c.text.hidden == 4096);
    CHECK(c.text.intermediate == 11008);
    CHECK(c.text.n_layers == 32);
    CHECK(c.text.n_heads == 32);
    CHECK(c.text.n_kv_heads == 32);
    CHECK(c.text.head_dim == 128);
    CHECK(c.text.vocab == 32064);
    CHECK(c.text.rms_eps == doctest::Approx(1e-5));
    CHECK(c.text.rope_theta == 10000.f);
    CHECK(c.image_token_id == 32000);
    CHECK(c.vision.n_patches() == 576);
    CHECK(c.vision_layers_used() == 23);  // hidden_states[-2]: the last layer is not run
    CHECK(c.vla.cameras == std::vector<std::string>{"image"});
    CHECK(c.vla.head == ActionHead::text);

    const std::string dir = (fs::temp_directory_path() / ("vla-llava15-" + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    fs::create_directories(dir);
    write_llava15_skeleton(dir);
    std::unique_ptr<Engine> e;
    Status st = Engine::load(dir, {}, &e);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    // 7.06 B parameters, of which the unused last vision layer (12.6 M) and post_layernorm are skipped.
    CHECK(e->info().n_params == 7063427072LL - 12596224LL - 2048LL);
    fs::remove_all(dir);
}
