#include "vla/status.h"

namespace vla {

const char* code_name(Code c) {
    switch (c) {
        case Code::ok: return "OK";
        case Code::io: return "VLA_E_IO";
        case Code::config: return "VLA_E_CONFIG";
        case Code::weights_format: return "VLA_E_WEIGHTS_FORMAT";
        case Code::weights_truncated: return "VLA_E_WEIGHTS_TRUNCATED";
        case Code::tensor_missing: return "VLA_E_TENSOR_MISSING";
        case Code::tensor_shape: return "VLA_E_TENSOR_SHAPE";
        case Code::dtype: return "VLA_E_DTYPE";
        case Code::input: return "VLA_E_INPUT";
        case Code::image: return "VLA_E_IMAGE";
        case Code::image_decode: return "VLA_E_IMAGE_DECODE";
        case Code::busy: return "VLA_E_BUSY";
        case Code::disposed: return "VLA_E_DISPOSED";
        case Code::backend: return "VLA_E_BACKEND";
        case Code::oom: return "VLA_E_OOM";
        case Code::internal: return "VLA_E_INTERNAL";
    }
    return "VLA_E_INTERNAL";  // a value outside the enum is a bug
}

std::string Status::to_string() const {
    if (ok()) return message_.empty() ? "OK" : "OK: " + message_;
    return std::string(code_name(code_)) + ": " + message_;
}

}  // namespace vla
