// Thin node-addon-api binding: argument checks, AsyncWorkers, typed arrays in and out.
// No maths here; nothing slow runs on the JS thread.
#include <napi.h>

#include <chrono>
#include <memory>

#include "vla/engine.h"
#include "vla/jpeg.h"
#include "vla/prune.h"

namespace {

Napi::Error coded_error(Napi::Env env, const vla::Status& st) {
    Napi::Error e = Napi::Error::New(env, st.message());
    e.Set("code", Napi::String::New(env, vla::code_name(st.code())));
    return e;
}

Napi::Error input_error(Napi::Env env, const std::string& msg) {
    return coded_error(env, vla::Status(vla::Code::input, msg));
}

class EngineWrap;

double get_num(Napi::Env env, const Napi::Object& o, const char* key, double dflt, double lo, double hi) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return dflt;
    if (!v.IsNumber()) throw input_error(env, std::string(key) + " must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= lo && d <= hi)) throw input_error(env, std::string(key) + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return d;
}

bool get_bool(Napi::Env env, const Napi::Object& o, const char* key, bool dflt) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return dflt;
    if (!v.IsBoolean()) throw input_error(env, std::string(key) + " must be a boolean");
    return v.As<Napi::Boolean>().Value();
}

// pdropLayers: an array of up to kPDropMaxStages integer layer indices (0-based); empty or absent:
// PDrop's default stages. Their range against the model's depth and their order are checked by
// the engine (prune_plan), which knows the depth.
std::vector<int> get_layers(Napi::Env env, const Napi::Object& o, const char* key, const std::string& what) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return {};
    const std::string name = what + key;
    if (!v.IsArray()) throw input_error(env, name + " must be an array of layer indices");
    Napi::Array a = v.As<Napi::Array>();
    if (a.Length() > uint32_t(vla::kPDropMaxStages))
        throw input_error(env, name + " must have at most " + std::to_string(vla::kPDropMaxStages) + " stage layers");
    std::vector<int> out;
    for (uint32_t i = 0; i < a.Length(); ++i) {
        Napi::Value e = a.Get(i);
        const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
        if (!e.IsNumber() || d != double(int64_t(d)) || d < 0 || d > 1023)
            throw input_error(env, name + "[" + std::to_string(i) + "] must be an integer layer index in [0, 1023]");
        out.push_back(int(d));
    }
    return out;
}

// "none, autoprune, ...": the registry's names, for error messages.
std::string policy_names() {
    std::string r;
    for (const auto& p : vla::prune_policy_list()) r += (r.empty() ? "" : ", ") + std::string(p.name);
    return r;
}

// scoreRows: 'instruction' | 'tail' | 'last' (vla::ScoreRows).
void parse_score_rows(Napi::Env env, const Napi::Object& p, const char* what, vla::ScoreRows* out) {
    Napi::Value v = p.Get("scoreRows");
    if (v.IsUndefined()) return;
    if (!v.IsString() || !vla::score_rows_parse(v.As<Napi::String>().Utf8Value(), out))
        throw input_error(env, std::string(what) + "scoreRows must be 'instruction', 'tail' or 'last'");
}

