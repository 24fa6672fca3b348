#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <new>
#include <nlohmann/json.hpp>
#include <system_error>

namespace vla {

namespace {

using json = nlohmann::json;

constexpr uint64_t k_max_header = 100000000;  // 100 MB, the reference implementation's limit
constexpr uint64_t k_max_dim = uint64_t(1) << 53;
constexpr uint64_t k_max_index = 100000000;

// Names come from the file: bound their length in messages.
std::string q(const std::string& s) {
    if (s.size() <= 200) return "'" + s + "'";
    return "'" + s.substr(0, 200) + "...'";
}

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

Status format_error(const std::string& label, const std::string& msg) {
    return Status(Code::weights_format, label + ": " + msg);
}

// Converts escaping exceptions (allocation failure, a library throw we did not foresee).
template <typename F>
Status guarded(const std::string& label, F&& f) {
    try {
        return f();
    } catch (const std::bad_alloc&) {
        return Status(Code::oom, label + ": out of memory while reading the weights");
    } catch (const std::exception& e) {
        return format_error(label, std::string("unexpected error: ") + e.what());
    } catch (...) {
        return format_error(label, "unexpected error");
    }
}

bool supported_dtype(const std::string& s, DType* t) {
    if (s == "F32") *t = DType::f32;
    else if (s == "F16") *t = DType::f16;
    else if (s == "BF16") *t = DType::bf16;
    else return false;
    return true;
}

bool known_dtype(const std::string& s) {
    static const char* const names[] = {"BOOL",    "U8",      "I8",      "I16",      "U16",      "I32",
                                        "U32",     "I64",     "U64",     "F64",      "F8_E4M3",  "F8_E5M2",
                                        "F8_E8M0", "F4",      "F6_E2M3", "F6_E3M2",  "C64",      "C128"};
    for (const char* n : names)
        if (s == n) return true;
    return false;
}

// A non-negative JSON integer (floats, negatives, booleans and strings are not).
bool as_u64(const json& v, uint64_t* out) {
    if (v.is_number_unsigned()) {
        *out = v.get<uint64_t>();
        return true;
    }
    if (v.is_number_integer()) {
        const int64_t i = v.get<int64_t>();
        if (i < 0) return false;
        *out = static_cast<uint64_t>(i);
        return true;
    }
    return false;
}

struct Range {
    uint64_t begin, end;
    TensorView* view;
};

std::string join_path(const std::string& dir, const std::string& name) {
    if (dir.empty()) return name;
    return dir.back() == '/' ? dir + name : dir + "/" + name;
}

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

struct Mapping {
    void* p = nullptr;
    size_t n = 0;
    ~Mapping() {
        if (p) ::munmap(p, n);
    }
};

// Opens a regular file read-only; Code::io naming it otherwise. O_NONBLOCK: a FIFO in the
// file's place opens at once (and fstat refuses it) instead of blocking the open until a writer
// comes; it changes nothing for regular files.
Status open_regular(const std::string& path, Fd* f, struct stat* st) {
    f->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (f->fd < 0) return Status(Code::io, path + ": cannot open: " + errno_text(errno));
    if (::fstat(f->fd, st) != 0) return Status(Code::io, path + ": cannot stat: " + errno_text(errno));
    if (!S_ISREG(st->st_mode)) return Status(Code::io, path + ": not a regular file");
    return Status::OK();
}

Status read_small_file(const std::string& path, uint64_t limit, std::string* out) {
    Fd f;
    struct stat st;
    VLA_RETURN_IF_ERROR(open_regular(path, &f, &st));
    if (static_cast<uint64_t>(st.st_size) > limit)
        return format_error(path, "file is " + std::to_string(st.st_size) + " bytes, over the " +
                                      std::to_string(limit) + "-byte limit");
    out->resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < out->size()) {
        const ssize_t r = ::read(f.fd, &(*out)[got], out->size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return Status(Code::io, path + ": read failed: " + errno_text(errno));
        if (r == 0) break;  // shrank under us
        got += static_cast<size_t>(r);
    }
    out->resize(got);
    return Status::OK();
}

}  // namespace

size_t dtype_size(DType t) {
    switch (t) {
        case DType::f32: return 4;
        case DType::f16: return 2;
        case DType::bf16: return 2;
        case DType::i32: return 4;
    }
    return 0;
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "F32";
        case DType::f16: return "F16";
        case DType::bf16: return "BF16";
        case DType::i32: return "I32";
    }
    return "?";
}

