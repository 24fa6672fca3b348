// Status: how native code reports failure. Native code never aborts on bad input; every
// failure path returns a Status with a stable code (documented in docs/errors.md).
#pragma once
#include <string>
#include <utility>

namespace vla {

enum class Code {
    ok = 0,
    io,                 // VLA_E_IO: a file could not be opened, mapped or read
    config,             // VLA_E_CONFIG: config.json missing, not JSON, or inconsistent
    weights_format,     // VLA_E_WEIGHTS_FORMAT: safetensors header malformed (bad JSON, offsets overflow/overlap)
    weights_truncated,  // VLA_E_WEIGHTS_TRUNCATED: file shorter than its header says
    tensor_missing,     // VLA_E_TENSOR_MISSING: a tensor the model needs is absent
    tensor_shape,       // VLA_E_TENSOR_SHAPE: a tensor has the wrong shape
    dtype,              // VLA_E_DTYPE: unknown or unsupported dtype
    input,              // VLA_E_INPUT: a request is malformed (ids, views, options)
    image,              // VLA_E_IMAGE: an image buffer is inconsistent (size, step, encoding)
    image_decode,       // VLA_E_IMAGE_DECODE: compressed image bytes cannot be decoded
    busy,               // VLA_E_BUSY: the engine is running another inference
    disposed,           // VLA_E_DISPOSED: the engine was disposed
    backend,            // VLA_E_BACKEND: the requested backend is not available
    oom,                // VLA_E_OOM: an allocation failed
    internal,           // VLA_E_INTERNAL: a bug; please report
};

// Stable string form, e.g. "VLA_E_TENSOR_SHAPE".
const char* code_name(Code c);

class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
    static Status OK() { return {}; }
    bool ok() const { return code_ == Code::ok; }
    Code code() const { return code_; }
    const std::string& message() const { return message_; }
    // "VLA_E_X: message"
    std::string to_string() const;

private:
    Code code_ = Code::ok;
    std::string message_;
};

#define VLA_RETURN_IF_ERROR(expr)                   \
    do {                                            \
        ::vla::Status _st = (expr);                 \
        if (!_st.ok()) return _st;                  \
    } while (0)

}  // namespace vla
