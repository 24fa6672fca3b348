#include "vla/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>

namespace vla {

using json = nlohmann::json;

int ModelConfig::vision_layers_used() const {
    // hidden_states has n_layers + 1 entries (embeddings first); index -2 is layer n-2's output.
    const int n_states = vision.n_layers + 1;
    const int idx = vision_feature_layer < 0 ? n_states + vision_feature_layer : vision_feature_layer;
    return idx;  // states[idx] is the output after running idx layers
}

namespace {

struct Reader {
    const std::string& label;
    Status st;

    template <typename T>
    void num(const json& obj, const char* section, const char* key, T* out, T lo, T hi) {
        if (!st.ok() || !obj.is_object()) return;
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) return;  // default stays
        if (!it->is_number()) {
            st = {Code::config, label + ": " + section + key + " must be a number"};
            return;
        }
        double v = it->get<double>();
        if (std::is_integral<T>::value && v != std::floor(v)) {
            st = {Code::config, label + ": " + section + key + " must be an integer"};
            return;
        }
        if (!(v >= double(lo) && v <= double(hi))) {
            std::ostringstream os;
            os << label << ": " << section << key << " = " << v << " is out of range [" << lo << ", " << hi << "]";
            st = {Code::config, os.str()};
            return;
        }
        *out = T(v);
    }

    void boolean(const json& obj, const char* section, const char* key, bool* out) {
        if (!st.ok() || !obj.is_object()) return;
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) return;
        if (!it->is_boolean()) {
            st = {Code::config, label + ": " + section + key + " must be true or false"};
            return;
        }
        *out = it->get<bool>();
    }

    void str(const json& obj, const char* section, const char* key, std::string* out) {
        if (!st.ok() || !obj.is_object()) return;
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) return;
        if (!it->is_string()) {
            st = {Code::config, label + ": " + section + key + " must be a string"};
            return;
        }
        *out = it->get<std::string>();
    }

    void act(const json& obj, const char* section, const char* key, Unary* out) {
        std::string s;
        str(obj, section, key, &s);
        if (!st.ok() || s.empty()) return;
        if (s == "gelu") *out = Unary::gelu;
        else if (s == "quick_gelu") *out = Unary::quick_gelu;
        else if (s == "silu") *out = Unary::silu;
        else st = {Code::config, label + ": " + section + key + " '" + s + "' is not supported (gelu, quick_gelu, silu)"};
    }

    void fail(const std::string& msg) {
        if (st.ok()) st = {Code::config, label + ": " + msg};
    }
};

const json& section(const json& root, const char* key, Reader& r) {
    static const json empty = json::object();
    auto it = root.find(key);
    if (it == root.end() || it->is_null()) return empty;
    if (!it->is_object()) r.fail(std::string(key) + " must be an object");
    return it->is_object() ? *it : empty;
}

}  // namespace