int64_t TensorView::numel() const {
    // Views from a file always fit (numel * dtype size == nbytes); a zero dimension wins over
    // huge ones, and a hand-made view that overflows saturates instead of wrapping.
    for (int64_t d : shape)
        if (d == 0) return 0;
    int64_t n = 1;
    for (int64_t d : shape)
        if (__builtin_mul_overflow(n, d, &n)) return INT64_MAX;
    return n;
}

SafetensorsFile::~SafetensorsFile() {
    if (map_) ::munmap(map_, map_size_);
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

Status SafetensorsFile::parse(const uint8_t* bytes, size_t size, const std::string& label,
                              std::unique_ptr<SafetensorsFile>* out) {
    out->reset();
    return guarded(label, [&]() -> Status {
        if (size < 8)
            return format_error(label, "file is " + std::to_string(size) +
                                           " bytes, too short for the 8-byte header length");
        uint64_t n = 0;
        for (int i = 0; i < 8; ++i) n |= uint64_t(bytes[i]) << (8 * i);
        if (n > size - 8)
            return format_error(label, "header length " + std::to_string(n) + " exceeds the file (" +
                                           std::to_string(size) + " bytes)");
        if (n > k_max_header)
            return format_error(label, "header length " + std::to_string(n) + " exceeds the " +
                                           std::to_string(k_max_header) + "-byte limit");
        const char* h = reinterpret_cast<const char*>(bytes) + 8;
        json doc = json::parse(h, h + n, nullptr, /*allow_exceptions=*/false);
        if (doc.is_discarded()) return format_error(label, "header is not valid JSON");
        if (!doc.is_object()) return format_error(label, "header is not a JSON object");

        const uint8_t* data = bytes + 8 + n;
        const uint64_t data_size = size - 8 - n;
        std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
        f->path_ = label;
        std::vector<Range> ranges;
        ranges.reserve(doc.size());

        for (auto it = doc.begin(); it != doc.end(); ++it) {
            const std::string& name = it.key();
            const json& e = it.value();
            if (name == "__metadata__") {
                if (!e.is_object()) return format_error(label, "__metadata__ is not an object");
                for (auto m = e.begin(); m != e.end(); ++m) {
                    if (!m->is_string())
                        return format_error(label, "__metadata__ value " + q(m.key()) + " is not a string");
                    f->metadata_[m.key()] = m->get_ref<const std::string&>();
                }
                continue;
            }
            const std::string t = "tensor " + q(name) + ": ";
            if (!e.is_object()) return format_error(label, t + "entry is not an object");

            auto dt = e.find("dtype");
            if (dt == e.end() || !dt->is_string()) return format_error(label, t + "dtype is missing or not a string");
            const std::string& dts = dt->get_ref<const std::string&>();
            DType dtype;
            if (!supported_dtype(dts, &dtype)) {
                if (known_dtype(dts))
                    return Status(Code::dtype, label + ": " + t + "dtype " + q(dts) + " is not supported (F32, F16, BF16)");
                return Status(Code::dtype, label + ": " + t + "unknown dtype " + q(dts) + " (supported: F32, F16, BF16)");
            }

            auto sh = e.find("shape");
            if (sh == e.end() || !sh->is_array()) return format_error(label, t + "shape is missing or not an array");
            std::vector<int64_t> shape;
            shape.reserve(sh->size());
            uint64_t bytes_needed = dtype_size(dtype);
            bool overflow = false;
            for (size_t i = 0; i < sh->size(); ++i) {
                uint64_t d = 0;
                if (!as_u64((*sh)[i], &d) || d > k_max_dim)
                    return format_error(label, t + "shape[" + std::to_string(i) +
                                                   "] is not an integer in [0, 2^53]");
                shape.push_back(static_cast<int64_t>(d));
                overflow |= __builtin_mul_overflow(bytes_needed, d, &bytes_needed);
            }
            // A zero dimension makes the size 0 whatever overflowed before it.
            if (std::find(shape.begin(), shape.end(), 0) != shape.end()) bytes_needed = 0, overflow = false;
            if (overflow) return format_error(label, t + "shape size overflows");

            auto off = e.find("data_offsets");
            uint64_t begin = 0, end = 0;
            if (off == e.end() || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], &begin) ||
                !as_u64((*off)[1], &end))
                return format_error(label, t + "data_offsets is not an array of 2 non-negative integers");
            if (begin > end)
                return format_error(label, t + "data_offsets [" + std::to_string(begin) + ", " +
                                               std::to_string(end) + "] are reversed");
            if (end - begin != bytes_needed)
                return format_error(label, t + "data_offsets span " + std::to_string(end - begin) +
                                               " bytes but the shape and dtype need " +
                                               std::to_string(bytes_needed));

            TensorView& v = f->tensors_[name];
            v.name = name;
            v.dtype = dtype;
            v.shape = std::move(shape);
            v.nbytes = static_cast<size_t>(bytes_needed);
            ranges.push_back({begin, end, &v});
        }

        // Overlap: sort by begin; empty ranges occupy nothing.
        std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
            return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
        });
        const Range* last = nullptr;  // the non-empty range reaching furthest so far
        for (const Range& r : ranges) {
            if (r.begin == r.end) continue;
            if (last && r.begin < last->end)
                return format_error(label, "tensors " + q(last->view->name) + " [" + std::to_string(last->begin) +
                                               ", " + std::to_string(last->end) + ") and " + q(r.view->name) +
                                               " [" + std::to_string(r.begin) + ", " + std::to_string(r.end) +
                                               ") overlap");
            if (!last || r.end > last->end) last = &r;
        }

        const Range* far = nullptr;
        for (const Range& r : ranges)
            if (!far || r.end > far->end) far = &r;
        if (far && far->end > data_size) {
            uint64_t expected = 0;
            const bool wraps = __builtin_add_overflow(8 + n, far->end, &expected);
            return Status(Code::weights_truncated,
                          label + ": tensor " + q(far->view->name) + " ends at byte " + std::to_string(far->end) +
                              " of the data section, which holds only " + std::to_string(data_size) +
                              " bytes: the file is truncated (expected " +
                              (wraps ? std::string("more than 2^64") : std::to_string(expected)) +
                              " bytes, present " + std::to_string(size) + ")");
        }
        for (const Range& r : ranges) r.view->data = data + r.begin;

        *out = std::move(f);
        return Status::OK();
    });
}

