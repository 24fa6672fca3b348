// Deterministic mutation fuzzer of SafetensorsFile::parse, run as an ordinary test:
//   fuzz-safetensors [iterations=20000] [seed=1]
// Valid seed files are mutated (bytes, header length, header text, splices); each result is
// parsed from an exactly-sized heap copy so ASan catches any read past its end. An accepted
// file must hand out views inside its data section (every byte is read), and a rejected one a
// parser error code and a message led by the label. Built with -DVLA_LIBFUZZER it is instead a
// libFuzzer target with the same checks.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "safetensors.h"

using namespace vla;

namespace {

const char* const k_label = "fuzz.safetensors";
volatile uint64_t g_sink;

using Bytes = std::string;

uint64_t header_len(const Bytes& b) {
    if (b.size() < 8) return 0;
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(b[i])) << (8 * i);
    return n;
}

#ifndef VLA_LIBFUZZER  // libFuzzer brings its own corpus and mutations
struct Rng {
    uint64_t s;
    uint64_t next() {  // splitmix64: the same stream on every platform
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    size_t below(size_t n) { return n ? static_cast<size_t>(next() % n) : 0; }
    bool one_in(size_t n) { return below(n) == 0; }
    template <typename T, size_t N>
    const T& pick(const T (&a)[N]) { return a[below(N)]; }
};

std::string le64(uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xFF);
    return s;
}

// ---- seeds

struct T {
    std::string name, dtype;
    std::vector<int64_t> shape;
};

Bytes make_file(const std::vector<T>& ts, const std::map<std::string, std::string>& meta, bool pad,
                const std::string& tail = "") {
    std::string h = "{", data;
    if (!meta.empty()) {
        h += "\"__metadata__\":{";
        bool first = true;
        for (auto& kv : meta) h += std::string(first ? "" : ",") + "\"" + kv.first + "\":\"" + kv.second + "\"", first = false;
        h += "}";
    }
    for (auto& t : ts) {
        if (h.size() > 1) h += ",";
        int64_t n = t.dtype == "F32" ? 4 : 2;
        std::string shape = "[";
        for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? "," : "") + std::to_string(t.shape[i]), n *= t.shape[i];
        const size_t b = data.size();
        for (int64_t i = 0; i < n; ++i) data += char(uint8_t(b + i * 37));
        h += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + shape + "],\"data_offsets\":[" +
             std::to_string(b) + "," + std::to_string(data.size()) + "]}";
    }
    h += "}";
    while (pad && h.size() % 8) h += ' ';
    return le64(h.size()) + h + data + tail;
}

std::vector<Bytes> seeds() {
    std::vector<Bytes> s;
    s.push_back(make_file({{"w", "F32", {2, 3}}, {"h", "F16", {2}}, {"b", "BF16", {}}, {"empty", "F32", {0, 4}}},
                          {{"format", "pt"}}, true));
    std::vector<T> many;
    const char* dts[] = {"F32", "F16", "BF16"};
    for (int l = 0; l < 24; ++l) {
        const std::string p = "language_model.model.layers." + std::to_string(l) + ".";
        many.push_back({p + "self_attn.q_proj.weight", dts[l % 3], {8, 4}});
        many.push_back({p + "self_attn.k_proj.weight", dts[(l + 1) % 3], {2, 4}});
        many.push_back({p + "mlp.up_proj.weight", dts[(l + 2) % 3], {3, 4}});
        many.push_back({p + "input_layernorm.weight", "F32", {4}});
        many.push_back({p + "scale", "BF16", {}});
        if (l % 5 == 0) many.push_back({p + "zero", "F16", {0, 7}});
    }
    s.push_back(make_file(many, {{"format", "pt"}, {"total", "1234"}, {"note", "many tensors"}, {"empty", ""}}, true));
    s.push_back(make_file({}, {}, false));
    s.push_back(make_file({}, {{"only", "metadata"}}, true));
    s.push_back(make_file({{"a", "F32", {1}}, {"z", "F16", {0}}}, {}, false, "trailing"));
    // Offsets out of name order, whitespace inside the header, a zero-size range at the end.
    {
        const std::string h =
            " {\n \"b\" : {\"data_offsets\": [8, 16], \"shape\": [2], \"dtype\": \"F32\"},\n"
            " \"a\" : {\"shape\": [4], \"dtype\": \"BF16\", \"data_offsets\": [0, 8]},\n"
            " \"c\" : {\"dtype\": \"F16\", \"shape\": [1, 0, 3], \"data_offsets\": [16, 16]} }  ";
        s.push_back(le64(h.size()) + h + std::string(16, '\x5a'));
    }
    s.push_back(make_file({{"big", "F16", {16, 16}}}, {}, true));
    return s;
}

