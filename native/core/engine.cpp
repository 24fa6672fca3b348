// The LLaVA-style VLA forward pass, written only against the Backend interface.
#include "vla/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

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
    Binder(const WeightStore& ws, Backend& be, ModelInfo& info) : ws_(ws), be_(be), info_(info) {}

    // First prefix under which `probe` exists, else the last one (errors then name it).
    std::string pick(std::initializer_list<const char*> prefixes, const std::string& probe) const {
        for (const char* p : prefixes)
            if (ws_.find(p + probe)) return p;
        return *(prefixes.end() - 1);
    }

    Status bind(const std::string& name, std::vector<int64_t> shape, Tensor* out, bool optional = false,
                bool* present = nullptr) {
        const TensorView* tv = ws_.find(name);
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
            return {Code::tensor_shape, ws_.file_of(name) + ": tensor '" + name + "' has shape " + fmt(tv->shape) +
                                            ", the config needs " + fmt(shape)};
        }
        int64_t rows = shape.empty() ? 1 : shape[0], cols = 1;
        for (size_t i = 1; i < shape.size(); ++i) cols *= shape[i];
        if (shape.size() == 1) { rows = 1; cols = shape[0]; }
        VLA_RETURN_IF_ERROR(be_.upload_weight(*tv, rows, cols, out));
        info_.n_params += tv->numel();
        info_.weight_bytes += int64_t(tv->nbytes);
        if (present) *present = true;
        return Status::OK();
    }

private:
    const WeightStore& ws_;
    Backend& be_;
    ModelInfo& info_;
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

    Status bind_all();
    Status run(const InferRequest& req, InferResult* out);

    // Runs the vision tower and projector; returns visual tokens [n_views * per_view, d].
    Status encode_views(const std::vector<ImageInput>& views, Tensor* visual, int64_t* per_view, StageTimings* t);
    // One decoder layer over x [n, d] at `positions`, appending to and attending over `kv`.
    Status decoder_layer(int l, Tensor& x, const int32_t* positions, KvCache& kv);
    Status final_norm_rows(const Tensor& x, int64_t row0, int64_t n, Tensor* out);
};

