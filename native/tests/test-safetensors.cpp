// Safetensors reader and Status: the success path, and every rejection with real bad bytes.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "safetensors.h"

using namespace vla;
namespace fs = std::filesystem;

namespace {

const char* const k_label = "model.safetensors";

std::string le64(uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xFF);
    return s;
}

// A file from a header text and a data section.
std::string raw(const std::string& header, const std::string& data = "") { return le64(header.size()) + header + data; }

struct T {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::string bytes;
};

std::string f32s(std::vector<float> v) {
    std::string s(v.size() * 4, '\0');
    std::memcpy(&s[0], v.data(), s.size());
    return s;
}

std::string u16s(std::vector<uint16_t> v) {
    std::string s(v.size() * 2, '\0');
    std::memcpy(&s[0], v.data(), s.size());
    return s;
}

std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

std::string shape_json(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
}

// A valid file: tensors laid out in order, header padded with spaces to 8 bytes like the
// reference writer.
std::string make_file(const std::vector<T>& ts, const std::map<std::string, std::string>& meta = {}) {
    std::string h = "{", data;
    if (!meta.empty()) {
        h += "\"__metadata__\":{";
        bool first = true;
        for (auto& kv : meta) h += std::string(first ? "" : ",") + "\"" + kv.first + "\":\"" + kv.second + "\"", first = false;
        h += "}";
    }
    for (auto& t : ts) {
        if (h.size() > 1) h += ",";
        const size_t b = data.size();
        data += t.bytes;
        h += "\"" + t.name + "\":" +
             entry(t.dtype, shape_json(t.shape), "[" + std::to_string(b) + "," + std::to_string(data.size()) + "]");
    }
    h += "}";
    while (h.size() % 8) h += ' ';
    return raw(h, data);
}

std::string sample() {
    return make_file({{"w", "F32", {2, 3}, f32s({1, 2, 3, 4, 5, 6})},
                      {"h", "F16", {2}, u16s({0x3C00, 0xC000})},
                      {"b", "BF16", {}, u16s({0x3F80})},
                      {"empty", "F32", {0, 4}, ""}},
                     {{"format", "pt"}});
}

// Parsed from an exactly-sized heap copy, so ASan sees any read past the end.
struct Parsed {
    std::unique_ptr<uint8_t[]> buf;
    size_t size = 0;
    std::unique_ptr<SafetensorsFile> file;
    Status st;
};

Parsed parse(const std::string& bytes, const std::string& label = k_label) {
    Parsed p;
    p.size = bytes.size();
    p.buf.reset(new uint8_t[bytes.size()]);
    if (!bytes.empty()) std::memcpy(p.buf.get(), bytes.data(), bytes.size());
    p.st = SafetensorsFile::parse(p.buf.get(), p.size, label, &p.file);
    return p;
}

// Rejects with `code`, a message led by the label and holding each of `parts`; returns the message.
std::string rejects(const std::string& bytes, Code code, std::vector<std::string> parts = {}) {
    Parsed p = parse(bytes);
    INFO("message: " << p.st.message());
    CHECK(p.st.code() == code);
    CHECK(p.file == nullptr);
    CHECK(p.st.message().rfind(std::string(k_label) + ": ", 0) == 0);
    for (auto& s : parts) CHECK_MESSAGE(p.st.message().find(s) != std::string::npos, "missing '" << s << "'");
    return p.st.message();
}

std::string one(const std::string& e) { return raw("{\"x\":" + e + "}", std::string(64, '\x11')); }

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/vla-test-st-XXXXXX";
        char* p = ::mkdtemp(tmpl);
        REQUIRE(p != nullptr);
        path = p;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string put(const std::string& name, const std::string& bytes) const {
        const std::string p = path + "/" + name;
        std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
        return p;
    }
};

float f32_at(const TensorView* v, size_t i) {
    float x;
    std::memcpy(&x, v->data + 4 * i, 4);
    return x;
}

}  // namespace

