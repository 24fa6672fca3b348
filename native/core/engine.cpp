// The LLaVA-style VLA forward pass, written only against the Backend interface.
#include "vla/engine.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <cmath>

#include "vla/prune-ops.h"
#include "vla/safetensors.h"

namespace vla {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

struct VisionLayer {
    Tensor ln1_w, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
};
struct TextLayer {
    Tensor in_norm, q, k, v, o, post_norm, gate, up, down;
};
struct Weights {
    Tensor cls, patch, pos, pre_ln_w, pre_ln_b;
    std::vector<VisionLayer> vis;
    Tensor proj1_w, proj1_b, proj2_w, proj2_b;
    Tensor embed, norm, lm_head;
    std::vector<TextLayer> txt;
    Tensor cam_emb, act_q, act_fc1_w, act_fc1_b, act_fc2_w, act_fc2_b;
    bool has_lm_head = false, has_action = false;
};

// Resolves llava-hf names in either spelling and checks shapes.
class Binder {
public:
    // ws null: synthetic weights (random matrices, unit norms, zero biases) from `seed`.
    Binder(const WeightStore* ws, Backend& be, ModelInfo& info, uint64_t seed = 0, double std = 0.02)
        : ws_(ws), be_(be), info_(info), seed_(seed), std_(std) {}

    bool has(const std::string& name) const { return ws_ && ws_->find(name); }

    // First prefix under which `probe` exists, else the last one (errors then name it).
    std::string pick(std::initializer_list<const char*> prefixes, const std::string& probe) const {
        for (const char* p : prefixes)
            if (has(p + probe)) return p;
        return *(prefixes.end() - 1);
    }

    Status bind(const std::string& name, std::vector<int64_t> shape, Tensor* out, bool optional = false,
                bool* present = nullptr) {
        if (!ws_) return synthesize(name, shape, out, present);
        const TensorView* tv = ws_->find(name);
        if (!tv) {
            if (optional) {
                if (present) *present = false;
                return Status::OK();
            }
            return {Code::tensor_missing, "tensor '" + name + "' is missing from the weights"};
        }
        if (tv->shape != shape) {
            auto fmt = [](const std::vector<int64_t>& s) {
                std::string r = "[";
                for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
                return r + "]";
            };
            return {Code::tensor_shape, ws_->file_of(name) + ": tensor '" + name + "' has shape " + fmt(tv->shape) +
                                            ", the config needs " + fmt(shape)};
        }
        int64_t rows = shape.empty() ? 1 : shape[0], cols = 1;
        for (size_t i = 1; i < shape.size(); ++i) cols *= shape[i];
        if (shape.size() == 1) { rows = 1; cols = shape[0]; }
        VLA_RETURN_IF_ERROR(tensor_check_finite(*tv, ws_->file_of(name)));
        VLA_RETURN_IF_ERROR(be_.upload_weight(*tv, rows, cols, out));
        info_.n_params += tv->numel();
        info_.weight_bytes += out->numel() * int64_t(dtype_size(out->dtype));  // as the backend holds it
        if (present) *present = true;
        return Status::OK();
    }

private:
    Status synthesize(const std::string& name, const std::vector<int64_t>& shape, Tensor* out, bool* present) {
        int64_t rows = shape.empty() ? 1 : shape[0], cols = 1;
        for (size_t i = 1; i < shape.size(); ++i) cols *= shape[i];
        if (shape.size() == 1) { rows = 1; cols = shape[0]; }
        auto ends = [&](const char* suf) {
            const std::string s(suf);
            return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
        };
        const bool is_norm = name.find("norm") != std::string::npos || name.find("layrnorm") != std::string::npos;
        float mean = 0.f, sd = float(std_);
        if (ends(".bias")) sd = 0.f;
        else if (is_norm && ends(".weight")) { mean = 1.f; sd = 0.f; }
        VLA_RETURN_IF_ERROR(be_.random_weight(rows, cols, seed_ + 0x9E3779B97F4A7C15ull * ++count_, mean, sd, out));
        info_.n_params += rows * cols;
        info_.weight_bytes += rows * cols * int64_t(dtype_size(out->dtype));
        if (present) *present = true;
        return Status::OK();
    }

    const WeightStore* ws_;
    Backend& be_;
    ModelInfo& info_;
    uint64_t seed_ = 0, count_ = 0;
    double std_ = 0.02;
};

// The decoder sequence as pruning compacts it. Which rows are visual lives on the backend
// (kind/view/pos, I32 [n, 1]) so that selection and compaction never leave the device; the
// host knows only the counts, which every policy's schedule fixes in advance.
struct Seq {
    Tensor kind, view, pos;      // 0 other / 1 visual / 2 merged; camera of a visual row (-1); RoPE position
    int64_t n = 0;               // rows
    int64_t n_vis = 0;           // visual + merged rows
    int64_t tail = 0;            // rows after the last image of the prompt (instruction, queries): never
                                 // pruned; the "text" rows of the pruning scores
    int64_t n_queries = 0;       // action queries at the end
    int n_views = 0;
    int64_t tail_start() const { return n - tail; }
};

struct KvCache {
    Tensor k, v;      // [capacity, n_kv_heads * head_dim]
    int64_t len = 0;  // rows filled: this layer's own sequence length (layers may differ under pruning)
};

}  // namespace

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

    Status bind_all(uint64_t seed = 0, double std = 0.02);
    Status run(const InferRequest& req, InferResult* out);

    // Runs the vision tower and projector; returns visual tokens [n_views * per_view, d].
    // With `prior`, also the CLS-attention prior of every visual token (head mean at the
    // feature layer, FasterVLM-style), zeroed on letterbox padding when pad_mask.
    // prior: F32 [n_views * per_view + 1, 1], the last entry 0 (the gather target of non-visual rows).
    Status encode_views(const std::vector<ImageInput>& views, Tensor* visual, int64_t* per_view, StageTimings* t,
                        Tensor* prior = nullptr, bool pad_mask = true);
    // One decoder layer over x [n, d] at positions pos (I32 [n, 1]), appending to and attending
    // over `kv`. With n_prob_rows > 0, also the attention probabilities of query rows
    // [prob_row0, prob_row0 + n_prob_rows) over all keys, left on the backend in *probs:
    // [n_heads * n_prob_rows, kv.len + n].
    Status decoder_layer(int l, Tensor& x, const Tensor& pos, KvCache& kv, int64_t prob_row0 = 0,
                         int64_t n_prob_rows = 0, Tensor* probs = nullptr);
    // Runs the prefill over x with the request's pruning policy; x and seq are compacted
    // between layers on the backend. prior_rows: the CLS prior of each row (autoprune, cls-prior).
    Status prefill(const InferRequest& req, Tensor& x, Seq& seq, const Tensor& prior_rows, const std::vector<int64_t>& vis_rows0,
                   std::vector<KvCache>& kv, PruneStats* stats);
    Status final_norm_rows(const Tensor& x, int64_t row0, int64_t n, Tensor* out);
};

