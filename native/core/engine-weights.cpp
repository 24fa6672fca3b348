// Weight binding, llama.cpp's load_arch_tensors pattern: every tensor the forward pass reads
// is found by name (llava-hf's spellings) and checked against the config's shapes here, once,
// at load; the stage files only compute.
#include <initializer_list>
#include <string>
#include <vector>

#include "engine-impl.h"

namespace vla {

namespace {

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


}  // namespace

Status Engine::Impl::bind_weights(uint64_t seed, double std) {
    const auto& c = info.config;
    const auto& vc = c.vision;
    const auto& tc = c.text;
    Binder b(store.get(), *be, info, seed, std);
    const int64_t Dv = vc.hidden, P = vc.patch_size, G = vc.n_patches(), D = tc.hidden;
    const std::string vp = b.pick({"model.vision_tower.vision_model.", "vision_tower.vision_model."},
                                  "embeddings.patch_embedding.weight");
    VLA_RETURN_IF_ERROR(b.bind(vp + "embeddings.class_embedding", {Dv}, &w.cls));
    VLA_RETURN_IF_ERROR(b.bind(vp + "embeddings.patch_embedding.weight", {Dv, 3, P, P}, &w.patch));
    VLA_RETURN_IF_ERROR(b.bind(vp + "embeddings.position_embedding.weight", {G + 1, Dv}, &w.pos));
    VLA_RETURN_IF_ERROR(b.bind(vp + "pre_layrnorm.weight", {Dv}, &w.pre_ln_w));
    VLA_RETURN_IF_ERROR(b.bind(vp + "pre_layrnorm.bias", {Dv}, &w.pre_ln_b));
    // Only the layers up to the feature layer run; the rest need not be present.
    w.vis.resize(size_t(c.vision_layers_used()));
    for (size_t l = 0; l < w.vis.size(); ++l) {
        const std::string p = vp + "encoder.layers." + std::to_string(l) + ".";
        auto& ly = w.vis[l];
        VLA_RETURN_IF_ERROR(b.bind(p + "layer_norm1.weight", {Dv}, &ly.ln1_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "layer_norm1.bias", {Dv}, &ly.ln1_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "layer_norm2.weight", {Dv}, &ly.ln2_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "layer_norm2.bias", {Dv}, &ly.ln2_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.q_proj.weight", {Dv, Dv}, &ly.q_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.q_proj.bias", {Dv}, &ly.q_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.k_proj.weight", {Dv, Dv}, &ly.k_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.k_proj.bias", {Dv}, &ly.k_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.v_proj.weight", {Dv, Dv}, &ly.v_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.v_proj.bias", {Dv}, &ly.v_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.out_proj.weight", {Dv, Dv}, &ly.o_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.out_proj.bias", {Dv}, &ly.o_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.fc1.weight", {vc.intermediate, Dv}, &ly.fc1_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.fc1.bias", {vc.intermediate}, &ly.fc1_b));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.fc2.weight", {Dv, vc.intermediate}, &ly.fc2_w));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.fc2.bias", {Dv}, &ly.fc2_b));
    }
    const std::string pp = b.pick({"model.multi_modal_projector.", "multi_modal_projector."}, "linear_1.weight");
    VLA_RETURN_IF_ERROR(b.bind(pp + "linear_1.weight", {D, Dv}, &w.proj1_w));
    VLA_RETURN_IF_ERROR(b.bind(pp + "linear_1.bias", {D}, &w.proj1_b));
    VLA_RETURN_IF_ERROR(b.bind(pp + "linear_2.weight", {D, D}, &w.proj2_w));
    VLA_RETURN_IF_ERROR(b.bind(pp + "linear_2.bias", {D}, &w.proj2_b));

    const std::string lp = b.pick({"model.language_model.", "language_model.model."}, "embed_tokens.weight");
    const int64_t qd = int64_t(tc.n_heads) * tc.head_dim, kvd = int64_t(tc.n_kv_heads) * tc.head_dim;
    VLA_RETURN_IF_ERROR(b.bind(lp + "embed_tokens.weight", {tc.vocab, D}, &w.embed));
    VLA_RETURN_IF_ERROR(b.bind(lp + "norm.weight", {D}, &w.norm));
    w.txt.resize(size_t(tc.n_layers));
    for (int l = 0; l < tc.n_layers; ++l) {
        const std::string p = lp + "layers." + std::to_string(l) + ".";
        auto& ly = w.txt[size_t(l)];
        VLA_RETURN_IF_ERROR(b.bind(p + "input_layernorm.weight", {D}, &ly.in_norm));
        VLA_RETURN_IF_ERROR(b.bind(p + "post_attention_layernorm.weight", {D}, &ly.post_norm));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.q_proj.weight", {qd, D}, &ly.q));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.k_proj.weight", {kvd, D}, &ly.k));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.v_proj.weight", {kvd, D}, &ly.v));
        VLA_RETURN_IF_ERROR(b.bind(p + "self_attn.o_proj.weight", {D, qd}, &ly.o));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.gate_proj.weight", {tc.intermediate, D}, &ly.gate));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.up_proj.weight", {tc.intermediate, D}, &ly.up));
        VLA_RETURN_IF_ERROR(b.bind(p + "mlp.down_proj.weight", {D, tc.intermediate}, &ly.down));
    }
    if (tc.tie_embeddings) {
        w.lm_head = w.embed;
        w.has_lm_head = true;
    } else {
        const bool need = c.vla.head == ActionHead::text;
        const std::string head_name = !store || store->find("lm_head.weight") ? "lm_head.weight" : "language_model.lm_head.weight";
        VLA_RETURN_IF_ERROR(b.bind(head_name, {tc.vocab, D}, &w.lm_head, !need, &w.has_lm_head));
    }

    const auto& va = c.vla;
    if (va.camera_embedding)
        VLA_RETURN_IF_ERROR(b.bind("vla.camera_embedding", {int64_t(va.cameras.size()), D}, &w.cam_emb));
    if (va.n_waypoints > 0 && va.action_mlp_hidden > 0) {
        const bool need = va.head == ActionHead::waypoints;
        const int64_t Fa = va.action_mlp_hidden;  // the head MLP's width
        VLA_RETURN_IF_ERROR(b.bind("vla.action_queries", {va.n_waypoints, D}, &w.act_q, !need, &w.has_action));
        if (w.has_action) {
            VLA_RETURN_IF_ERROR(b.bind("vla.action_head.fc1.weight", {Fa, D}, &w.act_fc1_w));
            VLA_RETURN_IF_ERROR(b.bind("vla.action_head.fc1.bias", {Fa}, &w.act_fc1_b));
            VLA_RETURN_IF_ERROR(b.bind("vla.action_head.fc2.weight", {va.waypoint_dim, Fa}, &w.act_fc2_w));
            VLA_RETURN_IF_ERROR(b.bind("vla.action_head.fc2.bias", {va.waypoint_dim}, &w.act_fc2_b));
        }
    }
    return Status::OK();
}

}  // namespace vla
