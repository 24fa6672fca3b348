#include <memory>

#include "backend.h"
#include "vla/engine.h"

namespace vla {

std::unique_ptr<Backend> backend_cpu_create(const BackendOptions& o);
#ifdef VLA_HAVE_CUDA
Status backend_cuda_create(const BackendOptions& o, std::unique_ptr<Backend>* out);
std::string backend_cuda_probe();  // "" when a device is usable
#endif

std::string backend_cuda_unavailable_reason() {
#ifdef VLA_HAVE_CUDA
    return backend_cuda_probe();
#else
    return "the CUDA backend is not built into this addon (built where nvcc and an NVIDIA driver are found; "
           "VLA_CUDA=ON npm run build builds it anyway)";
#endif
}

std::vector<std::string> backend_list() {
    std::vector<std::string> names{"cpu"};
#ifdef VLA_HAVE_CUDA
    names.push_back("cuda");
#endif
    return names;
}

Status backend_create(const std::string& name, const BackendOptions& opts, std::unique_ptr<Backend>* out) {
    if (name == "cpu") {
        *out = backend_cpu_create(opts);
        return Status::OK();
    }
    if (name == "cuda" || name == "auto") {
#ifdef VLA_HAVE_CUDA
        Status st = backend_cuda_create(opts, out);
        if (st.ok() || name == "cuda") return st;
#else
        if (name == "cuda")
            return {Code::backend, "backend 'cuda': " + backend_cuda_unavailable_reason()};
#endif
        *out = backend_cpu_create(opts);
        return Status::OK();
    }
    return {Code::backend, "unknown backend '" + name + "' (cpu, cuda, auto)"};
}

}  // namespace vla