// { policy, budget: { kind: 'tokens' | 'flops', value }, x0, k0, gamma, recycle, reindexPositions,
//   scoreRows, parity, padMask, fastvLayer, pdropLayers, seed }
vla::PruneOptions parse_prune(Napi::Env env, const Napi::Value& v) {
    vla::PruneOptions o;
    if (v.IsUndefined() || v.IsNull()) return o;
    if (!v.IsObject()) throw input_error(env, "prune must be an object");
    Napi::Object p = v.As<Napi::Object>();
    Napi::Value pol = p.Get("policy");
    if (!pol.IsUndefined()) {
        if (!pol.IsString() || !vla::prune_policy_parse(pol.As<Napi::String>().Utf8Value(), &o.policy))
            throw input_error(env, "prune.policy must be one of " + policy_names());
    }
    Napi::Value b = p.Get("budget");
    if (!b.IsUndefined() && !b.IsNull()) {
        if (!b.IsObject()) throw input_error(env, "prune.budget must be an object { kind, value }");
        Napi::Object bo = b.As<Napi::Object>();
        Napi::Value kind = bo.Get("kind");
        const std::string k = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "";
        if (k == "tokens") o.budget.kind = vla::BudgetKind::tokens;
        else if (k == "flops") o.budget.kind = vla::BudgetKind::flops;
        else throw input_error(env, "prune.budget.kind must be 'tokens' or 'flops'");
        o.budget.value = get_num(env, bo, "value", 0, 1e-9, 1e12);
    }
    o.autoprune.x0 = get_num(env, p, "x0", o.autoprune.x0, -1e6, 1e6);
    o.autoprune.k0 = get_num(env, p, "k0", o.autoprune.k0, 0, 1e6);
    o.autoprune.gamma = get_num(env, p, "gamma", o.autoprune.gamma, 0, 1e6);
    o.recycle = get_bool(env, p, "recycle", o.recycle);
    o.reindex_positions = get_bool(env, p, "reindexPositions", o.reindex_positions);
    parse_score_rows(env, p, "prune.", &o.score_rows);
    o.parity = get_bool(env, p, "parity", o.parity);
    o.pad_mask = get_bool(env, p, "padMask", o.pad_mask);
    o.fastv_layer = int(get_num(env, p, "fastvLayer", o.fastv_layer, 1, 1024));
    o.pdrop_layers = get_layers(env, p, "pdropLayers", "prune.");
    o.seed = uint64_t(get_num(env, p, "seed", 0, 0, 9007199254740991.0));
    return o;
}

Napi::Array int_array(Napi::Env env, const std::vector<int>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) a.Set(uint32_t(i), v[i]);
    return a;
}

class LoadWorker final : public Napi::AsyncWorker {
public:
    LoadWorker(Napi::Env env, std::string dir, vla::EngineOptions opts)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), dir_(std::move(dir)), opts_(std::move(opts)) {}
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override { st_ = vla::Engine::load(dir_, opts_, &engine_); }
    void OnOK() override;
    void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

private:
    Napi::Promise::Deferred deferred_;
    std::string dir_;
    vla::EngineOptions opts_;
    vla::Status st_;
    std::unique_ptr<vla::Engine> engine_;
};

class InferWorker final : public Napi::AsyncWorker {
public:
    InferWorker(Napi::Env env, std::shared_ptr<vla::Engine> engine, EngineWrap* owner)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), engine_(std::move(engine)), owner_(owner) {}
    Napi::Promise promise() { return deferred_.Promise(); }
    vla::InferRequest req;
    std::vector<Napi::ObjectReference> keep;  // the wrap, alive until the inference ends
    // The views' bytes, copied at the call: a reference does not stop JS from transferring or
    // detaching an ArrayBuffer (postMessage, structuredClone with transfer), after which its
    // memory may be freed while the worker thread reads it. The buffers are the engine's, reused
    // from call to call (no page faults): ~1 ms per 6 MB frame.
    std::vector<std::vector<uint8_t>> owned;
    // JPEG views: decoded here, on the worker thread, into native buffers (no JS allocation).
    struct Jpeg {
        size_t view;
        std::string label;
    };
    std::vector<Jpeg> jpegs;
    void Execute() override {
        const auto t0 = std::chrono::steady_clock::now();
        decoded_.resize(jpegs.size());
        for (size_t k = 0; k < jpegs.size(); ++k) {
            vla::ImageInput& im = req.views[jpegs[k].view];
            int w = 0, h = 0;
            st_ = vla::jpeg_decode_rgb(im.data, im.size, jpegs[k].label, &decoded_[k], &w, &h);
            if (!st_.ok()) return;
            im = vla::ImageInput{};
            im.data = decoded_[k].data();
            im.size = decoded_[k].size();
            im.width = w;
            im.height = h;
            im.step = w * 3;
            im.format = vla::PixelFormat::rgb8;
        }
        decode_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        st_ = engine_->infer(req, &res_);
    }
    void OnOK() override;
    void OnError(const Napi::Error& e) override;