TEST_CASE("status: names and to_string") {
    const std::pair<Code, const char*> names[] = {
        {Code::ok, "OK"},
        {Code::io, "VLA_E_IO"},
        {Code::config, "VLA_E_CONFIG"},
        {Code::weights_format, "VLA_E_WEIGHTS_FORMAT"},
        {Code::weights_truncated, "VLA_E_WEIGHTS_TRUNCATED"},
        {Code::tensor_missing, "VLA_E_TENSOR_MISSING"},
        {Code::tensor_shape, "VLA_E_TENSOR_SHAPE"},
        {Code::dtype, "VLA_E_DTYPE"},
        {Code::input, "VLA_E_INPUT"},
        {Code::image, "VLA_E_IMAGE"},
        {Code::busy, "VLA_E_BUSY"},
        {Code::disposed, "VLA_E_DISPOSED"},
        {Code::backend, "VLA_E_BACKEND"},
        {Code::oom, "VLA_E_OOM"},
        {Code::internal, "VLA_E_INTERNAL"},
    };
    for (auto& n : names) CHECK(std::string(code_name(n.first)) == n.second);
    CHECK(Status::OK().ok());
    CHECK(Status::OK().to_string() == "OK");
    Status s(Code::tensor_shape, "a.safetensors: tensor 'x': bad");
    CHECK_FALSE(s.ok());
    CHECK(s.code() == Code::tensor_shape);
    CHECK(s.to_string() == "VLA_E_TENSOR_SHAPE: a.safetensors: tensor 'x': bad");
    auto f = [](bool fail) -> Status {
        VLA_RETURN_IF_ERROR(fail ? Status(Code::io, "boom") : Status::OK());
        return Status(Code::internal, "reached");
    };
    CHECK(f(true).code() == Code::io);
    CHECK(f(false).code() == Code::internal);
}

TEST_CASE("dtype helpers and numel") {
    CHECK(dtype_size(DType::f32) == 4);
    CHECK(dtype_size(DType::f16) == 2);
    CHECK(dtype_size(DType::bf16) == 2);
    CHECK(std::string(dtype_name(DType::f32)) == "F32");
    CHECK(std::string(dtype_name(DType::f16)) == "F16");
    CHECK(std::string(dtype_name(DType::bf16)) == "BF16");
    TensorView v;
    CHECK(v.numel() == 1);  // a scalar
    v.shape = {2, 3, 4};
    CHECK(v.numel() == 24);
    v.shape = {int64_t(1) << 53, int64_t(1) << 53, 0};
    CHECK(v.numel() == 0);
}

TEST_CASE("parse: a valid file reads back") {
    Parsed p = parse(sample());
    REQUIRE_MESSAGE(p.st.ok(), p.st.to_string());
    const SafetensorsFile& f = *p.file;
    CHECK(f.path() == k_label);
    CHECK(f.tensors().size() == 4);
    CHECK(f.metadata().size() == 1);
    CHECK(f.metadata().at("format") == "pt");
    CHECK(f.find("absent") == nullptr);
    CHECK(f.find("__metadata__") == nullptr);

    const TensorView* w = f.find("w");
    REQUIRE(w != nullptr);
    CHECK(w->name == "w");
    CHECK(w->dtype == DType::f32);
    CHECK(w->shape == std::vector<int64_t>{2, 3});
    CHECK(w->numel() == 6);
    CHECK(w->nbytes == 24);
    for (size_t i = 0; i < 6; ++i) CHECK(f32_at(w, i) == float(i + 1));

    const TensorView* h = f.find("h");
    REQUIRE(h != nullptr);
    CHECK(h->dtype == DType::f16);
    CHECK(h->nbytes == 4);
    uint16_t hv[2];
    std::memcpy(hv, h->data, 4);
    CHECK(hv[0] == 0x3C00);
    CHECK(hv[1] == 0xC000);
    CHECK(h->data == w->data + 24);

    const TensorView* b = f.find("b");
    REQUIRE(b != nullptr);
    CHECK(b->dtype == DType::bf16);
    CHECK(b->shape.empty());
    CHECK(b->numel() == 1);
    CHECK(b->nbytes == 2);

    const TensorView* e = f.find("empty");
    REQUIRE(e != nullptr);
    CHECK(e->numel() == 0);
    CHECK(e->nbytes == 0);

    // Every view lies inside the data section.
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= uint64_t(p.buf[i]) << (8 * i);
    for (auto& kv : f.tensors()) {
        CHECK(kv.second.data >= p.buf.get() + 8 + n);
        CHECK(kv.second.data + kv.second.nbytes <= p.buf.get() + p.size);
    }
}