Status Engine::Impl::bind_all(uint64_t seed, double std) {
    const auto& c = info.config;
    const auto& vc = c.vision;
    const auto& tc = c.text;
    Binder b(store.get(), *be, info, seed, std);
    const int64_t D = vc.hidden, P = vc.patch_size, Np = vc.n_patches(), d = tc.hidden;
    const std::string vp = b.pick({"model.vision_tower.vision_model.", "vision_tower.vision_model."},
                                  "embeddings.patch_embedding.weight");
    VLA_RETURN_IF_ERROR(b.bind(vp + "embeddings.class_embedding", {D}, &w.cls));
    VLA_RETURN_IF_ERROR(b.bind(vp + "embeddings.patch_embedding.weight", {D, 3, P, P}, &w.patch));
    VLA_RETURN_IF_ERROR(b.bind(vp + "embeddings.position_embedding.weight", {Np + 1, D}, &w.pos));
    VLA_RETURN_IF_ERROR(b.bind(vp + "pre_layrnorm.weight", {D}, &w.pre_ln_w));
    VLA_RETURN_IF_ERROR(b.bind(vp + "pre_layrnorm.bias", {D}, &w.pre_ln_b));
    // Only the layers up to the feature layer run; the rest need not be present.
    w.vis.resize(size_t(c.vision_layers_used()));
    for (size_t l = 0; l < w.vis.size(); ++l) {
        const std::string p = vp + "encoder.layers." + std::to_string(l) + ".";
        auto& L = w.vis[l];
        VLA_RETURN_IF_ERROR(b.bind(p + "layer_norm1.weight", {D}, &L.ln1_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "layer_norm1.bias", {D}, &L.ln1_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "layer_norm2.weight", {D}, &L.ln2_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "layer_norm2.bias", {D}, &L.ln2_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.q_proj.weight", {D, D}, &L.q_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.q_proj.bias", {D}, &L.q_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.k_proj.weight", {D, D}, &L.k_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.k_proj.bias", {D}, &L.k_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.v_proj.weight", {D, D}, &L.v_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.v_proj.bias", {D}, &L.v_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.out_proj.weight", {D, D}, &L.o_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.out_proj.bias", {D}, &L.o_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.fc1.weight", {vc.intermediate, D}, &L.fc1_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.fc1.bias", {vc.intermediate}, &L.fc1_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.fc2.weight", {D, vc.intermediate}, &L.fc2_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.fc2.bias", {D}, &L.fc2_b));
    }
    const std::string pp = b.pick({"model.multi_modal_projector.", "multi_modal_projector."}, "linear_1.weight");
    VLA_RETURN_IF_ERROR(b.bind(pp + "linear_1.weight", {d, D}, &w.proj1_w));
    VLA_RETURN_IF_ERROR(b.bind(pp + "linear_1.bias", {d}, &w.proj1_b));
    VLA_RETURN_IF_ERROR(b.bind(pp + "linear_2.weight", {d, d}, &w.proj2_w));
    VLA_RETURN_IF_ERROR(b.bind(pp + "linear_2.bias", {d}, &w.proj2_b));

    const std::string lp = b.pick({"model.language_model.", "language_model.model."}, "embed_tokens.weight");
    const int64_t qd = int64_t(tc.n_heads) * tc.head_dim, kvd = int64_t(tc.n_kv_heads) * tc.head_dim;
    VLA_RETURN_IF_ERROR(b.bind(lp + "embed_tokens.weight", {tc.vocab, d}, &w.embed));
    VLA_RETURN_IF_ERROR(b.bind(lp + "norm.weight", {d}, &w.norm));
    w.txt.resize(size_t(tc.n_layers));
    for (int l = 0; l < tc.n_layers; ++l) {
        const std::string p = lp + "layers." + std::to_string(l) + ".";
        auto& L = w.txt[size_t(l)];
        VLA_RETURN_IF_ERROR(b.bind(p + "input_layernorm.weight", {d}, &L.in_norm));
        VLA_RETURN_IF_ERROR(b.bind(p + "post_attention_layernorm.weight", {d}, &L.post_norm));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.q_proj.weight", {qd, d}, &L.q));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.k_proj.weight", {kvd, d}, &L.k));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.v_proj.weight", {kvd, d}, &L.v));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.o_proj.weight", {d, qd}, &L.o));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.gate_proj.weight", {tc.intermediate, d}, &L.gate));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.up_proj.weight", {tc.intermediate, d}, &L.up));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.down_proj.weight", {d, tc.intermediate}, &L.down));
    }
    if (tc.tie_embeddings) {
        w.lm_head = w.embed;
        w.has_lm_head = true;
    } else {
        const bool need = c.vla.head == ActionHead::text;
        const std::string head_name = !store || store->find("lm_head.weight") ? "lm_head.weight" : "language_model.lm_head.weight";
        VLA_RETURN_IF_ERROR(b.bind(head_name, {tc.vocab, d}, &w.lm_head, !need, &w.has_lm_head));
    }

    const auto& va = c.vla;
    if (va.camera_embedding)
        VLA_RETURN_IF_ERROR(b.bind("vla.camera_embedding", {int64_t(va.cameras.size()), d}, &w.cam_emb));
    if (va.n_waypoints > 0 && va.action_mlp_hidden > 0) {
        const bool need = va.head == ActionHead::waypoints;
        const int64_t H = va.action_mlp_hidden;
        VLA_RETURN_IF_ERROR(b.bind("vla.action_queries", {va.n_waypoints, d}, &w.act_q, !need, &w.has_action));
        if (w.has_action) {
            VLA_RETURN_IF_ERROR(b.bind("vla.action_head.fc1.weight", {H, d}, &w.act_fc1_w));
            VLA_RETURN_IF_ERROR(b.bind("vla.action_head.fc1.bias", {H}, &w.act_fc1_b));
            VLA_RETURN_IF_ERROR(b.bind("vla.action_head.fc2.weight", {va.waypoint_dim, H}, &w.act_fc2_w));
            VLA_RETURN_IF_ERROR(b.bind("vla.action_head.fc2.bias", {va.waypoint_dim}, &w.act_fc2_b));
        }
    }
    return Status::OK();
}