private:
    Napi::Promise::Deferred deferred_;
    std::shared_ptr<vla::Engine> engine_;  // keeps the engine alive across dispose()
    EngineWrap* owner_;
    vla::Status st_;
    vla::InferResult res_;
    std::vector<std::vector<uint8_t>> decoded_;
    double decode_ms_ = 0;
    void finish();
};

class EngineWrap final : public Napi::ObjectWrap<EngineWrap> {
public:
    static Napi::FunctionReference* ctor;

    static Napi::Object Init(Napi::Env env, Napi::Object exports) {
        Napi::Function f = DefineClass(env, "NativeEngine",
                                       {InstanceMethod("infer", &EngineWrap::Infer), InstanceMethod("info", &EngineWrap::Info),
                                        InstanceMethod("dispose", &EngineWrap::Dispose),
                                        InstanceAccessor("busy", &EngineWrap::Busy, nullptr)});
        ctor = new Napi::FunctionReference(Napi::Persistent(f));
        exports.Set("NativeEngine", f);
        return exports;
    }

    explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {}

    std::shared_ptr<vla::Engine> engine;
    bool in_flight = false;
    // Copies of the last inference's views, lent to the next one (one inference at a time).
    std::vector<std::vector<uint8_t>> view_buffers;

private:
    Napi::Value Busy(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), in_flight); }

    Napi::Value Dispose(const Napi::CallbackInfo& info) {
        engine.reset();  // a running inference holds its own reference and finishes first
        return info.Env().Undefined();
    }

    Napi::Value Info(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        if (!engine) throw coded_error(env, {vla::Code::disposed, "the engine was disposed"});
        const auto& mi = engine->info();
        const auto& c = mi.config;
        Napi::Object o = Napi::Object::New(env);
        o.Set("backend", mi.backend);
        o.Set("cpuGemm", mi.cpu_gemm);
        o.Set("nParams", double(mi.n_params));
        o.Set("weightBytes", double(mi.weight_bytes));
        o.Set("imageTokenId", c.image_token_id);
        o.Set("imageSize", c.vision.image_size);
        o.Set("patchSize", c.vision.patch_size);
        o.Set("tokensPerView", c.drop_cls ? c.vision.n_patches() : c.vision.n_patches() + 1);
        o.Set("visionLayers", c.vision.n_layers);
        o.Set("textLayers", c.text.n_layers);
        o.Set("hidden", c.text.hidden);
        o.Set("intermediate", c.text.intermediate);
        o.Set("heads", c.text.n_heads);
        o.Set("kvHeads", c.text.n_kv_heads);
        o.Set("vocabSize", c.text.vocab);
        o.Set("bosId", c.text.bos_id);
        o.Set("eosId", c.text.eos_id);
        o.Set("maxPositions", c.text.max_positions);
        o.Set("head", c.vla.head == vla::ActionHead::text ? "text" : "waypoints");
        o.Set("numWaypoints", c.vla.n_waypoints);
        o.Set("waypointDim", c.vla.waypoint_dim);
        o.Set("waypointDtS", c.vla.waypoint_dt_s);
        o.Set("maxNewTokens", c.vla.max_new_tokens);
        o.Set("hasVlaSection", c.vla.present);
        Napi::Array cams = Napi::Array::New(env, c.vla.cameras.size());
        for (size_t i = 0; i < c.vla.cameras.size(); ++i) cams.Set(uint32_t(i), c.vla.cameras[i]);
        o.Set("cameras", cams);
        return o;
    }

    Napi::Value Infer(const Napi::CallbackInfo& info);
};

Napi::FunctionReference* EngineWrap::ctor = nullptr;

void LoadWorker::OnOK() {
    Napi::Env env = Env();
    if (!st_.ok()) {
        deferred_.Reject(coded_error(env, st_).Value());
        return;
    }
    Napi::Object obj = EngineWrap::ctor->New({});
    EngineWrap::Unwrap(obj)->engine = std::shared_ptr<vla::Engine>(std::move(engine_));
    deferred_.Resolve(obj);
}

void InferWorker::finish() {
    if (!owner_) return;
    owner_->in_flight = false;
    owner_->view_buffers = std::move(owned);
}