TEST_CASE("parse: edge cases that are valid") {
    SUBCASE("empty header object, no data") {
        Parsed p = parse(raw("{}"));
        REQUIRE(p.st.ok());
        CHECK(p.file->tensors().empty());
    }
    SUBCASE("metadata only") {
        Parsed p = parse(raw("{\"__metadata__\":{\"a\":\"1\",\"b\":\"\"}}"));
        REQUIRE(p.st.ok());
        CHECK(p.file->metadata().size() == 2);
        CHECK(p.file->metadata().at("b").empty());
    }
    SUBCASE("whitespace around the header") {
        Parsed p = parse(raw("  \n{\"x\":" + entry("F32", "[1]", "[0,4]") + "}\t   ", f32s({7})));
        REQUIRE_MESSAGE(p.st.ok(), p.st.to_string());
        CHECK(f32_at(p.file->find("x"), 0) == 7.f);
    }
    SUBCASE("unordered offsets, adjacent ranges, zero-size range inside another, trailing bytes") {
        Parsed p = parse(raw("{\"b\":" + entry("F32", "[1]", "[4,8]") + ",\"a\":" + entry("F32", "[1]", "[0,4]") +
                                 ",\"z\":" + entry("F16", "[3,0]", "[2,2]") + "}",
                             f32s({1, 2}) + "tail"));
        REQUIRE_MESSAGE(p.st.ok(), p.st.to_string());
        CHECK(f32_at(p.file->find("a"), 0) == 1.f);
        CHECK(f32_at(p.file->find("b"), 0) == 2.f);
        CHECK(p.file->find("z")->nbytes == 0);
    }
    SUBCASE("zero-size tensor at the very end of the data") {
        Parsed p = parse(raw("{\"z\":" + entry("F32", "[0]", "[4,4]") + ",\"a\":" + entry("F32", "[1]", "[0,4]") + "}",
                             f32s({1})));
        REQUIRE_MESSAGE(p.st.ok(), p.st.to_string());
        CHECK(p.file->find("z")->data == p.buf.get() + p.size);
    }
    SUBCASE("unknown keys in an entry are ignored; offsets written as signed ints") {
        Parsed p = parse(raw("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":[1,2]}}", f32s({3})));
        REQUIRE_MESSAGE(p.st.ok(), p.st.to_string());
    }
}

TEST_CASE("parse: too short and truncated at every point") {
    for (size_t n = 0; n < 8; ++n) rejects(std::string(n, '\0'), Code::weights_format, {"too short"});

    const std::string good = sample();
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i) hlen |= uint64_t(uint8_t(good[i])) << (8 * i);
    const size_t data_at = 8 + hlen;
    REQUIRE(parse(good).st.ok());
    for (size_t cut = 0; cut < good.size(); ++cut) {
        CAPTURE(cut);
        const std::string bad = good.substr(0, cut);
        if (cut < data_at) {
            rejects(bad, Code::weights_format);
        } else {
            // The last non-empty tensor is 'b' (2 bytes at 28..30).
            const std::string m = rejects(bad, Code::weights_truncated, {"'b'", "30", std::to_string(cut - data_at)});
            CHECK(m.find("expected " + std::to_string(good.size())) != std::string::npos);
            CHECK(m.find("present " + std::to_string(cut)) != std::string::npos);
        }
    }
}

