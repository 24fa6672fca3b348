// The decoder's prefill with visual-token pruning: one decoder layer, the compaction of the
// sequence, and the policy-blind pruning loop that runs a policy's plan (prune/policy.h).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine-impl.h"
#include "prune/ops.h"

namespace vla {

Status Engine::Impl::decoder_layer(int l, Tensor& x, const Tensor& pos, KvCache& kv, int64_t prob_row0,
                                   int64_t n_prob_rows, Tensor* probs) {
    const auto& tc = info.config.text;
    const auto& ly = w.txt[size_t(l)];
    Backend& B = *be;
    const int64_t n = x.rows, D = tc.hidden, qd = int64_t(tc.n_heads) * tc.head_dim;
    if (kv.len + n > kv.k.rows) return {Code::internal, "kv cache overflow at layer " + std::to_string(l)};
    if (scratch.rows < n) {
        scratch = {};
        VLA_RETURN_IF_ERROR(B.alloc(n, D, &scratch.h));
        VLA_RETURN_IF_ERROR(B.alloc(n, qd, &scratch.q));
        VLA_RETURN_IF_ERROR(B.alloc(n, qd, &scratch.a));
        VLA_RETURN_IF_ERROR(B.alloc(n, tc.intermediate, &scratch.g));
        VLA_RETURN_IF_ERROR(B.alloc(n, tc.intermediate, &scratch.u));
        scratch.rows = n;
    }
    Tensor h = B.rows(scratch.h, 0, n), q = B.rows(scratch.q, 0, n), a = B.rows(scratch.a, 0, n),
           g = B.rows(scratch.g, 0, n), u = B.rows(scratch.u, 0, n);
    // Keys and values are written straight into this layer's cache rows.
    Tensor k = B.rows(kv.k, kv.len, n), v = B.rows(kv.v, kv.len, n);
    B.rms_norm(x, ly.in_norm, tc.rms_eps, h);
    B.matmul(h, ly.q, nullptr, q);
    B.matmul(h, ly.k, nullptr, k);
    B.matmul(h, ly.v, nullptr, v);
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
    B.matmul(a, ly.o, nullptr, h);
    B.add(x, h);
    B.rms_norm(x, ly.post_norm, tc.rms_eps, h);
    B.matmul(h, ly.gate, nullptr, g);
    B.matmul(h, ly.up, nullptr, u);
    B.swiglu(g, u, g);
    B.matmul(g, ly.down, nullptr, h);
    B.add(x, h);
    return Status::OK();
}

namespace {

// Keeps the non-visual rows and the visual rows flagged in `keep` (I32 [N, 1]), puts the c rows
// of `merged` [c, D] just before the tail, and rebuilds x and the row metadata (positions
// re-indexed 0..n-1, or the survivors' own). All on the backend; `kept` is the number of flagged
// rows, which the caller's schedule knows.
Status compact(Backend& B, Tensor& x, Seq& seq, const Tensor& keep, int64_t kept, const Tensor* merged, int64_t c,
               bool reindex) {
    const int64_t n_keep = seq.n - seq.n_vis + kept, a = n_keep - seq.tail, n_new = n_keep + c, D = x.cols;
    Tensor idx, nx, kind, view, pos;
    VLA_RETURN_IF_ERROR(B.alloc_i32(std::max<int64_t>(n_keep, 1), 1, &idx));
    B.prune_index(keep, seq.kind, true, seq.n, idx);
    VLA_RETURN_IF_ERROR(B.alloc(n_new, D, &nx));
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
    if (!seq.orig.empty()) {
        // merged rows' entries stay unset: kind marks them
        Tensor orig;
        VLA_RETURN_IF_ERROR(B.alloc_i32(n_new, 1, &orig));
        move(seq.orig, orig);
        seq.orig = orig;
    }
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
                             const std::vector<int64_t>& vis_rows0, std::vector<KvCache>& kv, PrunePlan* plan,
                             PruneStats* st) {
    const auto& tc = info.config.text;
    Backend& B = *be;
    // With parity, the reference's behaviour (prune_resolve); learn() must see the same options.
    const PruneOptions po = prune_resolve(req.prune);
    const int L = tc.n_layers;
    PruneShape shape;
    shape.n_layers = L;
    shape.n_visual = int(seq.n_vis);
    shape.n_other = int(seq.n - seq.n_vis);
    shape.hidden = tc.hidden;
    shape.ffn = tc.intermediate;
    st->policy = po.policy;
    st->options = po;
    st->n_visual = shape.n_visual;
    st->budget = po.budget;
    st->kept.assign(size_t(L), shape.n_visual);
    st->merged.assign(size_t(L), 0);
    st->kept_per_view.assign(size_t(L), std::vector<int>(size_t(seq.n_views), 0));

    // The policy's plan fixes every count but AutoPrune's, which learn() fills after layer 1.
    VLA_RETURN_IF_ERROR(prune_plan(po, shape, plan));
    const PrunePolicyI& policy = prune_policy(po.policy);
    st->target_tokens = plan->target_tokens;

    // Per-layer counts stay on the backend until the end: one read after the prefill.
    Tensor counts, mi;
    VLA_RETURN_IF_ERROR(B.alloc_i32(L, seq.n_views + 2, &counts));
    VLA_RETURN_IF_ERROR(B.alloc(1, 2 * int64_t(L), &mi));
    std::vector<float> mi_host(size_t(2 * L), 0.f);
    B.write(mi, mi_host.data(), 2 * int64_t(L));
    std::vector<int> expect(size_t(L), 0);  // the host's count of visual + merged rows, checked at the end
    int64_t rows0 = 1;                      // query rows of layer 0's step: MI_0 is per row

    // Pre-LLM selection: plan->pre_select tokens enter layer 0.
    if (plan->pre_select >= 0) {
        Tensor keep;
        VLA_RETURN_IF_ERROR(B.alloc_i32(seq.n, 1, &keep));
        if (plan->pre_chosen.empty()) {
            B.prune_topk(prior_rows, seq.kind, nullptr, seq.n, plan->pre_select, keep);
        } else {
            std::vector<int32_t> flags(size_t(seq.n), 0);
            for (int64_t v : plan->pre_chosen) flags[size_t(vis_rows0[size_t(v)])] = 1;
            B.write_i32(keep, flags.data(), seq.n);
        }
        VLA_RETURN_IF_ERROR(compact(B, x, seq, keep, plan->pre_select, nullptr, 0, plan->reindex));
    }

    for (int l = 0; l < L; ++l) {
        const PruneStep& step = plan->steps[size_t(l)];
        // The query rows that score this layer's visual rows: always a contiguous range.
        const int64_t n = seq.n, tail = seq.tail_start();
        int64_t r0 = 0, nr = 0;
        switch (step.rows) {
        case PruneRows::none: break;
        case PruneRows::tail: r0 = tail, nr = n - tail; break;
        case PruneRows::instruction:
            // The action queries are the last n_queries rows; a prompt of queries only scores with all.
            r0 = tail, nr = n - tail - seq.n_queries;
            if (nr <= 0) nr = n - tail;
            break;
        case PruneRows::last: r0 = n - 1, nr = 1; break;
        case PruneRows::last_instruction: r0 = std::max(tail, n - 1 - seq.n_queries), nr = 1; break;
        }
        const bool active = step.rows != PruneRows::none && seq.n_vis > 0 && nr > 0;
        if (l == 0) rows0 = std::max<int64_t>(1, nr);
        Tensor probs;
        VLA_RETURN_IF_ERROR(decoder_layer(l, x, seq.pos, kv[size_t(l)], r0, active ? nr : 0, &probs));
        auto done = [&] {
            B.prune_count(seq.kind, seq.view, seq.n, seq.n_views, counts, l);
            expect[size_t(l)] = int(seq.n_vis);
            if (!seq.orig.empty()) {
                // only on request (tests): a device-to-host read per layer
                std::vector<int32_t> kh(size_t(seq.n)), oh(size_t(seq.n));
                B.read_i32(seq.kind, kh.data(), seq.n);
                B.read_i32(seq.orig, oh.data(), seq.n);
                std::vector<int> ids;
                for (int64_t i = 0; i < seq.n; ++i)
                    if (kh[size_t(i)] != 0) ids.push_back(kh[size_t(i)] == 1 ? oh[size_t(i)] : -1);
                st->kept_index.push_back(std::move(ids));
            }
        };
        if (!active) {
            done();
            continue;
        }
        Tensor scores;
        VLA_RETURN_IF_ERROR(B.alloc(n, 1, &scores));
        B.prune_scores(probs, int64_t(tc.n_heads) * nr, seq.kind, n, scores);
        if (step.measure_mi) B.prune_mi(probs, tc.n_heads, nr, seq.kind, n, mi, l);
        if (step.prior_mix > 0) B.prune_prior_scores(scores, prior_rows, seq.kind, n, mi, l, step.prior_mix, double(nr));
        if (l == plan->learn_layer) {
            // The one device-to-host sync of the prefill: the policy learns the complexity.
            B.read(mi, mi_host.data(), 2 * int64_t(l + 1));
            VLA_RETURN_IF_ERROR(B.take_error());  // a device fault, not a schedule
            st->mi1 = mi_of(mi_host, l);
            policy.learn(po, shape, st->mi1, plan);
            st->k = plan->k;
            st->scale = plan->scale;
        }
        const int64_t K = std::max<int64_t>(0, std::min<int64_t>(step.keep, seq.n_vis));
        if (K == seq.n_vis) {
            done();
            continue;
        }
        Tensor keep, merged;
        VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &keep));
        B.prune_topk(scores, seq.kind, nullptr, n, K, keep);
        int64_t C = 0;
        if (step.recycle) {
            // Token recycling: the best-scored of the pruned merge into C tokens.
            const int64_t pruned = seq.n_vis - K, M = prune_recycle_candidates(pruned);
            C = prune_recycled_count(pruned);
            Tensor sel, sel_idx, hs;
            VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &sel));
            VLA_RETURN_IF_ERROR(B.alloc_i32(M, 1, &sel_idx));
            VLA_RETURN_IF_ERROR(B.alloc(M, x.cols, &hs));
            VLA_RETURN_IF_ERROR(B.alloc(C, x.cols, &merged));
            B.prune_topk(scores, seq.kind, &keep, n, M, sel);
            B.prune_index(sel, seq.kind, false, n, sel_idx);
            B.gather_rows_idx(x, sel_idx, M, hs);
            VLA_RETURN_IF_ERROR(B.dpc_knn_merge(hs, C, merged, plan->reference_ties));
        }
        VLA_RETURN_IF_ERROR(compact(B, x, seq, keep, K, C ? &merged : nullptr, C, plan->reindex));
        done();
    }

    // What pruning did, per layer and view: read once, after the prefill.
    std::vector<int32_t> ch(size_t(L) * size_t(seq.n_views + 2));
    B.read_i32(counts, ch.data(), int64_t(ch.size()));
    B.read(mi, mi_host.data(), 2 * int64_t(L));
    VLA_RETURN_IF_ERROR(B.take_error());  // before the counts are believed
    // MI_0 per scoring row (docs/autoprune.md, "Mutual information"), where layer 0 measured it.
    if (plan->steps[0].measure_mi) st->mi0 = mi_of(mi_host, 0) / double(rows0);
    for (int l = 0; l < L; ++l) {
        const int32_t* row = ch.data() + size_t(l) * size_t(seq.n_views + 2);
        for (int v = 0; v < seq.n_views; ++v) st->kept_per_view[size_t(l)][size_t(v)] = row[v];
        st->kept[size_t(l)] = row[seq.n_views];
        st->merged[size_t(l)] = row[seq.n_views + 1];
        if (row[seq.n_views] != expect[size_t(l)])
            return {Code::internal, "pruning at layer " + std::to_string(l) + " left " + std::to_string(row[seq.n_views]) +
                                        " visual rows, the schedule expected " + std::to_string(expect[size_t(l)])};
    }
    const PruneAccount a = prune_account(po.budget, shape, st->kept, plan->entering);
    st->flops = a.flops;
    st->flops_unpruned = a.flops_unpruned;
    st->avg_tokens = a.avg_tokens;
    st->budget_met = a.budget_met;
    return Status::OK();
}

}  // namespace vla