Status Engine::Impl::encode_views(const std::vector<ImageInput>& views, Tensor* visual, int64_t* per_view,
                                  StageTimings* t, Tensor* prior, bool pad_mask) {
    const auto& c = info.config;
    const auto& vc = c.vision;
    Backend& B = *be;
    const int nv = int(views.size());
    const int S = vc.image_size, P = vc.patch_size, Np = vc.n_patches(), T = Np + 1;
    const int64_t D = vc.hidden, N = int64_t(nv) * T;

    auto t0 = Clock::now();
    Tensor img;
    VLA_RETURN_IF_ERROR(B.alloc(int64_t(nv) * 3, int64_t(S) * S, &img));
    for (int v = 0; v < nv; ++v) {
        Status st = B.preprocess(views[size_t(v)], c.vla.preprocess, img, v);
        if (!st.ok())
            return {st.code(), "view " + std::to_string(v) + " (camera '" + c.vla.cameras[size_t(v)] + "'): " + st.message()};
    }
    B.synchronize();
    t->preprocess_ms += ms_since(t0);

    t0 = Clock::now();
    Tensor x, h, q, k, vv, a, f;
    VLA_RETURN_IF_ERROR(B.alloc(N, D, &x));
    VLA_RETURN_IF_ERROR(B.alloc(N, D, &h));
    VLA_RETURN_IF_ERROR(B.alloc(N, D, &q));
    VLA_RETURN_IF_ERROR(B.alloc(N, D, &k));
    VLA_RETURN_IF_ERROR(B.alloc(N, D, &vv));
    VLA_RETURN_IF_ERROR(B.alloc(N, D, &a));
    VLA_RETURN_IF_ERROR(B.alloc(N, vc.intermediate, &f));
    B.patch_embed(img, nv, S, P, w.patch, x);
    for (int v = 0; v < nv; ++v) {
        const int32_t zero = 0;
        B.get_rows(w.cls, &zero, 1, x, int64_t(v) * T);  // class token first
        B.add_rows(x, int64_t(v) * T, w.pos, 0, T, false);
    }
    B.layer_norm(x, w.pre_ln_w, w.pre_ln_b, vc.ln_eps, x);
    AttentionParams ap;
    ap.n_head = ap.n_kv_head = vc.n_heads;
    ap.head_dim = vc.head_dim();
    ap.n_kv = N;
    ap.causal = false;
    ap.n_batch = nv;  // each view attends only within itself
    ap.scale = 1.f / std::sqrt(float(vc.head_dim()));
    const int64_t pv_ = c.drop_cls ? Np : T;
    for (size_t li = 0; li < w.vis.size(); ++li) {
        const auto& L = w.vis[li];
        B.layer_norm(x, L.ln1_w, L.ln1_b, vc.ln_eps, h);
        B.matmul(h, L.q_w, &L.q_b, q);
        B.matmul(h, L.k_w, &L.k_b, k);
        B.matmul(h, L.v_w, &L.v_b, vv);
        B.attention(q, k, vv, a, ap);
        if (prior && li + 1 == w.vis.size()) {
            // The class token's attention at the feature layer: one row per view and head.
            std::vector<int32_t> rows;
            for (int v = 0; v < nv; ++v) rows.push_back(int32_t(v * T));
            Tensor probs;
            VLA_RETURN_IF_ERROR(B.alloc(int64_t(vc.n_heads) * nv, N, &probs));
            B.attention_probs(q, k, rows.data(), nv, probs, ap);
            // Padding patches get no prior (LLaVA-1.5 letterbox); the mean over heads on the backend.
            const int g = vc.image_size / vc.patch_size;
            std::vector<int32_t> masked(size_t(nv * pv_), 0);
            for (int v = 0; v < nv; ++v) {
                if (!(pad_mask && c.vla.preprocess.pad)) break;
                const std::vector<uint8_t> mask = prune_pad_mask(views[size_t(v)].width, views[size_t(v)].height, g);
                for (int64_t i = 0; i < pv_; ++i)
                    masked[size_t(v * pv_ + i)] = c.drop_cls ? mask[size_t(i)] : (i > 0 && mask[size_t(i - 1)]);
            }
            Tensor mt;
            VLA_RETURN_IF_ERROR(B.alloc_i32(int64_t(nv) * pv_, 1, &mt));
            B.write_i32(mt, masked.data(), int64_t(masked.size()));
            VLA_RETURN_IF_ERROR(B.alloc(int64_t(nv) * pv_ + 1, 1, prior));
            B.cls_prior(probs, vc.n_heads, nv, T, c.drop_cls ? 1 : 0, pv_, mt, *prior);
            const float zero = 0.f;
            B.write(*prior, &zero, 1, int64_t(nv) * pv_);
        }
        B.matmul(a, L.o_w, &L.o_b, h);
        B.add(x, h);
        B.layer_norm(x, L.ln2_w, L.ln2_b, vc.ln_eps, h);
        B.matmul(h, L.fc1_w, &L.fc1_b, f);
        B.unary(vc.act, f);
        B.matmul(f, L.fc2_w, &L.fc2_b, h);
        B.add(x, h);
    }
    // Features: drop each view's class token ("default") or keep it ("full").
    const int64_t pv = pv_;
    Tensor feats;
    VLA_RETURN_IF_ERROR(B.alloc(int64_t(nv) * pv, D, &feats));
    std::vector<int32_t> idx;
    idx.reserve(size_t(nv * pv));
    for (int v = 0; v < nv; ++v)
        for (int64_t i = c.drop_cls ? 1 : 0; i < T; ++i) idx.push_back(int32_t(int64_t(v) * T + i));
    B.gather_rows(x, idx.data(), int64_t(idx.size()), feats);

    const int64_t d = c.text.hidden;
    Tensor p1, p2;
    VLA_RETURN_IF_ERROR(B.alloc(feats.rows, d, &p1));
    VLA_RETURN_IF_ERROR(B.alloc(feats.rows, d, &p2));
    B.matmul(feats, w.proj1_w, &w.proj1_b, p1);
    B.unary(c.projector_act, p1);
    B.matmul(p1, w.proj2_w, &w.proj2_b, p2);
    if (c.vla.camera_embedding)
        for (int v = 0; v < nv; ++v) B.add_rows(p2, int64_t(v) * pv, w.cam_emb, v, pv, true);
    B.synchronize();
    t->vision_ms += ms_since(t0);
    *visual = p2;
    *per_view = pv;
    return Status::OK();
}

