// The engine's internals, shared by its stage files: weights (engine-weights.cpp), the vision
// tower (engine-vision.cpp), the prefill with pruning (engine-prefill.cpp), and the request's
// stages and the public API (engine.cpp). Written only against the Backend interface.
//
// Shape letters, used in names and in the shape comments ([rows, cols]) of these files:
//   V    views (cameras) in a request
//   S    image side after preprocessing; P patch side (pixels); G = (S / P)^2 patches per view
//   Tv   vision-tower tokens per view: G + 1 (the class token first)
//   Dv   vision hidden size; Fv its MLP size
//   K    visual tokens per view entering the decoder: G (class token dropped) or G + 1
//   Nv   visual tokens in the decoder, all views: V K before pruning, fewer after
//   N    decoder rows: the prompt's text tokens, the visual tokens and the action queries
//   D    decoder hidden size; F its FFN size (d and m of the FLOPs formula, docs/autoprune.md "Budget")
//   L    decoder layers; H query heads, Hkv key-value heads, E head dim
//   Q    action queries (one per waypoint); W values per waypoint (x, y[, yaw])
//   T    the token budget only: average visual tokens per decoder layer (PruneOptions::budget)
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "prune/policy.h"
#include "safetensors.h"
#include "vla/engine.h"

namespace vla {

using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct VisionLayer {
    Tensor ln1_w, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
};
struct TextLayer {
    Tensor in_norm, q, k, v, o, post_norm, gate, up, down;
};
// Every tensor the forward pass reads, bound by name at load (engine-weights.cpp).
struct Weights {
    Tensor cls, patch, pos, pre_ln_w, pre_ln_b;                         // [Dv], [Dv, 3 P P], [G + 1, Dv], [Dv], [Dv]
    std::vector<VisionLayer> vis;                                       // up to the feature layer
    Tensor proj1_w, proj1_b, proj2_w, proj2_b;                          // [D, Dv], [D], [D, D], [D]
    Tensor embed, norm, lm_head;                                        // [vocab, D], [D], [vocab, D]
    std::vector<TextLayer> txt;                                         // [L]
    Tensor cam_emb, act_q, act_fc1_w, act_fc1_b, act_fc2_w, act_fc2_b;  // [cameras, D], [Q, D], head MLP
    bool has_lm_head = false, has_action = false;
};

// The decoder sequence as pruning compacts it. Which rows are visual lives on the backend
// (kind/view/pos, I32 [N, 1]) so that selection and compaction never leave the device; the
// host knows only the counts, which every policy's plan fixes in advance.
struct Seq {
    Tensor kind, view, pos;  // 0 other / 1 visual / 2 merged; camera of a visual row (-1); RoPE position
    Tensor orig;             // only for return_kept_index: a visual row's index view * K + patch
    int64_t n = 0;           // rows (N)
    int64_t n_vis = 0;       // visual + merged rows (Nv)
    int64_t tail = 0;        // rows after the last image of the prompt (instruction, queries): never
                             // pruned; the "text" rows of the pruning scores
    int64_t n_queries = 0;   // action queries at the end (Q)
    int n_views = 0;         // V
    int64_t tail_start() const { return n - tail; }
};

struct KvCache {
    Tensor k, v;      // [capacity, Hkv E]
    int64_t len = 0;  // rows filled: this layer's own sequence length (layers may differ under pruning)
};

// What validate() learns from a request.
struct RequestPlan {
    ActionHead head = ActionHead::waypoints;
    int max_new = 0;        // text head: tokens to generate at most
    int64_t n_images = 0;   // image tokens in the prompt (= V)
    int64_t per_view = 0;   // K
    int64_t n_queries = 0;  // Q (waypoint head)
    int64_t n_text = 0;     // prompt ids other than image tokens
    int64_t n = 0;          // N = n_text + V K + Q
};

struct Engine::Impl {
    ModelInfo info;
    std::unique_ptr<WeightStore> store;
    std::unique_ptr<Backend> be;
    Weights w;
    // Decoder activations, reused by every layer, token and inference (inferences are serial):
    // sized to the longest sequence seen, so the hot path allocates nothing.
    struct Scratch {
        Tensor h, q, a, g, u;
        int64_t rows = 0;
    } scratch;

    // ---- load (engine-weights.cpp): binds every tensor by name, checking shapes; without a
    // store, synthetic weights from `seed`.
    Status bind_weights(uint64_t seed = 0, double std = 0.02);

    // ---- one inference (engine.cpp): the stages below, in order.
    Status run(const InferRequest& req, InferResult* out);
    // Checks the request against the model: head, ids, views, stop ids, sequence length.
    Status validate(const InferRequest& req, RequestPlan* rp) const;
    // Runs the vision tower and projector (engine-vision.cpp): visual [V K, D]. With `prior`,
    // also the CLS-attention prior of every visual token (head mean at the feature layer,
    // FasterVLM-style), zeroed on letterbox padding when pad_mask; prior F32 [V K + 1, 1], the
    // last entry 0 (the gather target of non-visual rows).
    Status encode_views(const std::vector<ImageInput>& views, Tensor* visual, int64_t* per_view, StageTimings* t,
                        Tensor* prior = nullptr, bool pad_mask = true);
    // The decoder's input x [N, D]: text embeddings, each view's visual tokens in place of its
    // image token, the action queries last; the row metadata in seq; vis_rows0 the visual rows
    // in order; prior_rows F32 [N, 1] the CLS prior of each row (0 elsewhere) when prior is given.
    Status assemble(const InferRequest& req, const RequestPlan& rp, const Tensor& visual, const Tensor* prior,
                    Tensor* x, Seq* seq, std::vector<int64_t>* vis_rows0, Tensor* prior_rows);
    // Runs the prefill over x with the request's pruning plan (engine-prefill.cpp); x and seq
    // are compacted between layers on the backend.
    Status prefill(const InferRequest& req, Tensor& x, Seq& seq, const Tensor& prior_rows,
                   const std::vector<int64_t>& vis_rows0, std::vector<KvCache>& kv, PrunePlan* plan, PruneStats* stats);
    // One decoder layer over x [n, D] at positions pos (I32 [n, 1]), appending to and attending
    // over `kv`. With n_prob_rows > 0, also the attention probabilities of query rows
    // [prob_row0, prob_row0 + n_prob_rows) over all keys, left on the backend in *probs:
    // [H n_prob_rows, kv.len + n].
    Status decoder_layer(int l, Tensor& x, const Tensor& pos, KvCache& kv, int64_t prob_row0 = 0,
                         int64_t n_prob_rows = 0, Tensor* probs = nullptr);
    // The waypoint head over the last Q rows of x: r->waypoints [Q, W] (and hidden, logits).
    Status waypoint_head(const InferRequest& req, const Tensor& x, InferResult* r);
    // Greedy text decoding from the last row of x, one decoder pass per token over the caches.
    Status text_decode(const InferRequest& req, const RequestPlan& rp, const Tensor& x, const PrunePlan& plan,
                       std::vector<KvCache>& kv, InferResult* r);
    // Final RMSNorm of rows [row0, row0 + n) of x into *out [n, D].
    Status final_norm_rows(const Tensor& x, int64_t row0, int64_t n, Tensor* out);
};

}  // namespace vla