Status SafetensorsFile::open(const std::string& path, std::unique_ptr<SafetensorsFile>* out) {
    out->reset();
    return guarded(path, [&]() -> Status {
        Fd f;
        struct stat st;
        VLA_RETURN_IF_ERROR(open_regular(path, &f, &st));
        const size_t size = static_cast<size_t>(st.st_size);
        if (size == 0) {  // mmap refuses length 0; parse() words the error
            static const uint8_t none = 0;
            return parse(&none, 0, path, out);
        }
        // The file is read into anonymous memory, not mapped: pages of a file mapping vanish
        // when someone truncates or rewrites the file in place (cp over it), and the next read of
        // a weight would then kill the process with SIGBUS. No check before each inference can
        // close that race; owning the bytes does. Memory is the same (an inference touches every
        // weight page); lost are page-cache sharing between processes and lazy loading.
        Mapping m;
        m.p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m.p == MAP_FAILED) {
            m.p = nullptr;
            return Status(Code::oom, path + ": cannot allocate " + std::to_string(size) + " bytes for the weights: " + errno_text(errno));
        }
        m.n = size;
        size_t got = 0;
        uint8_t* dst = static_cast<uint8_t*>(m.p);
        while (got < size) {
            const ssize_t r = ::pread(f.fd, dst + got, std::min<size_t>(size - got, size_t(1) << 30), off_t(got));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return Status(Code::io, path + ": read failed at byte " + std::to_string(got) + ": " + errno_text(errno));
            if (r == 0) break;  // shrank while read: parse() reports what is missing
            got += size_t(r);
        }
        ::mprotect(m.p, size, PROT_READ);  // weights are read-only from here
        std::unique_ptr<SafetensorsFile> sf;
        VLA_RETURN_IF_ERROR(parse(static_cast<const uint8_t*>(m.p), got, path, &sf));
        sf->map_ = m.p;
        sf->map_size_ = size;
        m.p = nullptr;
        *out = std::move(sf);
        return Status::OK();
    });
}