Status Engine::Impl::decoder_layer(int l, Tensor& x, const Tensor& pos, KvCache& kv, int64_t prob_row0,
                                   int64_t n_prob_rows, Tensor* probs) {
    const auto& tc = info.config.text;
    const auto& L = w.txt[size_t(l)];
    Backend& B = *be;
    const int64_t n = x.rows, d = tc.hidden, qd = int64_t(tc.n_heads) * tc.head_dim;
    if (kv.len + n > kv.k.rows) return {Code::internal, "kv cache overflow at layer " + std::to_string(l)};
    if (scratch.rows < n) {
        scratch = {};
        VLA_RETURN_IF_ERROR(B.alloc(n, d, &scratch.h));
        VLA_RETURN_IF_ERROR(B.alloc(n, qd, &scratch.q));
        VLA_RETURN_IF_ERROR(B.alloc(n, qd, &scratch.a));
        VLA_RETURN_IF_ERROR(B.alloc(n, tc.intermediate, &scratch.g));
        VLA_RETURN_IF_ERROR(B.alloc(n, tc.intermediate, &scratch.u));
        scratch.rows = n;
    }
    Tensor h = B.rows(scratch.h, 0, n), q = B.rows(scratch.q, 0, n), a = B.rows(scratch.a, 0, n),
           g = B.rows(scratch.g, 0, n), u = B.rows(scratch.u, 0, n);
    // K and V are written straight into this layer's cache rows.
    Tensor k = B.rows(kv.k, kv.len, n), v = B.rows(kv.v, kv.len, n);
    B.rms_norm(x, L.in_norm, tc.rms_eps, h);
    B.matmul(h, L.q, nullptr, q);
    B.matmul(h, L.k, nullptr, k);
    B.matmul(h, L.v, nullptr, v);
    B.rope(q, tc.n_heads, tc.head_dim, pos, tc.rope_theta);
    B.rope(k, tc.n_kv_heads, tc.head_dim, pos, tc.rope_theta);
    AttentionParams ap;
    ap.n_head = tc.n_heads;
    ap.n_kv_head = tc.n_kv_heads;
    ap.head_dim = tc.head_dim;
    ap.n_kv = kv.len + n;
    ap.kv_offset = kv.len;
    ap.causal = true;
    ap.scale = 1.f / std::sqrt(float(tc.head_dim));
    B.attention(q, kv.k, kv.v, a, ap);
    if (n_prob_rows > 0 && probs) {
        // Beside the fused attention, so that pruning never forces a slow attention path.
        std::vector<int32_t> rows(static_cast<size_t>(n_prob_rows));
        for (int64_t i = 0; i < n_prob_rows; ++i) rows[size_t(i)] = int32_t(prob_row0 + i);
        VLA_RETURN_IF_ERROR(B.alloc(int64_t(tc.n_heads) * n_prob_rows, ap.n_kv, probs));
        B.attention_probs(q, kv.k, rows.data(), n_prob_rows, *probs, ap);
    }
    kv.len += n;
    B.matmul(a, L.o, nullptr, h);
    B.add(x, h);
    B.rms_norm(x, L.post_norm, tc.rms_eps, h);
    B.matmul(h, L.gate, nullptr, g);
    B.matmul(h, L.up, nullptr, u);
    B.swiglu(g, u, g);
    B.matmul(g, L.down, nullptr, h);
    B.add(x, h);
    return Status::OK();
}

namespace {

// Keeps the non-visual rows and the visual rows flagged in `keep` (I32 [n, 1]), puts the c rows
// of `merged` [c, d] just before the tail, and rebuilds x and the row metadata (positions
// re-indexed 0..n-1, or the survivors' own). All on the backend; `kept` is the number of flagged
// rows, which the caller's schedule knows.
Status compact(Backend& B, Tensor& x, Seq& seq, const Tensor& keep, int64_t kept, const Tensor* merged, int64_t c,
               bool reindex) {
    const int64_t n_keep = seq.n - seq.n_vis + kept, a = n_keep - seq.tail, n_new = n_keep + c, d = x.cols;
    Tensor idx, nx, kind, view, pos;
    VLA_RETURN_IF_ERROR(B.alloc_i32(std::max<int64_t>(n_keep, 1), 1, &idx));
    B.prune_index(keep, seq.kind, true, seq.n, idx);
    VLA_RETURN_IF_ERROR(B.alloc(n_new, d, &nx));
    VLA_RETURN_IF_ERROR(B.alloc_i32(n_new, 1, &kind));
    VLA_RETURN_IF_ERROR(B.alloc_i32(n_new, 1, &view));
    VLA_RETURN_IF_ERROR(B.alloc_i32(n_new, 1, &pos));
    const Tensor head_idx = B.rows(idx, 0, a), tail_idx = B.rows(idx, a, seq.tail);
    auto move = [&](const Tensor& src, Tensor& dst) {
        if (a > 0) {
            Tensor part = B.rows(dst, 0, a);
            B.gather_rows_idx(src, head_idx, a, part);
        }
        if (seq.tail > 0) {
            Tensor part = B.rows(dst, a + c, seq.tail);
            B.gather_rows_idx(src, tail_idx, seq.tail, part);
        }
    };
    move(x, nx);
    if (c) B.copy_rows(*merged, 0, c, nx, a);
    move(seq.kind, kind);
    move(seq.view, view);
    move(seq.pos, pos);
    B.prune_merged_meta(kind, view, pos, a, c, n_new, reindex);
    x = nx;
    seq.kind = kind;
    seq.view = view;
    seq.pos = pos;
    seq.n = n_new;
    seq.n_vis = kept + c;
    return Status::OK();
}

double mi_of(const std::vector<float>& pairs, int64_t slot) {
    return double(pairs[size_t(2 * slot)]) + double(pairs[size_t(2 * slot + 1)]);
}

}  // namespace

