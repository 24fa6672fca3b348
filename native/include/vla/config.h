// The model description, from a Hugging Face LLaVA config.json plus our `vla` section
// (docs/model-format.md). Missing fields take LlamaConfig / LLaVA-1.5 defaults.
#pragma once
#include <string>
#include <vector>

#include "vla/status.h"
#include "vla/types.h"

namespace vla {

struct VisionConfig {
    int hidden = 1024, intermediate = 4096, n_layers = 24, n_heads = 16;
    int image_size = 336, patch_size = 14;
    float ln_eps = 1e-5f;
    Unary act = Unary::quick_gelu;
    int n_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
    int head_dim() const { return hidden / n_heads; }
};

struct TextConfig {
    int hidden = 4096, intermediate = 11008, n_layers = 32, n_heads = 32, n_kv_heads = 32, head_dim = 128;
    int vocab = 32000, max_positions = 4096;
    float rms_eps = 1e-6f, rope_theta = 10000.f;
    int bos_id = 1, eos_id = 2;
    bool tie_embeddings = false;
};

enum class ActionHead { waypoints, text };

struct VlaConfig {
    std::vector<std::string> cameras{"image"};
    bool camera_embedding = false;
    ActionHead head = ActionHead::text;
    int n_waypoints = 0, waypoint_dim = 2;
    float waypoint_dt_s = 0.5f;
    int action_mlp_hidden = 0;
    PreprocessParams preprocess;
    int max_new_tokens = 64;
    bool present = false;  // the config had a vla section
};

struct ModelConfig {
    VisionConfig vision;
    TextConfig text;
    VlaConfig vla;
    int image_token_id = 32000;
    int vision_feature_layer = -2;  // index into hidden states [embeddings, layer 0 out, ...]
    bool drop_cls = true;           // vision_feature_select_strategy "default"
    Unary projector_act = Unary::gelu;
    // Number of vision encoder layers actually run (up to the feature layer).
    int vision_layers_used() const;
};

// Parses and checks consistency (heads divide widths, GQA ratio, feature layer in range, ...).
// Errors are Code::config naming the file and the key.
Status config_parse(const std::string& json_text, const std::string& label, ModelConfig* out);
Status config_load(const std::string& path, ModelConfig* out);

}  // namespace vla