Status Engine::Impl::bind_all() {
    const auto& c = info.config;
    const auto& vc = c.vision;
    const auto& tc = c.text;
    Binder b(*store, *be, info);
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
        const std::string head_name = store->find("lm_head.weight") ? "lm_head.weight" : "language_model.lm_head.weight";
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
                                  StageTimings* t) {
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
    for (const auto& L : w.vis) {
        B.layer_norm(x, L.ln1_w, L.ln1_b, vc.ln_eps, h);
        B.matmul(h, L.q_w, &L.q_b, q);
        B.matmul(h, L.k_w, &L.k_b, k);
        B.matmul(h, L.v_w, &L.v_b, vv);
        B.attention(q, k, vv, a, ap);
        B.matmul(a, L.o_w, &L.o_b, h);
        B.add(x, h);
        B.layer_norm(x, L.ln2_w, L.ln2_b, vc.ln_eps, h);
        B.matmul(h, L.fc1_w, &L.fc1_b, f);
        B.unary(vc.act, f);
        B.matmul(f, L.fc2_w, &L.fc2_b, h);
        B.add(x, h);
    }
    // Features: drop each view's class token ("default") or keep it ("full").
    const int64_t pv = c.drop_cls ? Np : T;
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

Status Engine::Impl::decoder_layer(int l, Tensor& x, const int32_t* positions, KvCache& kv) {
    const auto& tc = info.config.text;
    const auto& L = w.txt[size_t(l)];
    Backend& B = *be;
    const int64_t n = x.rows, d = tc.hidden, qd = int64_t(tc.n_heads) * tc.head_dim,
                  kvd = int64_t(tc.n_kv_heads) * tc.head_dim;
    if (kv.len + n > kv.k.rows) return {Code::internal, "kv cache overflow at layer " + std::to_string(l)};
    Tensor h, q, k, v, a, g, u;
    VLA_RETURN_IF_ERROR(B.alloc(n, d, &h));
    VLA_RETURN_IF_ERROR(B.alloc(n, qd, &q));
    VLA_RETURN_IF_ERROR(B.alloc(n, kvd, &k));
    VLA_RETURN_IF_ERROR(B.alloc(n, kvd, &v));
    VLA_RETURN_IF_ERROR(B.alloc(n, qd, &a));
    B.rms_norm(x, L.in_norm, tc.rms_eps, h);
    B.matmul(h, L.q, nullptr, q);
    B.matmul(h, L.k, nullptr, k);
    B.matmul(h, L.v, nullptr, v);
    B.rope(q, tc.n_heads, tc.head_dim, positions, tc.rope_theta);
    B.rope(k, tc.n_kv_heads, tc.head_dim, positions, tc.rope_theta);
    B.copy_rows(k, 0, n, kv.k, kv.len);
    B.copy_rows(v, 0, n, kv.v, kv.len);
    AttentionParams ap;
    ap.n_head = tc.n_heads;
    ap.n_kv_head = tc.n_kv_heads;
    ap.head_dim = tc.head_dim;
    ap.n_kv = kv.len + n;
    ap.kv_offset = kv.len;
    ap.causal = true;
    ap.scale = 1.f / std::sqrt(float(tc.head_dim));
    B.attention(q, kv.k, kv.v, a, ap);
    kv.len += n;
    B.matmul(a, L.o, nullptr, h);
    B.add(x, h);
    B.rms_norm(x, L.post_norm, tc.rms_eps, h);
    VLA_RETURN_IF_ERROR(B.alloc(n, tc.intermediate, &g));
    VLA_RETURN_IF_ERROR(B.alloc(n, tc.intermediate, &u));
    B.matmul(h, L.gate, nullptr, g);
    B.matmul(h, L.up, nullptr, u);
    B.swiglu(g, u, g);
    B.matmul(g, L.down, nullptr, h);
    B.add(x, h);
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
    Tensor visual;
    int64_t per_view = 0;
    VLA_RETURN_IF_ERROR(encode_views(req.views, &visual, &per_view, &r.timings));

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
    {
        int64_t row = 0, view = 0;
        size_t i = 0;
        while (i < req.input_ids.size()) {
            if (req.input_ids[i] == c.image_token_id) {
                B.copy_rows(visual, view * per_view, per_view, x, row);
                row += per_view;
                ++view;
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
    }
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = int32_t(i);

    // ---- prefill: every layer keeps its own cache and length, so rows may be removed between layers
    const int64_t kvd = int64_t(tc.n_kv_heads) * tc.head_dim;
    std::vector<KvCache> kv(static_cast<size_t>(tc.n_layers));
    for (auto& c_ : kv) {
        VLA_RETURN_IF_ERROR(B.alloc(n + max_new, kvd, &c_.k));
        VLA_RETURN_IF_ERROR(B.alloc(n + max_new, kvd, &c_.v));
    }
    for (int l = 0; l < tc.n_layers; ++l) VLA_RETURN_IF_ERROR(decoder_layer(l, x, pos.data(), kv[size_t(l)]));
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
        VLA_RETURN_IF_ERROR(final_norm_rows(x, n - n_queries, n_queries, &hn));
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
            VLA_RETURN_IF_ERROR(final_norm_rows(x, n - 1, 1, &last));
            VLA_RETURN_IF_ERROR(B.alloc(1, tc.vocab, &logits));
            B.matmul(last, w.lm_head, nullptr, logits);
            r.logits.resize(size_t(tc.vocab));
            B.read(logits, r.logits.data(), tc.vocab);
        }
    } else {
        std::vector<int32_t> stops = req.stop_ids;
        if (tc.eos_id >= 0) stops.push_back(tc.eos_id);
        Tensor hn, logits, xt;
        VLA_RETURN_IF_ERROR(B.alloc(1, tc.vocab, &logits));
        VLA_RETURN_IF_ERROR(B.alloc(1, tc.hidden, &xt));
        std::vector<float> host(static_cast<size_t>(tc.vocab));
        VLA_RETURN_IF_ERROR(final_norm_rows(x, n - 1, 1, &hn));
        if (req.return_hidden) {
            r.hidden.resize(size_t(hn.numel()));
            B.read(hn, r.hidden.data(), hn.numel());
        }
        for (int step = 0; step < max_new; ++step) {
            B.matmul(hn, w.lm_head, nullptr, logits);
            B.read(logits, host.data(), tc.vocab);
            if (step == 0 && req.return_logits) r.logits = host;
            // Greedy; ties go to the lowest id so runs are reproducible.
            const int32_t next = int32_t(std::max_element(host.begin(), host.end()) - host.begin());
            if (std::find(stops.begin(), stops.end(), next) != stops.end()) {
                r.stopped = true;
                break;
            }
            r.tokens.push_back(next);
            if (step + 1 == max_new) break;
            B.get_rows(w.embed, &next, 1, xt, 0);
            for (int l = 0; l < tc.n_layers; ++l) {
                // Decode position: this layer's own cache length (equal across layers when unpruned).
                const int32_t p = int32_t(kv[size_t(l)].len);
                VLA_RETURN_IF_ERROR(decoder_layer(l, xt, &p, kv[size_t(l)]));
            }
            VLA_RETURN_IF_ERROR(final_norm_rows(xt, 0, 1, &hn));
        }
        r.n_generated = int64_t(r.tokens.size());
    }
    B.synchronize();
    r.timings.head_ms = ms_since(t_head);
    r.timings.total_ms = ms_since(t_start);
    *out = std::move(r);
    return Status::OK();
}

// ---------------------------------------------------------------------------------------------

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

const ModelInfo& Engine::info() const { return impl_->info; }

Status Engine::load(const std::string& dir, const EngineOptions& opts, std::unique_ptr<Engine>* out) {
    auto impl = std::make_unique<Impl>();
    VLA_RETURN_IF_ERROR(config_load(dir + "/config.json", &impl->info.config));
    VLA_RETURN_IF_ERROR(WeightStore::open_dir(dir, &impl->store));
    BackendOptions bo;
    bo.n_threads = opts.n_threads;
    VLA_RETURN_IF_ERROR(backend_create(opts.backend, bo, &impl->be));
    impl->info.backend = impl->be->name();
    Status st = impl->bind_all();
    if (!st.ok()) return {st.code(), dir + ": " + st.message()};
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