Status Engine::Impl::prefill(const InferRequest& req, Tensor& x, Seq& seq, const Tensor& prior_rows,
                             const std::vector<int64_t>& vis_rows0, std::vector<KvCache>& kv, PruneStats* st) {
    const auto& tc = info.config.text;
    Backend& B = *be;
    const PruneOptions& po = req.prune;
    const int L = tc.n_layers;
    const int Nv = int(seq.n_vis);
    const int n_other = int(seq.n) - Nv;
    const double d = tc.hidden, m = tc.intermediate;
    st->policy = po.policy;
    st->n_visual = Nv;
    st->budget = po.budget;
    st->kept.assign(size_t(L), Nv);
    st->merged.assign(size_t(L), 0);
    st->kept_per_view.assign(size_t(L), std::vector<int>(size_t(seq.n_views), 0));
    const std::vector<int> full(size_t(L), Nv);
    st->flops_unpruned = prune_plan_flops(full, Nv, n_other, d, m);

    // No pruning when the budget allows everything: the result is then bit-identical to none.
    PrunePolicy policy = po.policy;
    if (po.budget.kind == BudgetKind::none) policy = PrunePolicy::none;
    if (po.budget.kind == BudgetKind::tokens && po.budget.value >= Nv) policy = PrunePolicy::none;
    if (po.budget.kind == BudgetKind::flops && po.budget.value * 1e9 >= st->flops_unpruned) policy = PrunePolicy::none;
    if (po.policy != PrunePolicy::none && po.budget.kind == BudgetKind::none)
        return {Code::input, std::string("policy ") + prune_policy_name(po.policy) + " needs a budget (tokens:T or flops:GFLOP)"};

    PolicyPlan plan;
    if (policy != PrunePolicy::none && policy != PrunePolicy::autoprune)
        VLA_RETURN_IF_ERROR(prune_plan(policy, po.budget, L, Nv, n_other, d, m, po, &plan));
    // AutoPrune: T sets N1 (for a FLOPs cap, the T that keeps the cap reachable).
    double T = po.budget.value;
    if (policy == PrunePolicy::autoprune && po.budget.kind == BudgetKind::flops) {
        T = autoprune_tokens_for_flops(L, Nv, po.budget.value * 1e9, n_other, d, m, po.autoprune);
        if (T < 0)
            return {Code::input, "budget flops:" + std::to_string(po.budget.value) + " GFLOP cannot be met by policy autoprune: layer 0 over all " +
                                     std::to_string(Nv) + " visual tokens plus the smallest schedule is over it"};
    }
    const int n1 = std::min(int(std::floor(2.5 * T)), Nv);
    Schedule sched;
    st->target_tokens = policy == PrunePolicy::none ? Nv : T;

    // Per-layer counts stay on the backend until the end: one read after the prefill.
    Tensor counts, mi;
    VLA_RETURN_IF_ERROR(B.alloc_i32(L, seq.n_views + 2, &counts));
    VLA_RETURN_IF_ERROR(B.alloc(1, 2 * int64_t(L), &mi));
    std::vector<float> mi_host(size_t(2 * L), 0.f);
    B.write(mi, mi_host.data(), 2 * int64_t(L));
    auto record = [&](int l) { B.prune_count(seq.kind, seq.view, seq.n, seq.n_views, counts, l); };
    std::vector<int> expect(size_t(L), 0);  // the host's count of visual + merged rows, checked at the end

    // Pre-LLM selection (cls-prior, random): T tokens enter layer 0.
    int entering = Nv;
    if (plan.pre_llm >= 0) {
        Tensor keep;
        VLA_RETURN_IF_ERROR(B.alloc_i32(seq.n, 1, &keep));
        if (policy == PrunePolicy::cls_prior) {
            B.prune_topk(prior_rows, seq.kind, nullptr, seq.n, plan.pre_llm, keep);
        } else {
            std::vector<int64_t> all(static_cast<size_t>(Nv));
            for (int i = 0; i < Nv; ++i) all[size_t(i)] = i;
            std::mt19937_64 rng(po.seed);
            std::shuffle(all.begin(), all.end(), rng);
            all.resize(size_t(plan.pre_llm));
            std::vector<int32_t> flags(size_t(seq.n), 0);
            for (int64_t v : all) flags[size_t(vis_rows0[size_t(v)])] = 1;
            B.write_i32(keep, flags.data(), seq.n);
        }
        VLA_RETURN_IF_ERROR(compact(B, x, seq, keep, plan.pre_llm, nullptr, 0, po.reindex_positions));
        entering = plan.pre_llm;
    }

    for (int l = 0; l < L; ++l) {
        // Which query rows this layer's pruning step scores with: always a contiguous range.
        const int64_t n = seq.n, tail = seq.tail_start();
        int64_t r0 = 0, nr = 0;
        bool step = false;
        switch (policy) {
        case PrunePolicy::autoprune:
            step = true;
            r0 = tail;
            nr = n - tail;
            break;
        case PrunePolicy::fastv:
            step = l == std::max(1, std::min(po.fastv_layer, L - 1)) - 1;
            r0 = n - 1;  // the last prompt token
            nr = 1;
            break;
        case PrunePolicy::pdrop:
            step = std::find(plan.pdrop_layers.begin(), plan.pdrop_layers.end(), l) != plan.pdrop_layers.end();
            r0 = std::max(tail, n - 1 - seq.n_queries);  // the last instruction token
            nr = 1;
            break;
        case PrunePolicy::sparsevlm_fixed:
            step = std::find(plan.sparsevlm_layers.begin(), plan.sparsevlm_layers.end(), l) != plan.sparsevlm_layers.end();
            r0 = tail;
            nr = n - tail;
            break;
        default:
            break;
        }
        step = step && seq.n_vis > 0 && nr > 0;
        Tensor probs;
        VLA_RETURN_IF_ERROR(decoder_layer(l, x, seq.pos, kv[size_t(l)], r0, step ? nr : 0, &probs));
        auto done = [&] {
            record(l);
            expect[size_t(l)] = int(seq.n_vis);
        };
        if (!step) {
            done();
            continue;
        }
        Tensor scores;
        VLA_RETURN_IF_ERROR(B.alloc(n, 1, &scores));
        B.prune_scores(probs, int64_t(tc.n_heads) * nr, seq.kind, n, scores);
        int64_t K = seq.n_vis;
        bool recycle = false;
        if (policy == PrunePolicy::autoprune) {
            B.prune_mi(probs, tc.n_heads, nr, seq.kind, n, mi, l);
            if (l == 0) {
                // Stage B: CLS prior + 0.3 MI_0 a_0, no merging.
                Tensor keep;
                VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &keep));
                B.prune_prior_scores(scores, prior_rows, seq.kind, n, mi, 0, 0.3, double(nr));
                const int64_t k0 = std::min<int64_t>(n1, seq.n_vis);
                B.prune_topk(scores, seq.kind, nullptr, n, k0, keep);
                VLA_RETURN_IF_ERROR(compact(B, x, seq, keep, k0, nullptr, 0, po.reindex_positions));
                done();
                continue;
            }
            if (l == 1) {
                // The one device-to-host sync of the prefill: MI_1 shapes the curve.
                B.read(mi, mi_host.data(), 4);
                VLA_RETURN_IF_ERROR(B.take_error());  // a device fault, not a schedule
                st->mi1 = mi_of(mi_host, 1);
                if (po.budget.kind == BudgetKind::flops) {
                    bool met = true;
                    sched = autoprune_schedule_flops(L, Nv, n1, st->mi1, po.budget.value * 1e9, n_other, d, m, po.autoprune, &met);
                } else {
                    sched = autoprune_schedule(L, Nv, T, st->mi1, po.autoprune);
                }
                st->k = sched.k;
                st->scale = sched.scale;
            }
            K = std::min<int64_t>(int64_t(std::ceil((n1 - 1) * sched.keep_frac[size_t(l)])), seq.n_vis);
            recycle = po.recycle;
        } else if (policy == PrunePolicy::fastv) {
            K = plan.fastv_keep;
        } else if (policy == PrunePolicy::pdrop) {
            const size_t s_ = size_t(std::find(plan.pdrop_layers.begin(), plan.pdrop_layers.end(), l) - plan.pdrop_layers.begin());
            K = int64_t(std::floor(Nv * std::pow(plan.pdrop_lambda, double(s_ + 1))));
        } else if (policy == PrunePolicy::sparsevlm_fixed) {
            const size_t s_ = size_t(std::find(plan.sparsevlm_layers.begin(), plan.sparsevlm_layers.end(), l) - plan.sparsevlm_layers.begin());
            K = plan.sparsevlm_counts[s_];
            recycle = po.recycle;
        }
        K = std::max<int64_t>(0, std::min<int64_t>(K, seq.n_vis));
        if (K == seq.n_vis) {
            done();
            continue;
        }
        Tensor keep, merged;
        VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &keep));
        B.prune_topk(scores, seq.kind, nullptr, n, K, keep);
        int64_t C = 0;
        if (recycle) {
            // Token recycling: the best-scored 30 % (+1) of the pruned merge into C tokens.
            const int64_t pruned = seq.n_vis - K;
            const int64_t M = int64_t(0.3 * double(pruned)) + 1;
            C = prune_recycled_count(pruned);
            Tensor sel, sel_idx, hs;
            VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &sel));
            VLA_RETURN_IF_ERROR(B.alloc_i32(M, 1, &sel_idx));
            VLA_RETURN_IF_ERROR(B.alloc(M, x.cols, &hs));
            VLA_RETURN_IF_ERROR(B.alloc(C, x.cols, &merged));
            B.prune_topk(scores, seq.kind, &keep, n, M, sel);
            B.prune_index(sel, seq.kind, false, n, sel_idx);
            B.gather_rows_idx(x, sel_idx, M, hs);
            VLA_RETURN_IF_ERROR(B.dpc_knn_merge(hs, C, merged));
        }
        VLA_RETURN_IF_ERROR(compact(B, x, seq, keep, K, C ? &merged : nullptr, C,
                                    policy == PrunePolicy::fastv ? false : po.reindex_positions));
        done();
    }

    // What pruning did, per layer and view: read once, after the prefill.
    std::vector<int32_t> ch(size_t(L) * size_t(seq.n_views + 2));
    B.read_i32(counts, ch.data(), int64_t(ch.size()));
    B.read(mi, mi_host.data(), 2 * int64_t(L));
    VLA_RETURN_IF_ERROR(B.take_error());  // before the counts are believed
    if (policy == PrunePolicy::autoprune) st->mi0 = mi_of(mi_host, 0) / double(std::max<int64_t>(1, seq.tail));
    for (int l = 0; l < L; ++l) {
        const int32_t* row = ch.data() + size_t(l) * size_t(seq.n_views + 2);
        for (int v = 0; v < seq.n_views; ++v) st->kept_per_view[size_t(l)][size_t(v)] = row[v];
        st->kept[size_t(l)] = row[seq.n_views];
        st->merged[size_t(l)] = row[seq.n_views + 1];
        if (row[seq.n_views] != expect[size_t(l)])
            return {Code::internal, "pruning at layer " + std::to_string(l) + " left " + std::to_string(row[seq.n_views]) +
                                        " visual rows, the schedule expected " + std::to_string(expect[size_t(l)])};
    }
    st->flops = prune_plan_flops(st->kept, entering, n_other, d, m);
    double sum = 0;
    for (int v : st->kept) sum += v;
    st->avg_tokens = sum / double(L);
    if (po.budget.kind == BudgetKind::tokens) st->budget_met = st->avg_tokens <= po.budget.value + 0.5;
    else if (po.budget.kind == BudgetKind::flops) st->budget_met = st->flops <= po.budget.value * 1e9;
    return Status::OK();
}

