// The engine: a loaded model on a backend, running one inference at a time.
// Thread-safety: infer() may be called from any thread but not concurrently on one Engine;
// a second concurrent call returns Code::busy instead of corrupting state.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vla/backend.h"
#include "vla/config.h"
#include "vla/prune.h"
#include "vla/status.h"

namespace vla {

struct EngineOptions {
    std::string backend = "cpu";  // "cpu", "cuda", "auto" (cuda when available, else cpu)
    int n_threads = 0;            // cpu: 0 = all hardware threads
};

struct InferRequest {
    std::vector<int32_t> input_ids;  // tokenized prompt, one image_token_id per view, camera order
    std::vector<ImageInput> views;   // host frames, in camera order
    // Which head to run: -1 = the config's, else ActionHead cast to int.
    int head = -1;
    int max_new_tokens = -1;          // text head; -1 = config's
    std::vector<int32_t> stop_ids;    // text head; eos is always a stop token
    bool return_logits = false;       // last prompt position's logits (tests, goldens)
    bool return_hidden = false;       // final-norm hidden states of the head rows (tests, goldens)
    PruneOptions prune;               // visual-token pruning and its budget (default: none)
};

struct StageTimings {
    double preprocess_ms = 0, vision_ms = 0, prefill_ms = 0, head_ms = 0, total_ms = 0;
};

struct InferResult {
    ActionHead head = ActionHead::waypoints;
    std::vector<float> waypoints;     // [n_waypoints, waypoint_dim], ego frame, metres (and rad)
    int n_waypoints = 0, waypoint_dim = 0;
    std::vector<int32_t> tokens;      // text head: generated ids (stop token excluded)
    bool stopped = false;             // text head: ended on a stop token (else max tokens)
    StageTimings timings;
    int64_t n_prompt_tokens = 0;      // decoder prefill length (image tokens expanded, queries included)
    int64_t n_visual_tokens = 0;      // all views
    int64_t n_text_tokens = 0;        // prompt ids other than image tokens
    int64_t n_generated = 0;
    std::vector<float> logits;        // when return_logits: [vocab]
    std::vector<float> hidden;        // when return_hidden: [rows, hidden] of the head's rows
    PruneStats prune;                 // what pruning did and spent
};

struct ModelInfo {
    ModelConfig config;
    std::string backend;
    int64_t n_params = 0;
    int64_t weight_bytes = 0;
};

class Engine {
public:
    // Loads config.json and the weights of `dir` and checks every tensor's name and shape.
    static Status load(const std::string& dir, const EngineOptions& opts, std::unique_ptr<Engine>* out);
    ~Engine();

    Status infer(const InferRequest& req, InferResult* out);
    const ModelInfo& info() const;

    struct Impl;
private:
    explicit Engine(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
    std::atomic<bool> busy_{false};
};

}  // namespace vla
