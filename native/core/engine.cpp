// The engine's public API and one inference as its stages: validate, encode the views,
// assemble the sequence, prefill (with pruning), then the waypoint head or text decoding.
// Shape letters: engine-impl.h.
#include "vla/engine.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine-impl.h"

namespace vla {

Status Engine::Impl::run(const InferRequest& req, InferResult* out) {
    const auto t_start = Clock::now();
    Backend& B = *be;
    InferResult r;
    RequestPlan rp;
    VLA_RETURN_IF_ERROR(validate(req, &rp));

    // ---- vision
    const int64_t reads0 = B.host_reads();
    B.reset_peak();
    const bool need_prior = prune_policy(req.prune.policy).needs_prior();
    Tensor visual, prior;  // held to the end: the sequence and the prior rows read them
    int64_t per_view = 0;
    VLA_RETURN_IF_ERROR(B.take_error());  // nothing left over from a failed inference
    VLA_RETURN_IF_ERROR(encode_views(req.views, &visual, &per_view, &r.timings, need_prior ? &prior : nullptr, req.prune.pad_mask));
    VLA_RETURN_IF_ERROR(B.take_error());
    if (per_view != rp.per_view)
        return {Code::internal, "the vision tower gave " + std::to_string(per_view) + " tokens per view, expected " +
                                    std::to_string(rp.per_view)};

    // ---- assemble the prefill sequence
    const auto t_prefill = Clock::now();
    Tensor x, prior_rows;
    Seq seq;
    std::vector<int64_t> vis_rows0;  // the visual rows before any pruning, in order
    VLA_RETURN_IF_ERROR(assemble(req, rp, visual, need_prior ? &prior : nullptr, &x, &seq, &vis_rows0, &prior_rows));

    // ---- prefill: every layer keeps its own cache and length, so rows may be removed between layers
    const auto& tc = info.config.text;
    const int64_t kvd = int64_t(tc.n_kv_heads) * tc.head_dim;
    std::vector<KvCache> kv(static_cast<size_t>(tc.n_layers));
    for (auto& c : kv) {
        VLA_RETURN_IF_ERROR(B.alloc(rp.n + rp.max_new, kvd, &c.k));
        VLA_RETURN_IF_ERROR(B.alloc(rp.n + rp.max_new, kvd, &c.v));
    }
    PrunePlan plan;
    VLA_RETURN_IF_ERROR(prefill(req, x, seq, prior_rows, vis_rows0, kv, &plan, &r.prune));
    VLA_RETURN_IF_ERROR(B.take_error());
    r.prefill_host_reads = B.host_reads() - reads0;
    B.synchronize();
    r.timings.prefill_ms = ms_since(t_prefill);

    // ---- the head
    const auto t_head = Clock::now();
    r.head = rp.head;
    r.n_prompt_tokens = rp.n;
    r.n_visual_tokens = rp.n_images * rp.per_view;
    r.n_text_tokens = rp.n_text;
    if (rp.head == ActionHead::waypoints) VLA_RETURN_IF_ERROR(waypoint_head(req, x, &r));
    else VLA_RETURN_IF_ERROR(text_decode(req, rp, x, plan, kv, &r));
    B.synchronize();
    VLA_RETURN_IF_ERROR(B.take_error());
    r.timings.head_ms = ms_since(t_head);
    r.timings.total_ms = ms_since(t_start);
    r.peak_activation_bytes = B.peak_bytes();
    *out = std::move(r);
    return Status::OK();
}

Status Engine::Impl::validate(const InferRequest& req, RequestPlan* rp) const {
    const auto& c = info.config;
    const auto& tc = c.text;
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
    for (int32_t s : req.stop_ids)
        if (s < 0 || s >= tc.vocab) return {Code::input, "stop id " + std::to_string(s) + " is outside the vocabulary"};
    rp->head = head;
    rp->max_new = head == ActionHead::text ? (req.max_new_tokens >= 0 ? req.max_new_tokens : c.vla.max_new_tokens) : 0;
    rp->n_images = n_img_tokens;
    rp->per_view = c.drop_cls ? c.vision.n_patches() : c.vision.n_patches() + 1;
    rp->n_queries = head == ActionHead::waypoints ? c.vla.n_waypoints : 0;
    rp->n_text = int64_t(req.input_ids.size()) - n_img_tokens;
    rp->n = rp->n_text + n_img_tokens * rp->per_view + rp->n_queries;
    if (rp->n + rp->max_new > tc.max_positions)
        return {Code::input, "sequence of " + std::to_string(rp->n + rp->max_new) + " tokens exceeds max_position_embeddings " +
                                 std::to_string(tc.max_positions)};
    return Status::OK();
}

Status Engine::Impl::assemble(const InferRequest& req, const RequestPlan& rp, const Tensor& visual, const Tensor* prior,
                              Tensor* xo, Seq* so, std::vector<int64_t>* vis_rows0, Tensor* prior_rows) {
    const auto& c = info.config;
    Backend& B = *be;
    const int64_t n = rp.n, per_view = rp.per_view, n_queries = rp.n_queries;
    Tensor& x = *xo;
    Seq& seq = *so;
    VLA_RETURN_IF_ERROR(B.alloc(n, c.text.hidden, &x));
    seq.n = n;
    seq.n_vis = rp.n_images * per_view;
    seq.n_queries = n_queries;
    seq.n_views = int(req.views.size());
    std::vector<int32_t> kind(size_t(n), 0), view(size_t(n), -1), pos(static_cast<size_t>(n)), prior_idx(size_t(n), int32_t(seq.n_vis));
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
                    vis_rows0->push_back(row + j);
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
    if (req.return_kept_index) {
        std::vector<int32_t> orig(size_t(n), -1);
        for (int64_t i = 0; i < n; ++i)
            if (kind[size_t(i)] == 1) orig[size_t(i)] = prior_idx[size_t(i)];
        VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &seq.orig));
        B.write_i32(seq.orig, orig.data(), n);
    }
    // The CLS prior of each row (0 for non-visual rows: they read the trailing zero).
    if (prior) {
        Tensor pidx;
        VLA_RETURN_IF_ERROR(B.alloc_i32(n, 1, &pidx));
        VLA_RETURN_IF_ERROR(B.alloc(n, 1, prior_rows));
        B.write_i32(pidx, prior_idx.data(), n);
        B.gather_rows_idx(*prior, pidx, n, *prior_rows);
    }
    return Status::OK();
}

