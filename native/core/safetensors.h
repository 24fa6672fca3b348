// safetensors reading: parse and validate the header, memory-map the file, hand out views.
// Format: [u64 little-endian header length N][N bytes JSON header][data]. The header maps
// tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
// start of the data section) plus an optional "__metadata__" object of strings.
// Every check happens at open: a file that opens is safe to read through its views.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "vla/status.h"

namespace vla {

// The dtypes the engine computes from; i32 only for backend index tensors (never in files).
enum class DType { f32, f16, bf16, i32 };

// Size in bytes of one element.
size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "F32", "F16", "BF16"

// A tensor inside a mapped file. data stays valid while the owning SafetensorsFile lives.
struct TensorView {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;  // row-major, outermost first, as in the file
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    int64_t numel() const;
};

class SafetensorsFile {
public:
    // Opens and validates `path`. Checks: file at least 8 bytes; header length within the file
    // and below 100 MB; header is a JSON object; each entry has a known dtype string, a shape of
    // non-negative integers whose product times the dtype size does not overflow and equals
    // end - begin; 0 <= begin <= end; ranges do not overlap (Code::weights_format). An end past
    // the data section is Code::weights_truncated with expected and present bytes. Gaps and
    // trailing bytes in the data section are accepted.
    // Dtypes other than F32/F16/BF16 (e.g. I8, F64, unknown strings) give Code::dtype naming the
    // tensor. Errors name the file (and the tensor where there is one).
    // The file is read into memory this object owns, not mapped: rewriting or truncating the
    // file afterwards (cp over it) cannot change, or crash, a loaded model. Only a regular file
    // is opened (a FIFO or a device is Code::io).
    static Status open(const std::string& path, std::unique_ptr<SafetensorsFile>* out);

    // Same validation on an in-memory image of a file (used by the fuzz tests); the bytes
    // must outlive the object.
    static Status parse(const uint8_t* bytes, size_t size, const std::string& label,
                        std::unique_ptr<SafetensorsFile>* out);

    ~SafetensorsFile();
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& path() const { return path_; }
    const TensorView* find(const std::string& name) const;  // nullptr when absent
    const std::map<std::string, TensorView>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

private:
    SafetensorsFile() = default;
    std::string path_;
    void* map_ = nullptr;      // the file's bytes in anonymous memory this object owns (nullptr for parse())
    size_t map_size_ = 0;
    std::map<std::string, TensorView> tensors_;
    std::map<std::string, std::string> metadata_;
};

// Code::weights_format naming the file and the tensor when a float tensor holds a NaN or an Inf
// (checked as the engine binds each tensor it uses: every later inference would give NaN).
Status tensor_check_finite(const TensorView& t, const std::string& file);

// A model's weights across one file or the shards of model.safetensors.index.json.
class WeightStore {
public:
    // dir holds model.safetensors, or model.safetensors.index.json and its shards. A shard
    // named in the index but missing gives Code::io naming it; an index entry whose tensor is
    // not in its shard gives Code::tensor_missing; shard names that are empty, absolute or hold
    // ".." are Code::weights_format. Only tensors listed in the index are visible, and other
    // *.safetensors files in the dir are ignored when an index exists.
    static Status open_dir(const std::string& dir, std::unique_ptr<WeightStore>* out);

    const TensorView* find(const std::string& name) const;
    // The file a tensor came from, for error messages.
    std::string file_of(const std::string& name) const;
    size_t size() const;

private:
    std::vector<std::unique_ptr<SafetensorsFile>> files_;
    std::map<std::string, std::pair<const TensorView*, size_t>> index_;  // name -> (view, file)
};

}  // namespace vla