Status Engine::Impl::final_norm_rows(const Tensor& x, int64_t row0, int64_t n, Tensor* out) {
    VLA_RETURN_IF_ERROR(be->alloc(n, x.cols, out));
    be->rms_norm(be->rows(x, row0, n), w.norm, info.config.text.rms_eps, *out);
    return Status::OK();
}

Status Engine::Impl::run(const InferRequest& req, InferResult* out) {
    const auto t_start = Clock::now();
    const auto& c = info.config;
    const auto& tc = c.text;
    Backend& B = *be;
    InferResult r;

    // ---- validate the request
    const ActionHead head = req.head < 0 ? c.vla.head : ActionHead(req.head);
    if (req.head > int(ActionHead::text)) return {Code::input, "unknown head " + std::to_string(req.head)};
    if (head == ActionHead::waypoints && !w.has_action)
        return {Code::input, "this model has no waypoint head (vla.action_queries and vla.action_head.* are absent)"};
    if (head == ActionHead::text && !w.has_lm_head) return {Code::input, "this model has no lm_head for the text head"};
    if (req.input_ids.empty()) return {Code::input, "input_ids is empty"};
    const size_t n_cams = c.vla.cameras.size();
    if (req.views.empty()) return {Code::input, "at least one view is required"};
    if (req.views.size() > n_cams)
        return {Code::input, std::to_string(req.views.size()) + " views given, the model has " + std::to_string(n_cams) +
                                 " cameras"};
    int64_t n_img_tokens = 0;
    for (size_t i = 0; i < req.input_ids.size(); ++i) {
        const int32_t id = req.input_ids[i];
        if (id == c.image_token_id) { ++n_img_tokens; continue; }
        if (id < 0 || id >= tc.vocab)
            return {Code::input, "input_ids[" + std::to_string(i) + "] = " + std::to_string(id) + " is outside the vocabulary (" +
                                     std::to_string(tc.vocab) + ")"};
    }
    if (n_img_tokens != int64_t(req.views.size()))
        return {Code::input, "the prompt has " + std::to_string(n_img_tokens) + " image tokens for " +
                                 std::to_string(req.views.size()) + " views"};
    const int max_new = head == ActionHead::text ? (req.max_new_tokens >= 0 ? req.max_new_tokens : c.vla.max_new_tokens) : 0;
    for (int32_t s : req.stop_ids)
        if (s < 0 || s >= tc.vocab) return {Code::input, "stop id " + std::to_string(s) + " is outside the vocabulary"};

    // ---- vision
    const int64_t reads0 = B.host_reads();
    B.reset_peak();
    const PrunePolicy policy = req.prune.policy;
    const bool need_prior = policy == PrunePolicy::autoprune || policy == PrunePolicy::cls_prior;
    Tensor visual;
    int64_t per_view = 0;
    Tensor prior;
    VLA_RETURN_IF_ERROR(B.take_error());  // nothing left over from a failed inference
    VLA_RETURN_IF_ERROR(encode_views(req.views, &visual, &per_view, &r.timings, need_prior ? &prior : nullptr, req.prune.pad_mask));
    VLA_RETURN_IF_ERROR(B.take_error());

    // ---- assemble the prefill sequence
    const auto t_prefill = Clock::now();
    const int64_t n_queries = head == ActionHead::waypoints ? c.vla.n_waypoints : 0;
    const int64_t n_text = int64_t(req.input_ids.size()) - n_img_tokens;
    const int64_t n = n_text + n_img_tokens * per_view + n_queries;
    if (n + max_new > tc.max_positions)
        return {Code::input, "sequence of " + std::to_string(n + max_new) + " tokens exceeds max_position_embeddings " +
                                 std::to_string(tc.max_positions)};
    Tensor x;
    VLA_RETURN_IF_ERROR(B.alloc(n, tc.hidden, &x));
    Seq seq;
    seq.n = n;
    seq.n_vis = n_img_tokens * per_view;
    seq.n_queries = n_queries;
    seq.n_views = int(req.views.size());
    std::vector<int32_t> kind(size_t(n), 0), view(size_t(n), -1), pos(static_cast<size_t>(n)), prior_idx(size_t(n), int32_t(seq.n_vis));
    std::vector<int64_t> vis_rows0;  // the visual rows before any pruning, in order
    {
        int64_t row = 0, v = 0, last_vis_end = 0;
        size_t i = 0;
        while (i < req.input_ids.size()) {
            if (req.input_ids[i] == c.image_token_id) {
                B.copy_rows(visual, v * per_view, per_view, x, row);
                for (int64_t j = 0; j < per_view; ++j) {
                    kind[size_t(row + j)] = 1;
                    view[size_t(row + j)] = int32_t(v);
                    prior_idx[size_t(row + j)] = int32_t(v * per_view + j);
                    vis_rows0.push_back(row + j);
                }
                row += per_view;
                last_vis_end = row;
                ++v;
                ++i;
                continue;
            }
            size_t j = i;
            while (j < req.input_ids.size() && req.input_ids[j] != c.image_token_id) ++j;
            B.get_rows(w.embed, req.input_ids.data() + i, int64_t(j - i), x, row);
            row += int64_t(j - i);
            i = j;
        }
        if (n_queries) {
            std::vector<int32_t> q(static_cast<size_t>(n_queries));
            for (int64_t k = 0; k < n_queries; ++k) q[size_t(k)] = int32_t(k);
            B.get_rows(w.act_q, q.data(), n_queries, x, row);
        }
        seq.tail = n - last_vis_end;
    }
    for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = int32_t(i);
    VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &seq.kind));
    VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &seq.view));
    VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &seq.pos));
    B.write_i32(seq.kind, kind.data(), n);
    B.write_i32(seq.view, view.data(), n);
    B.write_i32(seq.pos, pos.data(), n);
    // The CLS prior of each row (0 for non-visual rows: they read the trailing zero).
    Tensor prior_rows;
    if (need_prior) {
        Tensor pidx;
        VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &pidx));
        VLA_RETURN_IF_ERROR(B.alloc(n, 1, &prior_rows));
        B.write_i32(pidx, prior_idx.data(), n);
        B.gather_rows_idx(prior, pidx, n, prior_rows);
    }

    // ---- prefill: every layer keeps its own cache and length, so rows may be removed between layers
    const int64_t kvd = int64_t(tc.n_kv_heads) * tc.head_dim;
    std::vector<KvCache> kv(static_cast<size_t>(tc.n_layers));
    for (auto& c_ : kv) {
        VLA_RETURN_IF_ERROR(B.alloc(n + max_new, kvd, &c_.k));
        VLA_RETURN_IF_ERROR(B.alloc(n + max_new, kvd, &c_.v));
    }
    VLA_RETURN_IF_ERROR(prefill(req, x, seq, prior_rows, vis_rows0, kv, &r.prune));
    VLA_RETURN_IF_ERROR(B.take_error());
    r.prefill_host_reads = B.host_reads() - reads0;
    const int64_t n_final = x.rows;  // rows after the last layer (pruning may have removed some)
    B.synchronize();
    r.timings.prefill_ms = ms_since(t_prefill);

    // ---- heads
    const auto t_head = Clock::now();
    r.head = head;
    r.n_prompt_tokens = n;
    r.n_visual_tokens = n_img_tokens * per_view;
    r.n_text_tokens = n_text;
    if (head == ActionHead::waypoints) {
        const auto& va = c.vla;
        Tensor hn, h1, h2;
        VLA_RETURN_IF_ERROR(final_norm_rows(x, n_final - n_queries, n_queries, &hn));
        VLA_RETURN_IF_ERROR(B.alloc(n_queries, va.action_mlp_hidden, &h1));
        VLA_RETURN_IF_ERROR(B.alloc(n_queries, va.waypoint_dim, &h2));
        B.matmul(hn, w.act_fc1_w, &w.act_fc1_b, h1);
        B.unary(Unary::gelu, h1);
        B.matmul(h1, w.act_fc2_w, &w.act_fc2_b, h2);
        r.n_waypoints = int(n_queries);
        r.waypoint_dim = va.waypoint_dim;
        r.waypoints.resize(size_t(n_queries * va.waypoint_dim));
        B.read(h2, r.waypoints.data(), h2.numel());
        if (req.return_hidden) {
            r.hidden.resize(size_t(hn.numel()));
            B.read(hn, r.hidden.data(), hn.numel());
        }
        if (req.return_logits && w.has_lm_head) {
            Tensor last, logits;
            VLA_RETURN_IF_ERROR(final_norm_rows(x, n_final - 1, 1, &last));
            VLA_RETURN_IF_ERROR(B.alloc(1, tc.vocab, &logits));
            B.matmul(last, w.lm_head, nullptr, logits);
            r.logits.resize(size_t(tc.vocab));
            B.read(logits, r.logits.data(), tc.vocab);
        }
    } else {
        std::vector<int32_t> stops = req.stop_ids;
        if (tc.eos_id >= 0) stops.push_back(tc.eos_id);
        Tensor hn, logits, xt, best, pl;
        VLA_RETURN_IF_ERROR(B.alloc(1, tc.vocab, &logits));
        VLA_RETURN_IF_ERROR(B.alloc(1, tc.hidden, &xt));
        VLA_RETURN_IF_ERROR(B.alloc_i32(1, 1, &best));
        VLA_RETURN_IF_ERROR(B.alloc_i32(tc.n_layers, 1, &pl));  // every layer's decode position, one upload a step
        std::vector<int32_t> step_pos(static_cast<size_t>(tc.n_layers));
        VLA_RETURN_IF_ERROR(final_norm_rows(x, n_final - 1, 1, &hn));
        if (req.return_hidden) {
            r.hidden.resize(size_t(hn.numel()));
            B.read(hn, r.hidden.data(), hn.numel());
        }
        for (int step = 0; step < max_new; ++step) {
            B.matmul(hn, w.lm_head, nullptr, logits);
            if (step == 0 && req.return_logits) {
                r.logits.resize(size_t(tc.vocab));
                B.read(logits, r.logits.data(), tc.vocab);
            }
            // Greedy on the backend (one int comes back); ties go to the lowest id so runs are reproducible.
            B.argmax(logits, tc.vocab, best);
            int32_t next = 0;
            B.read_i32(best, &next, 1);
            if (std::find(stops.begin(), stops.end(), next) != stops.end()) {
                r.stopped = true;
                break;
            }
            r.tokens.push_back(next);
            if (step + 1 == max_new) break;
            B.get_rows(w.embed, &next, 1, xt, 0);
            // Decode position: with re-indexed positions, this layer's own cache length (layers
            // differ after pruning, as in the reference); with kept positions, the next one.
            const bool reindex = req.prune.reindex_positions && policy != PrunePolicy::fastv;
            for (int l = 0; l < tc.n_layers; ++l)
                step_pos[size_t(l)] = reindex ? int32_t(kv[size_t(l)].len) : int32_t(n + step);
            B.write_i32(pl, step_pos.data(), tc.n_layers);
            for (int l = 0; l < tc.n_layers; ++l) VLA_RETURN_IF_ERROR(decoder_layer(l, xt, B.rows(pl, l, 1), kv[size_t(l)]));
            VLA_RETURN_IF_ERROR(final_norm_rows(xt, 0, 1, &hn));
        }
        r.n_generated = int64_t(r.tokens.size());
    }
    B.synchronize();
    VLA_RETURN_IF_ERROR(B.take_error());
    r.timings.head_ms = ms_since(t_head);
    r.timings.total_ms = ms_since(t_start);
    r.peak_activation_bytes = B.peak_bytes();
    *out = std::move(r);
    return Status::OK();
}