// ---- mutations

struct Span {
    size_t begin, end;  // the header text, or the whole input when its length field is unusable
};

Span header_span(const Bytes& b) {
    if (b.size() < 8) return {0, b.size()};
    const uint64_t n = header_len(b);
    if (n > b.size() - 8) return {8, b.size()};
    return {8, size_t(8 + n)};
}

void set_len(Bytes* b, uint64_t n) {
    if (b->size() >= 8) b->replace(0, 8, le64(n));
}

// After editing the header text, usually keep the length field right so parsing goes deeper.
void fix_len(Rng& r, Bytes* b, Span h, size_t new_header_size) {
    if (h.begin == 8 && !r.one_in(8)) set_len(b, new_header_size);
}

const char interesting_bytes[] = {0, '\xff', '\x7f', '\x80', '[', ']', '{', '}', '"', ',', ':', '-', '.', 'e',
                                  '0', '1', '2', '9', ' ', '\\', 'n'};
const char* const numbers[] = {"0", "1", "-1", "-0", "2", "4", "8", "16", "2.5", "1e3", "1.0", "9007199254740992",
                               "9007199254740993", "18446744073709551615", "18446744073709551616",
                               "9223372036854775807", "-9223372036854775808", "4294967296", "4611686018427387904",
                               "99999999999999999999999999", "1e308", "-1e308", "3.4e38"};
const char* const tokens[] = {"\"F32\"", "\"F16\"", "\"BF16\"", "\"I8\"", "\"F64\"", "\"BOOL\"", "\"F8_E4M3\"",
                              "\"Q4\"", "\"\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"__metadata__\"",
                              "[]", "[0]", "[0,0]", "[1,2,3]", "{}", "null", "true", "0", "\"x\"", "[[]]", "[{}]",
                              "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"};

struct Number {
    size_t begin, end;
};

std::vector<Number> find_numbers(const Bytes& b, Span h) {
    std::vector<Number> v;
    for (size_t i = h.begin; i < h.end;) {
        if (b[i] >= '0' && b[i] <= '9') {
            size_t j = i;
            while (j < h.end && b[j] >= '0' && b[j] <= '9') ++j;
            v.push_back({i > h.begin && b[i - 1] == '-' ? i - 1 : i, j});
            i = j;
        } else {
            ++i;
        }
    }
    return v;
}