TEST_CASE("parse: header length") {
    const std::string body = "{}";
    rejects(le64(0xFFFFFFFFFFFFFFFFull) + body, Code::weights_format, {"header length 18446744073709551615", "exceeds the file"});
    rejects(le64(0x8000000000000000ull) + body, Code::weights_format, {"exceeds the file"});
    rejects(le64(3) + body, Code::weights_format, {"exceeds the file (10 bytes)"});
    rejects(le64(0) + body, Code::weights_format, {"not valid JSON"});  // empty header, "{}" is data
    rejects(le64(1) + body, Code::weights_format, {"not valid JSON"});
    // Over the 100 MB limit while inside the file.
    std::string big = le64(100000001) + "{}";
    big.resize(8 + 100000001, ' ');
    rejects(big, Code::weights_format, {"limit"});
}

TEST_CASE("parse: header is not a JSON object") {
    for (const char* h : {"{not json", "{\"x\":", "{}x", "{}{}", "\xff\xfe", "{\"\xc3\x28\":1}", "nul"})
        rejects(raw(h), Code::weights_format, {"not valid JSON"});
    for (const char* h : {"[]", "[{}]", "\"str\"", "42", "null", "true"})
        rejects(raw(h), Code::weights_format, {"not a JSON object"});
}

TEST_CASE("parse: entries") {
    SUBCASE("entry not an object") {
        rejects(one("[1,2]"), Code::weights_format, {"'x'", "not an object"});
        rejects(one("\"F32\""), Code::weights_format, {"'x'"});
    }
    SUBCASE("dtype") {
        rejects(one("{\"shape\":[1],\"data_offsets\":[0,4]}"), Code::weights_format, {"'x'", "dtype"});
        rejects(one("{\"dtype\":42,\"shape\":[1],\"data_offsets\":[0,4]}"), Code::weights_format, {"'x'", "dtype"});
        rejects(one("{\"dtype\":null,\"shape\":[1],\"data_offsets\":[0,4]}"), Code::weights_format, {"dtype"});
        rejects(one(entry("I8", "[4]", "[0,4]")), Code::dtype,
                {"tensor 'x': dtype 'I8' is not supported (F32, F16, BF16)"});
        for (const char* d : {"BOOL", "U8", "I16", "U16", "I32", "U32", "I64", "U64", "F64", "F8_E4M3", "F8_E5M2"})
            rejects(one(entry(d, "[1]", "[0,1]")), Code::dtype, {"'x'", std::string("'") + d + "'", "not supported"});
        rejects(one(entry("Q4_K", "[4]", "[0,4]")), Code::dtype, {"'x'", "unknown dtype 'Q4_K'"});
        rejects(one(entry("f32", "[1]", "[0,4]")), Code::dtype, {"'f32'"});  // case matters
        rejects(one(entry("", "[1]", "[0,4]")), Code::dtype, {"''"});
    }
    SUBCASE("shape") {
        rejects(one(entry("F32", "[-1,4]", "[0,16]")), Code::weights_format, {"'x'", "shape[0]"});
        rejects(one(entry("F32", "[2,-4]", "[0,16]")), Code::weights_format, {"shape[1]"});
        rejects(one(entry("F32", "[2.0,2]", "[0,16]")), Code::weights_format, {"shape[0]"});
        rejects(one(entry("F32", "[1e1]", "[0,40]")), Code::weights_format, {"shape[0]"});
        rejects(one(entry("F32", "[\"2\"]", "[0,8]")), Code::weights_format, {"shape[0]"});
        rejects(one(entry("F32", "[true]", "[0,4]")), Code::weights_format, {"shape[0]"});
        rejects(one(entry("F32", "[null]", "[0,4]")), Code::weights_format, {"shape[0]"});
        rejects(one(entry("F32", "[[2]]", "[0,8]")), Code::weights_format, {"shape[0]"});
        rejects(one(entry("F32", "4", "[0,16]")), Code::weights_format, {"shape"});
        rejects(one("{\"dtype\":\"F32\",\"data_offsets\":[0,4]}"), Code::weights_format, {"shape"});
        rejects(one(entry("F32", "[9007199254740993]", "[0,4]")), Code::weights_format, {"shape[0]"});  // 2^53 + 1
        rejects(one(entry("F32", "[18446744073709551616]", "[0,4]")), Code::weights_format, {"shape[0]"});  // parsed as float
        rejects(one(entry("F32", "[4294967296,4294967296,16]", "[0,4]")), Code::weights_format, {"'x'", "overflow"});
        rejects(one(entry("F32", "[9007199254740992,4096]", "[0,4]")), Code::weights_format, {"overflow"});
    }
    SUBCASE("shape does not match the offsets") {
        rejects(one(entry("F32", "[2,2]", "[0,12]")), Code::weights_format, {"'x'", "span 12", "need 16"});
        rejects(one(entry("F16", "[2,2]", "[0,16]")), Code::weights_format, {"need 8"});
        rejects(one(entry("F32", "[0]", "[0,4]")), Code::weights_format, {"need 0"});
        rejects(one(entry("F32", "[]", "[0,0]")), Code::weights_format, {"need 4"});
        rejects(one(entry("F32", "[9007199254740992]", "[0,4]")), Code::weights_format, {"36028797018963968"});
    }
    SUBCASE("data_offsets") {
        rejects(one(entry("F32", "[1]", "[16,12]")), Code::weights_format, {"'x'", "reversed"});
        rejects(one(entry("F32", "[1]", "[0,4,8]")), Code::weights_format, {"data_offsets"});
        rejects(one(entry("F32", "[1]", "[4]")), Code::weights_format, {"data_offsets"});
        rejects(one(entry("F32", "[1]", "[]")), Code::weights_format, {"data_offsets"});
        rejects(one(entry("F32", "[1]", "{\"a\":0,\"b\":4}")), Code::weights_format, {"data_offsets"});
        rejects(one(entry("F32", "[1]", "[-4,0]")), Code::weights_format, {"data_offsets"});
        rejects(one(entry("F32", "[1]", "[0.0,4.0]")), Code::weights_format, {"data_offsets"});
        rejects(one(entry("F32", "[1]", "[0,\"4\"]")), Code::weights_format, {"data_offsets"});
        rejects(one(entry("F32", "[1]", "[0,18446744073709551616]")), Code::weights_format, {"data_offsets"});
        rejects(one("{\"dtype\":\"F32\",\"shape\":[1]}"), Code::weights_format, {"data_offsets"});
    }
    SUBCASE("end beyond the data") {
        // 64 data bytes present.
        rejects(one(entry("F32", "[1]", "[64,68]")), Code::weights_truncated, {"'x'", "68", "holds only 64 bytes"});
        rejects(one(entry("F32", "[0]", "[65,65]")), Code::weights_truncated, {"'x'", "65"});
        rejects(one(entry("F32", "[9007199254740992]", "[0,36028797018963968]")), Code::weights_truncated,
                {"36028797018963968"});
        rejects(one(entry("F32", "[1]", "[18446744073709551611,18446744073709551615]")), Code::weights_truncated,
                {"more than 2^64"});
    }
    SUBCASE("overlapping ranges") {
        rejects(raw("{\"a\":" + entry("F32", "[4]", "[0,16]") + ",\"b\":" + entry("F32", "[4]", "[8,24]") + "}",
                    std::string(24, '\0')),
                Code::weights_format, {"'a'", "'b'", "overlap"});
        rejects(raw("{\"a\":" + entry("F32", "[1]", "[4,8]") + ",\"b\":" + entry("F32", "[1]", "[4,8]") + "}", std::string(8, '\0')),
                Code::weights_format, {"overlap"});
        // b lies inside a, c starts after b ends but inside a.
        rejects(raw("{\"a\":" + entry("F32", "[8]", "[0,32]") + ",\"b\":" + entry("F32", "[1]", "[4,8]") +
                        ",\"c\":" + entry("F32", "[1]", "[12,16]") + "}",
                    std::string(32, '\0')),
                Code::weights_format, {"'a'", "overlap"});
        rejects(raw("{\"a\":" + entry("F32", "[8]", "[0,32]") + ",\"b\":" + entry("F32", "[0]", "[4,4]") +
                        ",\"c\":" + entry("F32", "[1]", "[28,32]") + "}",
                    std::string(32, '\0')),
                Code::weights_format, {"'a'", "'c'", "overlap"});
    }
    SUBCASE("__metadata__") {
        rejects(raw("{\"__metadata__\":{\"a\":1}}"), Code::weights_format, {"__metadata__", "'a'", "not a string"});
        rejects(raw("{\"__metadata__\":{\"a\":\"ok\",\"b\":null}}"), Code::weights_format, {"'b'"});
        rejects(raw("{\"__metadata__\":{\"a\":{\"nested\":\"x\"}}}"), Code::weights_format, {"__metadata__"});
        rejects(raw("{\"__metadata__\":[\"a\"]}"), Code::weights_format, {"__metadata__", "not an object"});
        rejects(raw("{\"__metadata__\":\"a\"}"), Code::weights_format, {"__metadata__"});
    }
    SUBCASE("long names are clipped in messages") {
        const std::string name(5000, 'n');
        const std::string m = rejects(raw("{\"" + name + "\":" + entry("I8", "[1]", "[0,1]") + "}", "x"), Code::dtype);
        CHECK(m.size() < 400);
    }
}