// ---------------------------------------------------------------------------------------------

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

const ModelInfo& Engine::info() const { return impl_->info; }
int64_t Engine::activation_bytes() const { return impl_->be->allocated_bytes(); }

namespace {
Status backend_options(const EngineOptions& opts, BackendOptions* bo) {
    bo->n_threads = opts.n_threads;
    bo->device = opts.device;
    bo->pool_bytes = opts.pool_bytes;
    bo->max_activation_bytes = opts.max_activation_bytes;
    if (opts.pool_bytes < 0) return {Code::input, "pool_bytes must be >= 0"};
    if (opts.max_activation_bytes < 0) return {Code::input, "max_activation_bytes must be >= 0"};
    if (opts.weight_dtype == "auto") bo->weight_dtype = WeightDType::auto_;
    else if (opts.weight_dtype == "f16") bo->weight_dtype = WeightDType::f16;
    else if (opts.weight_dtype == "bf16") bo->weight_dtype = WeightDType::bf16;
    else return {Code::input, "unknown weight_dtype '" + opts.weight_dtype + "' (auto, f16, bf16)"};
    if (opts.device < 0) return {Code::input, "device must be >= 0, got " + std::to_string(opts.device)};
    return Status::OK();
}
}  // namespace

Status Engine::create_synthetic(const ModelConfig& config, const EngineOptions& opts, uint64_t seed, double std,
                                std::unique_ptr<Engine>* out) {
    if (!(std >= 0) || !std::isfinite(std)) return {Code::input, "synthetic weight std must be finite and >= 0"};
    auto impl = std::make_unique<Impl>();
    impl->info.config = config;
    BackendOptions bo;
    VLA_RETURN_IF_ERROR(backend_options(opts, &bo));
    VLA_RETURN_IF_ERROR(backend_create(opts.backend, bo, &impl->be));
    impl->info.backend = impl->be->name();
    VLA_RETURN_IF_ERROR(impl->bind_all(seed, std));
    out->reset(new Engine(std::move(impl)));
    return Status::OK();
}