Status WeightStore::open_dir(const std::string& dir, std::unique_ptr<WeightStore>* out) {
    out->reset();
    return guarded(dir, [&]() -> Status {
        struct stat st;
        if (::stat(dir.c_str(), &st) != 0) return Status(Code::io, dir + ": cannot open model directory: " + errno_text(errno));
        if (!S_ISDIR(st.st_mode)) return Status(Code::io, dir + ": not a directory");

        std::unique_ptr<WeightStore> ws(new WeightStore());
        const std::string index_path = join_path(dir, "model.safetensors.index.json");
        if (::stat(index_path.c_str(), &st) != 0) {
            if (errno != ENOENT) return Status(Code::io, index_path + ": cannot stat: " + errno_text(errno));
            const std::string single = join_path(dir, "model.safetensors");
            if (::stat(single.c_str(), &st) != 0 && errno == ENOENT)
                return Status(Code::io, dir + ": neither model.safetensors nor model.safetensors.index.json exists");
            std::unique_ptr<SafetensorsFile> f;
            VLA_RETURN_IF_ERROR(SafetensorsFile::open(single, &f));
            for (const auto& kv : f->tensors()) ws->index_[kv.first] = {&kv.second, 0};
            ws->files_.push_back(std::move(f));
            *out = std::move(ws);
            return Status::OK();
        }

        std::string text;
        VLA_RETURN_IF_ERROR(read_small_file(index_path, k_max_index, &text));
        json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
        if (doc.is_discarded()) return format_error(index_path, "not valid JSON");
        if (!doc.is_object()) return format_error(index_path, "not a JSON object");
        auto wm = doc.find("weight_map");
        if (wm == doc.end()) return format_error(index_path, "weight_map is missing");
        if (!wm->is_object()) return format_error(index_path, "weight_map is not an object");

        std::map<std::string, size_t> shard_ids;  // shard file name -> files_ index
        for (auto it = wm->begin(); it != wm->end(); ++it) {
            if (!it->is_string())
                return format_error(index_path, "weight_map[" + q(it.key()) + "] is not a string");
            const std::string& s = it->get_ref<const std::string&>();
            // Shards live in the model directory: no absolute paths, no climbing out of it.
            if (s.empty() || s.front() == '/' || s.find('\0') != std::string::npos || s == ".." ||
                s.compare(0, 3, "../") == 0 || s.find("/../") != std::string::npos ||
                (s.size() >= 3 && s.compare(s.size() - 3, 3, "/..") == 0))
                return format_error(index_path, "weight_map[" + q(it.key()) + "] names an invalid shard " + q(s));
            shard_ids.emplace(s, 0);
        }
        for (auto& kv : shard_ids) {
            std::unique_ptr<SafetensorsFile> f;
            Status s = SafetensorsFile::open(join_path(dir, kv.first), &f);
            if (!s.ok()) {
                if (s.code() == Code::io) return Status(Code::io, s.message() + " (a shard named in " + index_path + ")");
                return s;
            }
            kv.second = ws->files_.size();
            ws->files_.push_back(std::move(f));
        }
        for (auto it = wm->begin(); it != wm->end(); ++it) {
            const size_t id = shard_ids.at(it->get_ref<const std::string&>());
            const TensorView* v = ws->files_[id]->find(it.key());
            if (!v)
                return Status(Code::tensor_missing, index_path + ": tensor " + q(it.key()) + " is mapped to " +
                                                        ws->files_[id]->path() + ", which does not contain it");
            ws->index_[it.key()] = {v, id};
        }
        *out = std::move(ws);
        return Status::OK();
    });
}

Status tensor_check_finite(const TensorView& t, const std::string& file) {
    // Exponent bits all set: Inf or NaN. Integer views of the bytes (alignment-safe via memcpy).
    const size_t n = size_t(t.numel());
    auto scan = [&](auto word, auto mask) -> int64_t {
        using W = decltype(word);
        for (size_t i = 0; i < n; ++i) {
            W w;
            std::memcpy(&w, t.data + i * sizeof(W), sizeof(W));
            if ((w & mask) == mask) return int64_t(i);
        }
        return -1;
    };
    int64_t bad = -1;
    switch (t.dtype) {
        case DType::f32: bad = scan(uint32_t(0), uint32_t(0x7f800000u)); break;
        case DType::f16: bad = scan(uint16_t(0), uint16_t(0x7c00u)); break;
        case DType::bf16: bad = scan(uint16_t(0), uint16_t(0x7f80u)); break;
        case DType::i32: break;
    }
    if (bad < 0) return Status::OK();
    return Status(Code::weights_format, file + ": tensor " + q(t.name) + " holds a NaN or Inf at element " + std::to_string(bad) +
                                            ": the checkpoint is damaged");
}

const TensorView* WeightStore::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : it->second.first;
}

std::string WeightStore::file_of(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? std::string() : files_[it->second.second]->path();
}

size_t WeightStore::size() const { return index_.size(); }

}  // namespace vla