TEST_CASE("open: files on disk") {
    TempDir d;
    SUBCASE("nonexistent path") {
        std::unique_ptr<SafetensorsFile> f;
        Status st = SafetensorsFile::open(d.path + "/nope.safetensors", &f);
        CHECK(st.code() == Code::io);
        CHECK(st.message().rfind(d.path + "/nope.safetensors: ", 0) == 0);
        CHECK(f == nullptr);
    }
    SUBCASE("a directory") {
        std::unique_ptr<SafetensorsFile> f;
        CHECK(SafetensorsFile::open(d.path, &f).code() == Code::io);
    }
    SUBCASE("valid file") {
        const std::string p = d.put("model.safetensors", sample());
        std::unique_ptr<SafetensorsFile> f;
        Status st = SafetensorsFile::open(p, &f);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        CHECK(f->path() == p);
        CHECK(f->tensors().size() == 4);
        CHECK(f32_at(f->find("w"), 5) == 6.f);
        CHECK(f->metadata().at("format") == "pt");
    }
    SUBCASE("empty, short and truncated files") {
        std::unique_ptr<SafetensorsFile> f;
        Status st = SafetensorsFile::open(d.put("empty.safetensors", ""), &f);
        CHECK(st.code() == Code::weights_format);
        CHECK(st.message().rfind(d.path + "/empty.safetensors: ", 0) == 0);
        CHECK(SafetensorsFile::open(d.put("short.safetensors", "abc"), &f).code() == Code::weights_format);
        const std::string good = sample();
        st = SafetensorsFile::open(d.put("trunc.safetensors", good.substr(0, good.size() - 1)), &f);
        CHECK(st.code() == Code::weights_truncated);
        CHECK(st.message().find("trunc.safetensors") != std::string::npos);
        CHECK(f == nullptr);
    }
}