Status Engine::Impl::waypoint_head(const InferRequest& req, const Tensor& x, InferResult* r) {
    const auto& tc = info.config.text;
    const auto& va = info.config.vla;
    Backend& B = *be;
    const int64_t n_final = x.rows, Q = va.n_waypoints;  // rows after the last layer (pruning may have removed some)
    Tensor hn, h1, h2;
    VLA_RETURN_IF_ERROR(final_norm_rows(x, n_final - Q, Q, &hn));
    VLA_RETURN_IF_ERROR(B.alloc(Q, va.action_mlp_hidden, &h1));
    VLA_RETURN_IF_ERROR(B.alloc(Q, va.waypoint_dim, &h2));
    B.matmul(hn, w.act_fc1_w, &w.act_fc1_b, h1);
    B.unary(Unary::gelu, h1);
    B.matmul(h1, w.act_fc2_w, &w.act_fc2_b, h2);
    r->n_waypoints = int(Q);
    r->waypoint_dim = va.waypoint_dim;
    r->waypoints.resize(size_t(Q * va.waypoint_dim));
    B.read(h2, r->waypoints.data(), h2.numel());
    if (req.return_hidden) {
        r->hidden.resize(size_t(hn.numel()));
        B.read(hn, r->hidden.data(), hn.numel());
    }
    if (req.return_logits && w.has_lm_head) {
        Tensor last, logits;
        VLA_RETURN_IF_ERROR(final_norm_rows(x, n_final - 1, 1, &last));
        VLA_RETURN_IF_ERROR(B.alloc(1, tc.vocab, &logits));
        B.matmul(last, w.lm_head, nullptr, logits);
        r->logits.resize(size_t(tc.vocab));
        B.read(logits, r->logits.data(), tc.vocab);
    }
    return Status::OK();
}