void mutate_once(Rng& r, Bytes* b, const std::vector<Bytes>& others) {
    const Span h = header_span(*b);
    const size_t hs = h.end - h.begin;
    // Positions are biased toward the header, where the parser's decisions are.
    auto pos = [&]() { return (hs && !r.one_in(4)) ? h.begin + r.below(hs) : r.below(b->size()); };
    switch (r.below(14)) {
        case 0:  // bit flip
            if (!b->empty()) (*b)[pos()] ^= char(1u << r.below(8));
            break;
        case 1:  // interesting byte
            if (!b->empty()) (*b)[pos()] = r.pick(interesting_bytes);
            break;
        case 2:  // truncate
            b->resize(r.below(b->size() + 1));
            break;
        case 3: {  // header length field
            const uint64_t n = header_len(*b), sz = b->size();
            const uint64_t vals[] = {0, 1, 2, 7, 8, n - 1, n + 1, n + 8, sz - 8, sz - 7, sz, uint64_t(1) << 63,
                                     ~uint64_t(0), ~uint64_t(0) - 7, 100000000, 100000001, r.next() & 0xFFFFFFFF, r.next()};
            set_len(b, r.pick(vals));
            break;
        }
        case 4: {  // splice with another input
            const Bytes& o = others[r.below(others.size())];
            const size_t cut = r.below(b->size() + 1), from = r.below(o.size() + 1);
            *b = b->substr(0, cut) + o.substr(from);
            break;
        }
        case 5: {  // insert bytes into the header
            std::string ins;
            for (size_t i = 0, n = 1 + r.below(8); i < n; ++i) ins += r.one_in(2) ? r.pick(interesting_bytes) : char(r.next());
            b->insert(h.begin + r.below(hs + 1), ins);
            fix_len(r, b, h, hs + ins.size());
            break;
        }
        case 6: {  // remove bytes from the header
            if (!hs) break;
            const size_t at = h.begin + r.below(hs), n = std::min(hs - (at - h.begin), 1 + r.below(r.one_in(4) ? 64 : 4));
            b->erase(at, n);
            fix_len(r, b, h, hs - n);
            break;
        }
        case 7:
        case 8: {  // replace a number in the header: a dictionary value or a neighbour of another one
            const auto nums = find_numbers(*b, h);
            if (nums.empty()) break;
            const Number& n = nums[r.below(nums.size())];
            std::string v;
            if (r.one_in(2)) {
                v = r.pick(numbers);
            } else {
                const Number& o = nums[r.below(nums.size())];
                const long long lim = 1ll << 62;  // keep the +-4 below from overflowing
                const long long base = std::max(-lim, std::min(lim, std::strtoll(b->c_str() + o.begin, nullptr, 10)));
                v = std::to_string(base + static_cast<long long>(r.below(9)) - 4);
            }
            b->replace(n.begin, n.end - n.begin, v);
            fix_len(r, b, h, hs - (n.end - n.begin) + v.size());
            break;
        }
        case 9: {  // replace a quoted string or a bracketed value with a token
            if (!hs) break;
            size_t at = h.begin + r.below(hs);
            while (at < h.end && (*b)[at] != '"' && (*b)[at] != '[') ++at;
            if (at >= h.end) break;
            const char close = (*b)[at] == '"' ? '"' : ']';
            size_t end = at + 1;
            while (end < h.end && (*b)[end] != close) ++end;
            if (end >= h.end) break;
            const std::string v = r.pick(tokens);
            b->replace(at, end + 1 - at, v);
            fix_len(r, b, h, hs - (end + 1 - at) + v.size());
            break;
        }
        case 10: {  // copy a slice of the header elsewhere in it
            if (!hs) break;
            const size_t from = h.begin + r.below(hs), n = std::min(hs - (from - h.begin), 1 + r.below(80));
            const std::string slice = b->substr(from, n);
            b->insert(h.begin + r.below(hs + 1), slice);
            fix_len(r, b, h, hs + n);
            break;
        }
        case 12:
        case 13: {  // move a tensor's whole range: overlaps and gaps with consistent sizes
            std::vector<size_t> at;
            for (size_t p = b->find("\"data_offsets\"", h.begin); p < h.end; p = b->find("\"data_offsets\"", p + 1)) at.push_back(p);
            if (at.empty()) break;
            const size_t p = b->find('[', at[r.below(at.size())]), q = p == Bytes::npos ? p : b->find(']', p);
            if (q == Bytes::npos || q >= h.end) break;
            unsigned long long x = 0, y = 0;
            if (std::sscanf(b->c_str() + p, "[%llu ,%llu ]", &x, &y) != 2 || x > y || y > (1ull << 60)) break;
            long long d = static_cast<long long>(r.below(17)) - 8;
            if (r.one_in(4)) d *= 2;
            if (d < 0 && static_cast<unsigned long long>(-d) > x) d = -static_cast<long long>(x);
            const std::string v = "[" + std::to_string(x + d) + "," + std::to_string(y + d) + "]";
            b->replace(p, q + 1 - p, v);
            fix_len(r, b, h, hs - (q + 1 - p) + v.size());
            break;
        }
        case 11:  // grow or shrink the data section
            if (r.one_in(2)) b->append(1 + r.below(16), char(r.next()));
            else if (b->size() > h.end) b->resize(h.end + r.below(b->size() - h.end));
            break;
    }
}

