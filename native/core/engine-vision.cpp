// The vision tower (CLIP ViT, pre-LN) and the projector: every view's image to its K visual
// tokens in the decoder's width, and the CLS-attention prior the pruning policies may use.
#include <cmath>
#include <string>
#include <vector>

#include "engine-impl.h"
#include "prune/ops.h"

namespace vla {

Status Engine::Impl::encode_views(const std::vector<ImageInput>& views, Tensor* visual, int64_t* per_view,
                                  StageTimings* t, Tensor* prior, bool pad_mask) {
    const auto& c = info.config;
    const auto& vc = c.vision;
    Backend& B = *be;
    const int V = int(views.size());
    const int S = vc.image_size, P = vc.patch_size, G = vc.n_patches(), Tv = G + 1;
    const int64_t Dv = vc.hidden, rows = int64_t(V) * Tv;  // the tower's rows: every view's tokens

    auto t0 = Clock::now();
    Tensor img;
    VLA_RETURN_IF_ERROR(B.alloc(int64_t(V) * 3, int64_t(S) * S, &img));  // planar RGB per view
    for (int v = 0; v < V; ++v) {
        Status st = B.preprocess(views[size_t(v)], c.vla.preprocess, img, v);
        if (!st.ok())
            return {st.code(), "view " + std::to_string(v) + " (camera '" + c.vla.cameras[size_t(v)] + "'): " + st.message()};
    }
    B.synchronize();
    t->preprocess_ms += ms_since(t0);

    t0 = Clock::now();
    Tensor x, h, q, k, vv, a, f;
    VLA_RETURN_IF_ERROR(B.alloc(rows, Dv, &x));
    VLA_RETURN_IF_ERROR(B.alloc(rows, Dv, &h));
    VLA_RETURN_IF_ERROR(B.alloc(rows, Dv, &q));
    VLA_RETURN_IF_ERROR(B.alloc(rows, Dv, &k));
    VLA_RETURN_IF_ERROR(B.alloc(rows, Dv, &vv));
    VLA_RETURN_IF_ERROR(B.alloc(rows, Dv, &a));
    VLA_RETURN_IF_ERROR(B.alloc(rows, vc.intermediate, &f));
    B.patch_embed(img, V, S, P, w.patch, x);
    for (int v = 0; v < V; ++v) {
        const int32_t zero = 0;
        B.get_rows(w.cls, &zero, 1, x, int64_t(v) * Tv);  // class token first
        B.add_rows(x, int64_t(v) * Tv, w.pos, 0, Tv, false);
    }
    B.layer_norm(x, w.pre_ln_w, w.pre_ln_b, vc.ln_eps, x);
    AttentionParams ap;
    ap.n_head = ap.n_kv_head = vc.n_heads;
    ap.head_dim = vc.head_dim();
    ap.n_kv = rows;
    ap.causal = false;
    ap.n_batch = V;  // each view attends only within itself
    ap.scale = 1.f / std::sqrt(float(vc.head_dim()));
    const int64_t K = c.drop_cls ? G : Tv;  // tokens per view for the decoder
    for (size_t li = 0; li < w.vis.size(); ++li) {
        const auto& ly = w.vis[li];
        B.layer_norm(x, ly.ln1_w, ly.ln1_b, vc.ln_eps, h);
        B.matmul(h, ly.q_w, &ly.q_b, q);
        B.matmul(h, ly.k_w, &ly.k_b, k);
        B.matmul(h, ly.v_w, &ly.v_b, vv);
        B.attention(q, k, vv, a, ap);
        if (prior && li + 1 == w.vis.size()) {
            // The class token's attention at the feature layer: one row per view and head.
            std::vector<int32_t> cls_rows;
            for (int v = 0; v < V; ++v) cls_rows.push_back(int32_t(v * Tv));
            Tensor probs;
            VLA_RETURN_IF_ERROR(B.alloc(int64_t(vc.n_heads) * V, rows, &probs));
            B.attention_probs(q, k, cls_rows.data(), V, probs, ap);
            // Padding patches get no prior (LLaVA-1.5 letterbox); the mean over heads on the backend.
            const int grid = S / P;  // patches per side
            std::vector<int32_t> masked(size_t(V * K), 0);
            for (int v = 0; v < V; ++v) {
                if (!(pad_mask && c.vla.preprocess.pad)) break;
                const std::vector<uint8_t> mask = prune_pad_mask(views[size_t(v)].width, views[size_t(v)].height, grid);
                for (int64_t i = 0; i < K; ++i)
                    masked[size_t(v * K + i)] = c.drop_cls ? mask[size_t(i)] : (i > 0 && mask[size_t(i - 1)]);
            }
            Tensor mt;
            VLA_RETURN_IF_ERROR(B.alloc_i32(int64_t(V) * K, 1, &mt));
            B.write_i32(mt, masked.data(), int64_t(masked.size()));
            VLA_RETURN_IF_ERROR(B.alloc(int64_t(V) * K + 1, 1, prior));
            B.cls_prior(probs, vc.n_heads, V, Tv, c.drop_cls ? 1 : 0, K, mt, *prior);
            const float zero = 0.f;
            B.write(*prior, &zero, 1, int64_t(V) * K);
        }
        B.matmul(a, ly.o_w, &ly.o_b, h);
        B.add(x, h);
        B.layer_norm(x, ly.ln2_w, ly.ln2_b, vc.ln_eps, h);
        B.matmul(h, ly.fc1_w, &ly.fc1_b, f);
        B.unary(vc.act, f);
        B.matmul(f, ly.fc2_w, &ly.fc2_b, h);
        B.add(x, h);
    }
    // Features: drop each view's class token ("default") or keep it ("full").
    Tensor feats;
    VLA_RETURN_IF_ERROR(B.alloc(int64_t(V) * K, Dv, &feats));
    std::vector<int32_t> idx;
    idx.reserve(size_t(V * K));
    for (int v = 0; v < V; ++v)
        for (int64_t i = c.drop_cls ? 1 : 0; i < Tv; ++i) idx.push_back(int32_t(int64_t(v) * Tv + i));
    B.gather_rows(x, idx.data(), int64_t(idx.size()), feats);

    const int64_t D = c.text.hidden;
    Tensor p1, p2;
    VLA_RETURN_IF_ERROR(B.alloc(feats.rows, D, &p1));
    VLA_RETURN_IF_ERROR(B.alloc(feats.rows, D, &p2));
    B.matmul(feats, w.proj1_w, &w.proj1_b, p1);
    B.unary(c.projector_act, p1);
    B.matmul(p1, w.proj2_w, &w.proj2_b, p2);
    if (c.vla.camera_embedding)
        for (int v = 0; v < V; ++v) B.add_rows(p2, int64_t(v) * K, w.cam_emb, v, K, true);
    B.synchronize();
    t->vision_ms += ms_since(t0);
    *visual = p2;
    *per_view = K;
    return Status::OK();
}

}  // namespace vla