TEST_CASE("open: the file may change or vanish after it (cp over it, truncation, a FIFO)") {
    TempDir d;
    // Large enough to span many pages: a mapped file's pages past a truncation fault (SIGBUS).
    std::vector<float> big(1 << 18);
    for (size_t i = 0; i < big.size(); ++i) big[i] = float(i % 1000) * 0.5f;
    const std::string p = d.put("model.safetensors", make_file({{"w", "F32", {int64_t(big.size())}, f32s(big)}}));
    std::unique_ptr<SafetensorsFile> f;
    REQUIRE(SafetensorsFile::open(p, &f).ok());
    // what cp does to the destination: truncate, then write other bytes
    REQUIRE(::truncate(p.c_str(), 0) == 0);
    const TensorView* w = f->find("w");
    REQUIRE(w != nullptr);
    double sum = 0, want = 0;
    for (size_t i = 0; i < big.size(); ++i) sum += f32_at(w, i), want += big[i];
    CHECK(sum == want);
    d.put("model.safetensors", make_file({{"w", "F32", {int64_t(big.size())}, std::string(big.size() * 4, '\x7f')}}));
    CHECK(f32_at(w, 12345) == big[12345]);
    // a FIFO in the file's place: refused at once, not a blocked open
    const std::string fifo = d.path + "/fifo.safetensors";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    std::unique_ptr<SafetensorsFile> g;
    const Status st = SafetensorsFile::open(fifo, &g);
    CHECK(st.code() == Code::io);
    CHECK(st.message().find("not a regular file") != std::string::npos);
}