#endif  // VLA_LIBFUZZER

// ---- checks

struct Stats {
    uint64_t cases = 0, accepted = 0, rejected = 0, crashes = 0;
    uint64_t format = 0, truncated = 0, dtype = 0;
};

// An accepted file read again, independently: the views must be exactly what the header says.
std::string reference_check(const SafetensorsFile& f, const uint8_t* bytes, uint64_t n, const uint8_t* lo) {
    using json = nlohmann::json;
    const char* h = reinterpret_cast<const char*>(bytes) + 8;
    const json doc = json::parse(h, h + n, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) return "accepted a header that is not a JSON object";
    size_t n_tensors = 0;
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        if (it.key() == "__metadata__") {
            std::map<std::string, std::string> m;
            for (auto e = it->begin(); e != it->end(); ++e) m[e.key()] = e->get<std::string>();
            if (m != f.metadata()) return "metadata differs from the header";
            continue;
        }
        ++n_tensors;
        const TensorView* v = f.find(it.key());
        if (!v) return "a header tensor is missing: " + it.key();
        const json& e = *it;
        if (e.at("dtype").get<std::string>() != dtype_name(v->dtype)) return "dtype differs: " + v->name;
        std::vector<int64_t> shape;
        for (const json& d : e.at("shape")) shape.push_back(d.get<int64_t>());
        if (shape != v->shape) return "shape differs: " + v->name;
        const uint64_t b = e.at("data_offsets").at(0).get<uint64_t>(), end = e.at("data_offsets").at(1).get<uint64_t>();
        if (v->data != lo + b || v->nbytes != end - b) return "view is not the header's range: " + v->name;
    }
    if (doc.find("__metadata__") == doc.end() && !f.metadata().empty()) return "metadata from nowhere";
    if (n_tensors != f.tensors().size()) return "tensor count differs from the header";
    return "";
}

// Parses `bytes` and checks the result; returns an empty string or what went wrong.
std::string check(const uint8_t* bytes, size_t size, Stats* st) {
    std::unique_ptr<uint8_t[]> buf(new uint8_t[size]);  // exactly sized: ASan sees overreads
    if (size) std::memcpy(buf.get(), bytes, size);
    std::unique_ptr<SafetensorsFile> f;
    Status s;
    ++st->cases;
    try {
        s = SafetensorsFile::parse(buf.get(), size, k_label, &f);
    } catch (...) {
        return "exception escaped parse()";
    }
    if (!s.ok()) {
        ++st->rejected;
        if (f) return "failure left a file behind";
        if (s.message().empty()) return "empty message";
        if (s.message().rfind(std::string(k_label) + ": ", 0) != 0) return "message does not start with the label: " + s.message();
        switch (s.code()) {
            case Code::weights_format: ++st->format; break;
            case Code::weights_truncated: ++st->truncated; break;
            case Code::dtype: ++st->dtype; break;
            default: return "unexpected code: " + s.to_string();
        }
        return "";
    }
    ++st->accepted;
    if (!f) return "success without a file";
    const uint64_t n = header_len(Bytes(reinterpret_cast<const char*>(bytes), std::min<size_t>(size, 8)));
    const uint8_t* lo = buf.get() + 8 + n;
    const uint8_t* hi = buf.get() + size;
    std::vector<std::pair<const uint8_t*, const uint8_t*>> used;
    uint64_t sum = 0;
    for (const auto& kv : f->tensors()) {
        const TensorView& v = kv.second;
        if (v.name != kv.first || f->find(kv.first) != &v) return "view name mismatch";
        if (v.dtype != DType::f32 && v.dtype != DType::f16 && v.dtype != DType::bf16) return "bad dtype";
        for (int64_t d : v.shape)
            if (d < 0) return "negative dimension";
        if (uint64_t(v.numel()) * dtype_size(v.dtype) != v.nbytes) return "nbytes != numel * dtype size: " + v.name;
        if (v.data < lo || v.data > hi || v.nbytes > size_t(hi - v.data)) return "view out of bounds: " + v.name;
        for (size_t i = 0; i < v.nbytes; ++i) sum += v.data[i];
        if (v.nbytes) used.push_back({v.data, v.data + v.nbytes});
    }
    std::sort(used.begin(), used.end());
    for (size_t i = 1; i < used.size(); ++i)
        if (used[i].first < used[i - 1].second) return "views overlap";
    g_sink = g_sink + sum;
    try {
        return reference_check(*f, bytes, n, lo);
    } catch (const std::exception& e) {
        return std::string("accepted a header the reference reading rejects: ") + e.what();
    }
}

}  // namespace