Status config_parse(const std::string& text, const std::string& label, ModelConfig* out) {
    json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) return {Code::config, label + ": not valid JSON"};
    if (!root.is_object()) return {Code::config, label + ": top level must be a JSON object"};
    Reader r{label, Status::OK()};
    ModelConfig c;
    constexpr int kBig = 1 << 20;

    std::string model_type;
    r.str(root, "", "model_type", &model_type);
    if (r.st.ok() && !model_type.empty() && model_type != "llava")
        r.fail("model_type '" + model_type + "' is not supported (llava)");

    // image token: older "image_token_index", newer "image_token_id"
    r.num(root, "", "image_token_index", &c.image_token_id, 0, 1 << 24);
    r.num(root, "", "image_token_id", &c.image_token_id, 0, 1 << 24);
    r.num(root, "", "vision_feature_layer", &c.vision_feature_layer, -256, 256);
    std::string strategy;
    r.str(root, "", "vision_feature_select_strategy", &strategy);
    if (r.st.ok() && !strategy.empty()) {
        if (strategy == "default") c.drop_cls = true;
        else if (strategy == "full") c.drop_cls = false;
        else r.fail("vision_feature_select_strategy '" + strategy + "' is not supported (default, full)");
    }
    r.act(root, "", "projector_hidden_act", &c.projector_act);

    const json& t = section(root, "text_config", r);
    auto& tc = c.text;
    r.num(t, "text_config.", "hidden_size", &tc.hidden, 1, kBig);
    r.num(t, "text_config.", "intermediate_size", &tc.intermediate, 1, kBig);
    r.num(t, "text_config.", "num_hidden_layers", &tc.n_layers, 1, 1024);
    r.num(t, "text_config.", "num_attention_heads", &tc.n_heads, 1, 4096);
    tc.n_kv_heads = tc.n_heads;
    r.num(t, "text_config.", "num_key_value_heads", &tc.n_kv_heads, 1, 4096);
    tc.head_dim = tc.n_heads > 0 ? tc.hidden / tc.n_heads : 0;
    r.num(t, "text_config.", "head_dim", &tc.head_dim, 1, 4096);
    r.num(t, "text_config.", "vocab_size", &tc.vocab, 1, 1 << 24);
    r.num(t, "text_config.", "max_position_embeddings", &tc.max_positions, 1, 1 << 24);
    r.num(t, "text_config.", "rms_norm_eps", &tc.rms_eps, 0.f, 1.f);
    r.num(t, "text_config.", "rope_theta", &tc.rope_theta, 1.f, 1e12f);
    r.num(t, "text_config.", "bos_token_id", &tc.bos_id, -1, 1 << 24);
    r.num(t, "text_config.", "eos_token_id", &tc.eos_id, -1, 1 << 24);
    r.boolean(t, "text_config.", "tie_word_embeddings", &tc.tie_embeddings);
    std::string text_act;
    r.str(t, "text_config.", "hidden_act", &text_act);
    if (r.st.ok() && !text_act.empty() && text_act != "silu")
        r.fail("text_config.hidden_act '" + text_act + "' is not supported (silu)");
    if (t.contains("rope_scaling") && !t["rope_scaling"].is_null())
        r.fail("text_config.rope_scaling is not supported");

    const json& v = section(root, "vision_config", r);
    auto& vc = c.vision;
    r.num(v, "vision_config.", "hidden_size", &vc.hidden, 1, kBig);
    r.num(v, "vision_config.", "intermediate_size", &vc.intermediate, 1, kBig);
    r.num(v, "vision_config.", "num_hidden_layers", &vc.n_layers, 1, 1024);
    r.num(v, "vision_config.", "num_attention_heads", &vc.n_heads, 1, 4096);
    r.num(v, "vision_config.", "image_size", &vc.image_size, 1, 4096);
    r.num(v, "vision_config.", "patch_size", &vc.patch_size, 1, 4096);
    r.num(v, "vision_config.", "layer_norm_eps", &vc.ln_eps, 0.f, 1.f);
    int channels = 3;
    r.num(v, "vision_config.", "num_channels", &channels, 1, 16);
    if (r.st.ok() && channels != 3) r.fail("vision_config.num_channels must be 3");
    r.act(v, "vision_config.", "hidden_act", &vc.act);

    // The vla section (absent: plain LLaVA, one camera, text head).
    auto& va = c.vla;
    auto vit = root.find("vla");
    if (vit != root.end() && !vit->is_null()) {
        const json& a = *vit;
        if (!a.is_object()) return {Code::config, label + ": vla must be an object"};
        va.present = true;
        if (auto cams = a.find("cameras"); cams != a.end()) {
            if (!cams->is_array() || cams->empty() || cams->size() > 64) {
                r.fail("vla.cameras must be a non-empty array of at most 64 names");
            } else {
                va.cameras.clear();
                for (auto& cam : *cams) {
                    if (!cam.is_string() || cam.get<std::string>().empty()) {
                        r.fail("vla.cameras entries must be non-empty strings");
                        break;
                    }
                    for (auto& prev : va.cameras)
                        if (prev == cam.get<std::string>()) r.fail("vla.cameras has '" + prev + "' twice");
                    va.cameras.push_back(cam.get<std::string>());
                }
            }
        }
        r.boolean(a, "vla.", "camera_embedding", &va.camera_embedding);
        std::string head = "waypoints";
        r.str(a, "vla.", "action_head", &head);
        if (head == "waypoints") va.head = ActionHead::waypoints;
        else if (head == "text") va.head = ActionHead::text;
        else r.fail("vla.action_head '" + head + "' is not supported (waypoints, text)");
        r.num(a, "vla.", "num_waypoints", &va.n_waypoints, 0, 1024);
        r.num(a, "vla.", "waypoint_dim", &va.waypoint_dim, 2, 3);
        r.num(a, "vla.", "waypoint_dt_s", &va.waypoint_dt_s, 1e-3f, 60.f);
        r.num(a, "vla.", "action_mlp_hidden", &va.action_mlp_hidden, 0, kBig);
        r.num(a, "vla.", "max_new_tokens", &va.max_new_tokens, 0, 1 << 16);
        std::string pre = "pad";
        r.str(a, "vla.", "image_preprocess", &pre);
        if (pre == "pad") va.preprocess.pad = true;
        else if (pre == "crop") va.preprocess.pad = false;
        else r.fail("vla.image_preprocess '" + pre + "' is not supported (pad, crop)");
        for (const char* key : {"image_mean", "image_std"}) {
            auto it = a.find(key);
            if (it == a.end()) continue;
            float* dst = key[6] == 'm' ? va.preprocess.mean : va.preprocess.std;
            if (!it->is_array() || it->size() != 3) {
                r.fail(std::string("vla.") + key + " must be an array of 3 numbers");
                continue;
            }
            for (int i = 0; i < 3; ++i) {
                if (!(*it)[i].is_number()) { r.fail(std::string("vla.") + key + " must be an array of 3 numbers"); break; }
                // Pixels are in [0, 1]: a mean outside [-1e3, 1e3] or a std outside [1e-3, 1e3]
                // (or not finite) only turns every input into Inf/NaN.
                const double v = (*it)[i].get<double>();
                const bool is_std = key[6] == 's';
                if (!std::isfinite(v) || (is_std ? !(v >= 1e-3 && v <= 1e3) : !(v >= -1e3 && v <= 1e3))) {
                    r.fail(std::string("vla.") + key + "[" + std::to_string(i) + "] = " + std::to_string(v) + " is out of range (" +
                           (is_std ? "1e-3..1e3" : "-1e3..1e3") + ")");
                    break;
                }
                dst[i] = float(v);
            }
        }
        if (r.st.ok() && va.head == ActionHead::waypoints && (va.n_waypoints <= 0 || va.action_mlp_hidden <= 0))
            r.fail("vla.num_waypoints and vla.action_mlp_hidden must be positive for the waypoints head");
    }
    va.preprocess.size = vc.image_size;
    if (!r.st.ok()) return r.st;

    // Consistency.
    for (int i = 0; i < 3; ++i)
        if (!(va.preprocess.std[i] > 0.f)) return {Code::config, label + ": vla.image_std must be positive"};
    if (vc.hidden % vc.n_heads) return {Code::config, label + ": vision_config.hidden_size must be divisible by num_attention_heads"};
    if (vc.image_size % vc.patch_size) return {Code::config, label + ": vision_config.image_size must be a multiple of patch_size"};
    if (tc.n_heads % tc.n_kv_heads)
        return {Code::config, label + ": text_config.num_attention_heads must be a multiple of num_key_value_heads"};
    if (tc.head_dim % 2) return {Code::config, label + ": text_config.head_dim must be even (RoPE)"};
    const int used = c.vision_layers_used();
    if (used < 0 || used > vc.n_layers)
        return {Code::config, label + ": vision_feature_layer " + std::to_string(c.vision_feature_layer) + " is out of range for " +
                                  std::to_string(vc.n_layers) + " vision layers"};
    if (c.image_token_id >= tc.vocab && c.image_token_id > (1 << 24))
        return {Code::config, label + ": image_token_index out of range"};
    *out = c;
    return Status::OK();
}

Status config_load(const std::string& path, ModelConfig* out) {
    // Only a regular file of bounded size: a FIFO in its place would block the open (hence
    // O_NONBLOCK) and every read, a device would never end.
    constexpr off_t k_max_config = 16 << 20;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return {Code::io, path + ": cannot open (is this a model directory?): " + std::string(std::strerror(errno))};
    struct stat st;
    std::string text;
    Status res;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        res = {Code::io, path + ": not a regular file"};
    } else if (st.st_size > k_max_config) {
        res = {Code::config, path + ": " + std::to_string(st.st_size) + " bytes is too large for a config.json"};
    } else {
        text.resize(size_t(st.st_size));
        size_t got = 0;
        while (got < text.size()) {
            const ssize_t r = ::read(fd, &text[got], text.size() - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += size_t(r);
        }
        text.resize(got);
    }
    ::close(fd);
    if (!res.ok()) return res;
    return config_parse(text, path, out);
}

}  // namespace vla