TEST_CASE("tensor_check_finite: NaN and Inf in F32, F16 and BF16 name the tensor") {
    const std::string bytes = make_file({{"ok", "F32", {3}, f32s({1, -2, 3e38f})},
                                         {"nan32", "F32", {3}, f32s({1, std::nanf(""), 2})},
                                         {"inf16", "F16", {2}, u16s({0x3C00, 0x7C00})},
                                         {"nan_bf16", "BF16", {2}, u16s({0x3F80, 0x7FC0})},
                                         {"ok16", "F16", {2}, u16s({0x7BFF, 0xFBFF})}});
    Parsed p = parse(bytes);
    REQUIRE(p.st.ok());
    CHECK(tensor_check_finite(*p.file->find("ok"), "m").ok());
    CHECK(tensor_check_finite(*p.file->find("ok16"), "m").ok());
    for (const char* name : {"nan32", "inf16", "nan_bf16"}) {
        const Status st = tensor_check_finite(*p.file->find(name), "m.safetensors");
        CHECK(st.code() == Code::weights_format);
        CHECK(st.message().find(std::string("'") + name + "'") != std::string::npos);
        CHECK(st.message().find("element 1") != std::string::npos);
    }
}

TEST_CASE("WeightStore") {
    TempDir d;
    std::unique_ptr<WeightStore> ws;
    const std::string shard1 = make_file({{"a", "F32", {2}, f32s({1, 2})}, {"b", "F16", {1}, u16s({0x3C00})}});
    const std::string shard2 = make_file({{"c", "BF16", {2, 1}, u16s({0x3F80, 0x4000})}, {"unlisted", "F32", {1}, f32s({9})}});
    const std::string index =
        "{\"metadata\":{\"total_size\":18},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
        "\"b\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}";

    SUBCASE("single file") {
        d.put("model.safetensors", sample());
        Status st = WeightStore::open_dir(d.path, &ws);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        CHECK(ws->size() == 4);
        REQUIRE(ws->find("w") != nullptr);
        CHECK(f32_at(ws->find("w"), 2) == 3.f);
        CHECK(ws->find("nope") == nullptr);
        CHECK(ws->file_of("w") == d.path + "/model.safetensors");
        CHECK(ws->file_of("nope").empty());
        // A trailing slash on the directory is fine.
        REQUIRE(WeightStore::open_dir(d.path + "/", &ws).ok());
        CHECK(ws->size() == 4);
    }
    SUBCASE("sharded") {
        d.put("model-00001-of-00002.safetensors", shard1);
        d.put("model-00002-of-00002.safetensors", shard2);
        d.put("model.safetensors.index.json", index);
        d.put("model.safetensors", "garbage: ignored when an index exists");
        d.put("stray.safetensors", "garbage");
        Status st = WeightStore::open_dir(d.path, &ws);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        CHECK(ws->size() == 3);
        CHECK(f32_at(ws->find("a"), 1) == 2.f);
        CHECK(ws->find("b")->dtype == DType::f16);
        CHECK(ws->find("c")->shape == std::vector<int64_t>{2, 1});
        CHECK(ws->find("unlisted") == nullptr);
        CHECK(ws->file_of("a") == d.path + "/model-00001-of-00002.safetensors");
        CHECK(ws->file_of("b") == ws->file_of("a"));
        CHECK(ws->file_of("c") == d.path + "/model-00002-of-00002.safetensors");
    }
    SUBCASE("empty weight_map") {
        d.put("model.safetensors.index.json", "{\"weight_map\":{}}");
        REQUIRE(WeightStore::open_dir(d.path, &ws).ok());
        CHECK(ws->size() == 0);
    }
    SUBCASE("missing shard") {
        d.put("model-00001-of-00002.safetensors", shard1);
        d.put("model.safetensors.index.json", index);
        Status st = WeightStore::open_dir(d.path, &ws);
        CHECK(st.code() == Code::io);
        CHECK(st.message().find("model-00002-of-00002.safetensors") != std::string::npos);
        CHECK(ws == nullptr);
    }
    SUBCASE("index names a tensor its shard lacks") {
        d.put("model-00001-of-00002.safetensors", shard1);
        d.put("model-00002-of-00002.safetensors", shard2);
        d.put("model.safetensors.index.json",
              "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00001-of-00002.safetensors\"}}");
        Status st = WeightStore::open_dir(d.path, &ws);
        CHECK(st.code() == Code::tensor_missing);
        CHECK(st.message().find("'c'") != std::string::npos);
        CHECK(st.message().find("model-00001-of-00002.safetensors") != std::string::npos);
        CHECK(ws == nullptr);
    }
    SUBCASE("a bad shard reports its own error") {
        d.put("model-00001-of-00002.safetensors", shard1);
        d.put("model-00002-of-00002.safetensors", shard2.substr(0, shard2.size() - 2));
        d.put("model.safetensors.index.json", index);
        Status st = WeightStore::open_dir(d.path, &ws);
        CHECK(st.code() == Code::weights_truncated);
        CHECK(st.message().rfind(d.path + "/model-00002-of-00002.safetensors: ", 0) == 0);
    }
    SUBCASE("bad index JSON") {
        d.put("model-00001-of-00002.safetensors", shard1);
        for (const char* bad : {"", "{", "not json", "[]", "\"weight_map\"", "{}", "{\"weight_map\":[]}",
                                "{\"weight_map\":\"a\"}", "{\"weight_map\":null}",
                                "{\"weight_map\":{\"a\":1}}", "{\"weight_map\":{\"a\":null}}",
                                "{\"weight_map\":{\"a\":[\"model-00001-of-00002.safetensors\"]}}",
                                "{\"weight_map\":{\"a\":\"\"}}", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}",
                                "{\"weight_map\":{\"a\":\"../model.safetensors\"}}", "{\"weight_map\":{\"a\":\"x/../../y\"}}"}) {
            CAPTURE(bad);
            d.put("model.safetensors.index.json", bad);
            Status st = WeightStore::open_dir(d.path, &ws);
            CHECK(st.code() == Code::weights_format);
            CHECK(st.message().rfind(d.path + "/model.safetensors.index.json: ", 0) == 0);
            CHECK(ws == nullptr);
        }
    }
    SUBCASE("missing directory, empty directory, missing weights") {
        CHECK(WeightStore::open_dir(d.path + "/nope", &ws).code() == Code::io);
        CHECK(WeightStore::open_dir(d.put("file", "x"), &ws).code() == Code::io);
        Status st = WeightStore::open_dir(d.path, &ws);
        CHECK(st.code() == Code::io);
        CHECK(st.message().find("model.safetensors") != std::string::npos);
        CHECK(ws == nullptr);
    }
    SUBCASE("bad single file") {
        d.put("model.safetensors", raw("{\"x\":" + entry("F64", "[1]", "[0,8]") + "}", std::string(8, '\0')));
        Status st = WeightStore::open_dir(d.path, &ws);
        CHECK(st.code() == Code::dtype);
        CHECK(st.message().rfind(d.path + "/model.safetensors: tensor 'x': dtype 'F64'", 0) == 0);
    }
}