#ifdef VLA_LIBFUZZER
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Stats st;
    const std::string why = check(data, size, &st);
    if (!why.empty()) {
        std::fprintf(stderr, "fuzz-safetensors: %s\n", why.c_str());
        std::abort();  // how a libFuzzer target reports a finding
    }
    return 0;
}
#else
int main(int argc, char** argv) {
    auto arg = [&](int i, uint64_t def) -> uint64_t {
        if (argc <= i) return def;
        char* end = nullptr;
        const unsigned long long v = std::strtoull(argv[i], &end, 10);
        if (!*argv[i] || *end) {
            std::fprintf(stderr, "usage: fuzz-safetensors [iterations=20000] [seed=1]\n");
            std::exit(2);
        }
        return v;
    };
    const uint64_t iters = arg(1, 20000), seed = arg(2, 1);
    Rng r{seed};
    const std::vector<Bytes> base = seeds();
    std::vector<Bytes> pool = base;  // grows with mutants, so mutations stack across cases
    Stats st;
    const auto t0 = std::chrono::steady_clock::now();

    for (const Bytes& s : base) {  // the seeds themselves must parse
        const std::string why = check(reinterpret_cast<const uint8_t*>(s.data()), s.size(), &st);
        if (!why.empty() || st.rejected) {
            std::fprintf(stderr, "fuzz-safetensors: a seed does not parse: %s\n", why.c_str());
            return 1;
        }
    }
    st = Stats();

    for (uint64_t i = 0; i < iters; ++i) {
        Bytes b = r.one_in(2) ? base[r.below(base.size())] : pool[r.below(pool.size())];
        for (size_t k = 0, n = 1 + r.below(4); k < n; ++k) mutate_once(r, &b, pool);
        const uint64_t accepted = st.accepted;
        const std::string why = check(reinterpret_cast<const uint8_t*>(b.data()), b.size(), &st);
        if (!why.empty()) {
            if (++st.crashes <= 3) {
                char name[64];
                std::snprintf(name, sizeof name, "fuzz-safetensors-case-%llu.bin", static_cast<unsigned long long>(i));
                if (FILE* out = std::fopen(name, "wb")) {
                    std::fwrite(b.data(), 1, b.size(), out);
                    std::fclose(out);
                }
                std::fprintf(stderr, "fuzz-safetensors: case %llu (seed %llu): %s; input written to %s\n",
                             static_cast<unsigned long long>(i), static_cast<unsigned long long>(seed), why.c_str(), name);
            }
            continue;
        }
        // Keep accepted mutants and a few rejected ones; bounded, replaced at random.
        if (st.accepted > accepted || r.one_in(16)) {
            if (pool.size() < 512) pool.push_back(std::move(b));
            else pool[base.size() + r.below(pool.size() - base.size())] = std::move(b);
        }
    }

    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("fuzz-safetensors: %llu cases, %llu accepted, %llu rejected (format %llu, truncated %llu, dtype %llu), "
                "%llu crashes, %.0f cases/s\n",
                static_cast<unsigned long long>(st.cases), static_cast<unsigned long long>(st.accepted),
                static_cast<unsigned long long>(st.rejected), static_cast<unsigned long long>(st.format),
                static_cast<unsigned long long>(st.truncated), static_cast<unsigned long long>(st.dtype),
                static_cast<unsigned long long>(st.crashes), secs > 0 ? st.cases / secs : 0.0);
    return st.crashes ? 1 : 0;
}
#endif