Status Engine::load(const std::string& dir, const EngineOptions& opts, std::unique_ptr<Engine>* out) {
    auto impl = std::make_unique<Impl>();
    BackendOptions bo;
    VLA_RETURN_IF_ERROR(backend_options(opts, &bo));
    VLA_RETURN_IF_ERROR(config_load(dir + "/config.json", &impl->info.config));
    VLA_RETURN_IF_ERROR(WeightStore::open_dir(dir, &impl->store));
    VLA_RETURN_IF_ERROR(backend_create(opts.backend, bo, &impl->be));
    impl->info.backend = impl->be->name();
    Status st = impl->bind_all();
    if (!st.ok()) return {st.code(), dir + ": " + st.message()};
    if (!impl->be->borrows_weights()) impl->store.reset();  // the device holds its own copies
    out->reset(new Engine(std::move(impl)));
    return Status::OK();
}

Status Engine::infer(const InferRequest& req, InferResult* out) {
    bool expected = false;
    if (!busy_.compare_exchange_strong(expected, true))
        return {Code::busy, "the engine is running another inference"};
    Status st;
    try {
        st = impl_->run(req, out);
    } catch (const std::bad_alloc&) {
        st = {Code::oom, "out of memory during inference"};
    } catch (const std::exception& e) {
        st = {Code::internal, std::string("unexpected exception: ") + e.what()};
    }
    busy_.store(false);
    return st;
}

}  // namespace vla