Status Engine::Impl::text_decode(const InferRequest& req, const RequestPlan& rp, const Tensor& x, const PrunePlan& plan,
                                 std::vector<KvCache>& kv, InferResult* r) {
    const auto& tc = info.config.text;
    Backend& B = *be;
    std::vector<int32_t> stops = req.stop_ids;
    if (tc.eos_id >= 0) stops.push_back(tc.eos_id);
    Tensor hn, logits, xt, best, pl;
    VLA_RETURN_IF_ERROR(B.alloc(1, tc.vocab, &logits));
    VLA_RETURN_IF_ERROR(B.alloc(1, tc.hidden, &xt));
    VLA_RETURN_IF_ERROR(B.alloc_i32(1, 1, &best));
    VLA_RETURN_IF_ERROR(B.alloc_i32(tc.n_layers, 1, &pl));  // every layer's decode position, one upload a step
    std::vector<int32_t> step_pos(static_cast<size_t>(tc.n_layers));
    VLA_RETURN_IF_ERROR(final_norm_rows(x, x.rows - 1, 1, &hn));
    if (req.return_hidden) {
        r->hidden.resize(size_t(hn.numel()));
        B.read(hn, r->hidden.data(), hn.numel());
    }
    for (int step = 0; step < rp.max_new; ++step) {
        B.matmul(hn, w.lm_head, nullptr, logits);
        if (step == 0 && req.return_logits) {
            r->logits.resize(size_t(tc.vocab));
            B.read(logits, r->logits.data(), tc.vocab);
        }
        // Greedy on the backend (one int comes back); ties go to the lowest id so runs are reproducible.
        B.argmax(logits, tc.vocab, best);
        int32_t next = 0;
        B.read_i32(best, &next, 1);
        if (std::find(stops.begin(), stops.end(), next) != stops.end()) {
            r->stopped = true;
            break;
        }
        r->tokens.push_back(next);
        if (step + 1 == rp.max_new) break;
        B.get_rows(w.embed, &next, 1, xt, 0);
        // Decode position: with re-indexed positions, this layer's own cache length (layers
        // differ after pruning, as in the reference); with kept positions, the next one.
        for (int l = 0; l < tc.n_layers; ++l)
            step_pos[size_t(l)] = plan.reindex ? int32_t(kv[size_t(l)].len) : int32_t(rp.n + step);
        B.write_i32(pl, step_pos.data(), tc.n_layers);
        for (int l = 0; l < tc.n_layers; ++l) VLA_RETURN_IF_ERROR(decoder_layer(l, xt, B.rows(pl, l, 1), kv[size_t(l)]));
        VLA_RETURN_IF_ERROR(final_norm_rows(xt, 0, 1, &hn));
    }
    r->n_generated = int64_t(r->tokens.size());
    return Status::OK();
}

Status Engine::Impl::final_norm_rows(const Tensor& x, int64_t row0, int64_t n, Tensor* out) {
    VLA_RETURN_IF_ERROR(be->alloc(n, x.cols, out));
    be->rms_norm(be->rows(x, row0, n), w.norm, info.config.text.rms_eps, *out);
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
    impl->info.cpu_gemm = gemm_provider();
    VLA_RETURN_IF_ERROR(impl->bind_weights(seed, std));
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
    impl->info.cpu_gemm = gemm_provider();
    Status st = impl->bind_weights();
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