void InferWorker::OnError(const Napi::Error& e) {
    finish();
    deferred_.Reject(e.Value());
}

void InferWorker::OnOK() {
    Napi::Env env = Env();
    finish();
    if (!st_.ok()) {
        deferred_.Reject(coded_error(env, st_).Value());
        return;
    }
    const auto& r = res_;
    Napi::Object o = Napi::Object::New(env);
    o.Set("head", r.head == vla::ActionHead::text ? "text" : "waypoints");
    auto f32 = [&](const std::vector<float>& v) {
        Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
        std::copy(v.begin(), v.end(), a.Data());
        return a;
    };
    o.Set("waypoints", f32(r.waypoints));
    o.Set("nWaypoints", r.n_waypoints);
    o.Set("waypointDim", r.waypoint_dim);
    Napi::Int32Array toks = Napi::Int32Array::New(env, r.tokens.size());
    std::copy(r.tokens.begin(), r.tokens.end(), toks.Data());
    o.Set("tokens", toks);
    o.Set("stopped", r.stopped);
    Napi::Object t = Napi::Object::New(env);
    t.Set("preprocessMs", r.timings.preprocess_ms);
    t.Set("visionMs", r.timings.vision_ms);
    t.Set("prefillMs", r.timings.prefill_ms);
    t.Set("headMs", r.timings.head_ms);
    t.Set("totalMs", r.timings.total_ms);
    t.Set("decodeMs", decode_ms_);
    o.Set("timings", t);
    o.Set("nPromptTokens", double(r.n_prompt_tokens));
    o.Set("nVisualTokens", double(r.n_visual_tokens));
    o.Set("nTextTokens", double(r.n_text_tokens));
    o.Set("nGenerated", double(r.n_generated));
    o.Set("peakActivationBytes", double(r.peak_activation_bytes));
    o.Set("prefillHostReads", double(r.prefill_host_reads));
    {
        const auto& ps = r.prune;
        Napi::Object p = Napi::Object::New(env);
        p.Set("policy", vla::prune_policy_name(ps.policy));
        p.Set("nVisual", ps.n_visual);
        p.Set("kept", int_array(env, ps.kept));
        p.Set("merged", int_array(env, ps.merged));
        Napi::Array pv = Napi::Array::New(env, ps.kept_per_view.size());
        for (size_t l = 0; l < ps.kept_per_view.size(); ++l) pv.Set(uint32_t(l), int_array(env, ps.kept_per_view[l]));
        p.Set("keptPerView", pv);
        if (!ps.kept_index.empty()) {
            Napi::Array ki = Napi::Array::New(env, ps.kept_index.size());
            for (size_t l = 0; l < ps.kept_index.size(); ++l) ki.Set(uint32_t(l), int_array(env, ps.kept_index[l]));
            p.Set("keptIndex", ki);
        }
        p.Set("mi0", ps.mi0);
        p.Set("mi1", ps.mi1);
        p.Set("k", ps.k);
        p.Set("scale", ps.scale);
        p.Set("targetTokens", ps.target_tokens);
        p.Set("avgTokens", ps.avg_tokens);
        p.Set("flops", ps.flops);
        p.Set("flopsUnpruned", ps.flops_unpruned);
        if (ps.budget.kind != vla::BudgetKind::none) {
            Napi::Object b = Napi::Object::New(env);
            b.Set("kind", ps.budget.kind == vla::BudgetKind::tokens ? "tokens" : "flops");
            b.Set("value", ps.budget.value);
            p.Set("budget", b);
        }
        p.Set("budgetMet", ps.budget_met);
        // The options the prefill ran with, parity resolved: every path's options can be checked here.
        Napi::Object po = Napi::Object::New(env);
        po.Set("x0", ps.options.autoprune.x0);
        po.Set("k0", ps.options.autoprune.k0);
        po.Set("gamma", ps.options.autoprune.gamma);
        po.Set("recycle", ps.options.recycle);
        po.Set("reindexPositions", ps.options.reindex_positions);
        po.Set("scoreRows", vla::score_rows_name(ps.options.score_rows));
        po.Set("parity", ps.options.parity);
        po.Set("fastvLayer", ps.options.fastv_layer);
        po.Set("pdropLayers", int_array(env, ps.options.pdrop_layers));
        p.Set("options", po);
        o.Set("prune", p);
    }
    if (!r.logits.empty()) o.Set("logits", f32(r.logits));
    if (!r.hidden.empty()) o.Set("hidden", f32(r.hidden));
    deferred_.Resolve(o);
}

int32_t get_int(Napi::Env env, const Napi::Object& o, const char* key, int32_t dflt, int32_t lo, int32_t hi) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return dflt;
    if (!v.IsNumber()) throw input_error(env, std::string(key) + " must be a number");
    double d = v.As<Napi::Number>().DoubleValue();
    if (d != double(int64_t(d)) || d < lo || d > hi)
        throw input_error(env, std::string(key) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return int32_t(d);
}

Napi::Value EngineWrap::Infer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine) throw coded_error(env, {vla::Code::disposed, "the engine was disposed"});
    if (in_flight) throw coded_error(env, {vla::Code::busy, "the engine is running another inference"});
    if (info.Length() < 1 || !info[0].IsObject()) throw input_error(env, "infer(request): request must be an object");
    Napi::Object rq = info[0].As<Napi::Object>();

    auto* w = new InferWorker(env, engine, this);
    w->owned = std::move(view_buffers);
    try {
        Napi::Value ids = rq.Get("inputIds");
        if (!ids.IsTypedArray() || ids.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
            throw input_error(env, "inputIds must be an Int32Array");
        Napi::Int32Array ia = ids.As<Napi::Int32Array>();
        w->req.input_ids.assign(ia.Data(), ia.Data() + ia.ElementLength());

        Napi::Value views = rq.Get("views");
        if (!views.IsArray()) throw input_error(env, "views must be an array");
        Napi::Array va = views.As<Napi::Array>();
        for (uint32_t i = 0; i < va.Length(); ++i) {
            Napi::Value vv = va.Get(i);
            const std::string where = "views[" + std::to_string(i) + "]";
            if (!vv.IsObject()) throw input_error(env, where + " must be an object");
            Napi::Object v = vv.As<Napi::Object>();
            Napi::Value data = v.Get("data");
            if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
                throw input_error(env, where + ".data must be a Uint8Array or Buffer");
            Napi::Uint8Array u8 = data.As<Napi::Uint8Array>();
            vla::ImageInput im;
            const uint8_t* bytes = u8.Data();  // null with length 0 once detached
            if (w->owned.size() <= i) w->owned.emplace_back();
            std::vector<uint8_t>& copy = w->owned[i];
            copy.assign(bytes, bytes + (bytes ? u8.ByteLength() : 0));
            im.data = copy.data();
            im.size = copy.size();
            im.width = get_int(env, v, "width", 0, 0, 1 << 20);
            im.height = get_int(env, v, "height", 0, 0, 1 << 20);
            im.step = get_int(env, v, "step", 0, 0, 1 << 30);
            Napi::Value enc = v.Get("encoding");
            const std::string es = enc.IsString() ? enc.As<Napi::String>().Utf8Value() : "";
            if (es == "jpeg" && vla::jpeg_available()) {
                Napi::Value lv = v.Get("label");
                w->jpegs.push_back({w->req.views.size(), lv.IsString() ? lv.As<Napi::String>().Utf8Value() : where});
            } else if (!vla::pixel_format_parse(es, &im.format)) {
                throw coded_error(env, {vla::Code::image, where + ".encoding must be one of rgb8, bgr8, rgba8, bgra8, mono8" + std::string(vla::jpeg_available() ? ", jpeg" : "")});
            }
            w->req.views.push_back(im);
        }
        Napi::Value head = rq.Get("head");
        if (!head.IsUndefined() && !head.IsNull()) {
            const std::string h = head.IsString() ? head.As<Napi::String>().Utf8Value() : "";
            if (h == "waypoints") w->req.head = int(vla::ActionHead::waypoints);
            else if (h == "text") w->req.head = int(vla::ActionHead::text);
            else throw input_error(env, "head must be 'waypoints' or 'text'");
        }
        w->req.max_new_tokens = get_int(env, rq, "maxNewTokens", -1, -1, 1 << 16);
        Napi::Value stops = rq.Get("stopIds");
        if (!stops.IsUndefined() && !stops.IsNull()) {
            if (!stops.IsTypedArray() || stops.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
                throw input_error(env, "stopIds must be an Int32Array");
            Napi::Int32Array sa = stops.As<Napi::Int32Array>();
            w->req.stop_ids.assign(sa.Data(), sa.Data() + sa.ElementLength());
        }
        w->req.prune = parse_prune(env, rq.Get("prune"));
        w->req.return_logits = rq.Get("returnLogits").ToBoolean();
        w->req.return_hidden = rq.Get("returnHidden").ToBoolean();
        w->req.return_kept_index = rq.Get("returnKeptIndex").ToBoolean();
    } catch (const std::bad_alloc&) {
        delete w;
        throw coded_error(env, {vla::Code::oom, "out of memory copying the request's views"});
    } catch (...) {
        delete w;
        throw;
    }
    w->keep.push_back(Napi::Persistent(Value()));  // the wrap outlives its inference
    Napi::Promise p = w->promise();
    in_flight = true;
    w->Queue();
    return p;
}

Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw input_error(env, "load(dir, options): dir must be a string");
    vla::EngineOptions opts;
    if (info.Length() > 1 && info[1].IsObject()) {
        Napi::Object o = info[1].As<Napi::Object>();
        Napi::Value b = o.Get("backend");
        if (b.IsString()) opts.backend = b.As<Napi::String>().Utf8Value();
        else if (!b.IsUndefined()) throw input_error(env, "options.backend must be a string");
        opts.n_threads = get_int(env, o, "threads", 0, 0, 1024);
        opts.device = get_int(env, o, "device", 0, 0, 1024);
        opts.pool_bytes = int64_t(get_int(env, o, "poolMiB", 0, 0, 1 << 20)) << 20;
        opts.max_activation_bytes = int64_t(get_int(env, o, "maxActivationMiB", 0, 0, 1 << 20)) << 20;
        Napi::Value wd = o.Get("weightDtype");
        if (wd.IsString()) opts.weight_dtype = wd.As<Napi::String>().Utf8Value();
        else if (!wd.IsUndefined()) throw input_error(env, "options.weightDtype must be a string");
    }
    auto* w = new LoadWorker(env, info[0].As<Napi::String>().Utf8Value(), opts);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

// schedule({ policy = 'autoprune', layers, visualTokens, budgetTokens | budgetFlops (GFLOP), mi,
// x0, k0, gamma, recycle, parity, fastvLayer, pdropLayers, hidden, ffn, prefixTokens, textTokens }): a policy's
// schedule and FLOPs without a model, by vla::prune_schedule (the prefill's own planning).
// Microseconds to milliseconds of arithmetic: synchronous.
Napi::Value Schedule(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw input_error(env, "schedule(options): options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    vla::PruneOptions po;
    po.policy = vla::PrunePolicy::autoprune;
    Napi::Value pol = o.Get("policy");
    if (!pol.IsUndefined() && (!pol.IsString() || !vla::prune_policy_parse(pol.As<Napi::String>().Utf8Value(), &po.policy)))
        throw input_error(env, "policy must be one of " + policy_names());
    vla::PruneShape shape;
    shape.n_layers = int(get_num(env, o, "layers", 32, 2, 1024));
    shape.n_visual = int(get_num(env, o, "visualTokens", 576, 1, 1 << 20));
    shape.hidden = get_num(env, o, "hidden", 4096, 1, 1 << 20);
    shape.ffn = get_num(env, o, "ffn", 11008, 1, 1 << 22);
    shape.n_other = int(get_num(env, o, "prefixTokens", 35, 0, 1 << 20)) + int(get_num(env, o, "textTokens", 40, 0, 1 << 20));
    const double mi = get_num(env, o, "mi", 0, 0, 1e9);
    po.autoprune.x0 = get_num(env, o, "x0", po.autoprune.x0, -1e6, 1e6);
    po.autoprune.k0 = get_num(env, o, "k0", po.autoprune.k0, 0, 1e6);
    po.autoprune.gamma = get_num(env, o, "gamma", po.autoprune.gamma, 0, 1e6);
    po.recycle = get_bool(env, o, "recycle", po.recycle);
    po.parity = get_bool(env, o, "parity", po.parity);
    po.fastv_layer = int(get_num(env, o, "fastvLayer", po.fastv_layer, 1, 1024));
    po.pdrop_layers = get_layers(env, o, "pdropLayers", "");
    if (!o.Get("budgetFlops").IsUndefined()) po.budget = {vla::BudgetKind::flops, get_num(env, o, "budgetFlops", 0, 1e-9, 1e12)};
    else po.budget = {vla::BudgetKind::tokens, get_num(env, o, "budgetTokens", 64, 1e-9, 1 << 20)};
    vla::PruneSchedule s;
    const vla::Status st = vla::prune_schedule(po, shape, mi, &s);
    if (!st.ok()) throw coded_error(env, st);
    Napi::Object r = Napi::Object::New(env);
    r.Set("policy", vla::prune_policy_name(s.policy));
    r.Set("prunes", s.prunes);
    r.Set("parameter", s.parameter);
    r.Set("targetTokens", s.target_tokens);
    r.Set("entering", s.entering);
    r.Set("k", s.k);
    r.Set("scale", s.scale);
    r.Set("n1", s.n1);
    r.Set("kept", int_array(env, s.kept));
    Napi::Array kf = Napi::Array::New(env, s.keep_frac.size());
    for (size_t i = 0; i < s.keep_frac.size(); ++i) kf.Set(uint32_t(i), s.keep_frac[i]);
    r.Set("keepFrac", kf);
    r.Set("avgTokens", s.avg_tokens);
    r.Set("flops", s.flops);
    r.Set("flopsUnpruned", s.flops_unpruned);
    r.Set("relFlops", s.flops / s.flops_unpruned);
    r.Set("budgetMet", s.budget_met);
    return r;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    EngineWrap::Init(env, exports);
    exports.Set("load", Napi::Function::New(env, Load));
    exports.Set("schedule", Napi::Function::New(env, Schedule));
    // The pruning policies this build has, in the registry's order: [{ name, description }].
    Napi::Array policies = Napi::Array::New(env);
    uint32_t k = 0;
    for (const auto& p : vla::prune_policy_list()) {
        Napi::Object e = Napi::Object::New(env);
        e.Set("name", p.name);
        e.Set("description", p.description);
        policies.Set(k++, e);
    }
    exports.Set("policies", policies);
    // The engine's defaults of the prune options the TypeScript side names (a test keeps them equal).
    const vla::PruneOptions d;
    Napi::Object defaults = Napi::Object::New(env);
    defaults.Set("x0", d.autoprune.x0);
    defaults.Set("k0", d.autoprune.k0);
    defaults.Set("gamma", d.autoprune.gamma);
    defaults.Set("recycle", d.recycle);
    defaults.Set("reindexPositions", d.reindex_positions);
    defaults.Set("scoreRows", vla::score_rows_name(d.score_rows));
    defaults.Set("parity", d.parity);
    defaults.Set("padMask", d.pad_mask);
    defaults.Set("fastvLayer", d.fastv_layer);
    defaults.Set("pdropLayers", int_array(env, d.pdrop_layers));
    exports.Set("pruneDefaults", defaults);
    Napi::Array names = Napi::Array::New(env);
    uint32_t i = 0;
    for (const auto& n : vla::backend_list()) names.Set(i++, n);
    exports.Set("backends", names);
    // Why "cuda" cannot be used here ("" when it can): not built, no device, no driver.
    exports.Set("cudaUnavailable", Napi::String::New(env, vla::backend_cuda_unavailable_reason()));
    // What this build can take besides raw pixels: JPEG bytes when built with libjpeg.
    Napi::Object features = Napi::Object::New(env);
    features.Set("jpeg", Napi::Boolean::New(env, vla::jpeg_available()));
    exports.Set("features", features);
    return exports;
}

}  // namespace

NODE_API_MODULE(vla_addon, Init)
