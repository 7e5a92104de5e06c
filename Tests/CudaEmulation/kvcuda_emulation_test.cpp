// Runs every kernel of Sources/CKVCuda/kernels/kvcuda.cu thread by thread on the CPU (see
// kvcuda_emulate.hpp) and compares its results with a double-precision scalar reference written
// independently here: its own f16 / bf16 conversions, GGUF quantizers and dequantizers, softmax
// attention. Every output buffer starts as a NaN (or byte) sentinel, so an entry a kernel fails to
// write, or writes that should not be written, shows up too.
//
//   bash Scripts/cuda_emulation.sh [substring]     (only the cases whose name contains it)
//
// Prints one line per case and exits nonzero when any case fails.

#include "../../Sources/CKVCuda/kernels/kvcuda.cu"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

int failures = 0, cases = 0;
const char *filter = nullptr;  // run only the cases whose name contains it (argv[1])

bool wanted(const std::string &name) { return !filter || name.find(filter) != std::string::npos; }
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

void report(const std::string &name, const std::string &errors, bool ok) {
    std::printf("%-52s %s %s\n", name.c_str(), errors.c_str(), ok ? "PASS" : "FAIL");
    std::fflush(stdout);
    cases++;
    if (!ok) failures++;
}

std::string fmt(const char *label, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s %.2e", label, v);
    return buf;
}

// ------------------------------------------------------------------------------ bytes

/// 64-byte aligned bytes (rows of f32 / f16 / bf16 must be 16-byte aligned).
struct Bytes {
    std::unique_ptr<unsigned char, void (*)(void *)> p{nullptr, std::free};
    size_t size = 0;
    Bytes() = default;
    explicit Bytes(size_t n, unsigned char fill = 0) : size(n) {
        p.reset((unsigned char *)std::aligned_alloc(64, (n + 63) / 64 * 64 + 64));
        std::memset(p.get(), fill, (n + 63) / 64 * 64 + 64);
    }
    unsigned char *data() const { return p.get(); }
    unsigned long long address() const { return (unsigned long long)(uintptr_t)p.get(); }
};

// ------------------------------------------------------------------------------ reference numbers

double ref_f16(uint16_t h) {
    const int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? std::numeric_limits<double>::quiet_NaN() : kInf;
    else if (e == 0) v = std::ldexp((double)m, -24);
    else v = std::ldexp(1.0 + m / 1024.0, e - 15);
    return sign ? -v : v;
}

uint16_t to_f16(float f) {  // round to nearest even
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000, a = x & 0x7fffffff;
    if (a >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000 ? 0x200 : 0));
    if (a >= 0x477ff000) return (uint16_t)(sign | 0x7c00);  // rounds past 65504
    if (a < 0x38800000) {                                    // below 2^-14: subnormal (or zero)
        const double v = std::nearbyint(std::fabs((double)f) * 16777216.0);
        return (uint16_t)(sign | (uint32_t)v);
    }
    uint32_t h = (((a >> 23) - 112) << 10) | ((a & 0x7fffff) >> 13);
    const uint32_t rest = a & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

double ref_bf16(uint16_t h) {
    const uint32_t x = (uint32_t)h << 16;
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

uint16_t to_bf16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }

const int kTypes[] = {KVCU_F32, KVCU_F16, KVCU_BF16, KVCU_Q8_0, KVCU_Q4_0, KVCU_Q4_1, KVCU_Q2_1};

const char *type_name(int t) {
    switch (t) {
    case KVCU_F32: return "f32";
    case KVCU_F16: return "f16";
    case KVCU_BF16: return "bf16";
    case KVCU_Q8_0: return "q8_0";
    case KVCU_Q4_0: return "q4_0";
    case KVCU_Q4_1: return "q4_1";
    case KVCU_Q2_1: return "q2_1";
    }
    return "?";
}

bool is_float_type(int t) { return t == KVCU_F32 || t == KVCU_F16 || t == KVCU_BF16; }

size_t row_bytes(int t, int d) {
    switch (t) {
    case KVCU_F32: return 4 * (size_t)d;
    case KVCU_F16: case KVCU_BF16: return 2 * (size_t)d;
    case KVCU_Q8_0: return d / 32 * 34;
    case KVCU_Q4_0: return d / 32 * 18;
    case KVCU_Q4_1: return d / 32 * 20;
    case KVCU_Q2_1: return d / 32 * 12;
    }
    std::abort();
}

/// Writes row x[0 ..< d] as type t (GGUF quantizers for the block types).
void encode_row(int t, const float *x, int d, unsigned char *out) {
    switch (t) {
    case KVCU_F32: std::memcpy(out, x, 4 * (size_t)d); return;
    case KVCU_F16: for (int i = 0; i < d; i++) put16(out + 2 * i, to_f16(x[i])); return;
    case KVCU_BF16: for (int i = 0; i < d; i++) put16(out + 2 * i, to_bf16(x[i])); return;
    default: break;
    }
    for (int b = 0; b < d / 32; b++) {
        const float *v = x + 32 * b;
        float amax = 0, maxv = 0, lo = v[0], hi = v[0];
        for (int i = 0; i < 32; i++) {
            if (std::fabs(v[i]) > amax) { amax = std::fabs(v[i]); maxv = v[i]; }
            lo = std::min(lo, v[i]);
            hi = std::max(hi, v[i]);
        }
        if (t == KVCU_Q8_0) {
            unsigned char *o = out + 34 * b;
            const float dd = amax / 127.0f, id = dd ? 1.0f / dd : 0.0f;
            put16(o, to_f16(dd));
            for (int i = 0; i < 32; i++) o[2 + i] = (unsigned char)(signed char)std::lround(v[i] * id);
        } else if (t == KVCU_Q4_0) {
            unsigned char *o = out + 18 * b;
            const float dd = maxv / -8.0f, id = dd ? 1.0f / dd : 0.0f;
            put16(o, to_f16(dd));
            for (int i = 0; i < 16; i++) {
                const int q0 = std::min(15, (int)(v[i] * id + 8.5f)), q1 = std::min(15, (int)(v[i + 16] * id + 8.5f));
                o[2 + i] = (unsigned char)(q0 | (q1 << 4));
            }
        } else if (t == KVCU_Q4_1 || t == KVCU_Q2_1) {
            const int levels = t == KVCU_Q4_1 ? 15 : 3;
            unsigned char *o = out + (t == KVCU_Q4_1 ? 20 : 12) * b;
            const float dd = (hi - lo) / levels, id = dd ? 1.0f / dd : 0.0f;
            put16(o, to_f16(dd));
            put16(o + 2, to_f16(lo));
            std::memset(o + 4, 0, t == KVCU_Q4_1 ? 16 : 8);
            for (int i = 0; i < 32; i++) {
                const int q = std::min(levels, (int)((v[i] - lo) * id + 0.5f));
                if (t == KVCU_Q4_1) o[4 + (i & 15)] |= (unsigned char)(q << (i < 16 ? 0 : 4));
                else o[4 + i % 8] |= (unsigned char)(q << (2 * (i / 8)));
            }
        } else {
            std::abort();
        }
    }
}

/// The reference's reading of row `in` of type t, in double.
void decode_row(int t, const unsigned char *in, int d, double *out) {
    for (int i = 0; i < d; i++) {
        switch (t) {
        case KVCU_F32: { float f; std::memcpy(&f, in + 4 * i, 4); out[i] = f; break; }
        case KVCU_F16: out[i] = ref_f16(get16(in + 2 * i)); break;
        case KVCU_BF16: out[i] = ref_bf16(get16(in + 2 * i)); break;
        case KVCU_Q8_0: {
            const unsigned char *b = in + 34 * (i / 32);
            out[i] = ref_f16(get16(b)) * (double)(signed char)b[2 + i % 32];
            break;
        }
        case KVCU_Q4_0: {
            const unsigned char *b = in + 18 * (i / 32);
            const int e = i % 32, q = e < 16 ? (b[2 + e] & 15) : (b[2 + e - 16] >> 4);
            out[i] = ref_f16(get16(b)) * (q - 8);
            break;
        }
        case KVCU_Q4_1: {
            const unsigned char *b = in + 20 * (i / 32);
            const int e = i % 32, q = e < 16 ? (b[4 + e] & 15) : (b[4 + e - 16] >> 4);
            out[i] = ref_f16(get16(b)) * q + ref_f16(get16(b + 2));
            break;
        }
        case KVCU_Q2_1: {
            const unsigned char *b = in + 12 * (i / 32);
            const int e = i % 32, q = (b[4 + e % 8] >> (2 * (e / 8))) & 3;
            out[i] = ref_f16(get16(b)) * q + ref_f16(get16(b + 2));
            break;
        }
        default: std::abort();
        }
    }
}

// ------------------------------------------------------------------------------ test data

std::mt19937_64 rng(20240611);

float normal(float sigma = 1.0f) { return std::normal_distribution<float>(0.0f, sigma)(rng); }
int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

/// A segment as the host would hand it to a kernel, with the reference's view of its rows.
struct Segment {
    int head = 0, count = 0, firstRow = 0, keyType = KVCU_F16, valueType = KVCU_F16;
    int keyStride = 0, valueStride = 0;
    Bytes keys, values, positions, logCounts;
    std::vector<double> refKeys, refValues, refLog;  // count * d, count * d, count
    std::vector<int> pos;
    kvcu_segment desc{};
};

/// `padding`: extra bytes per row past the row's size (rows of float types stay 16-byte aligned).
Segment make_segment(int head, int firstRow, int count, int d, int keyType, int valueType, bool logCounts,
                     std::vector<int> pos, int padding) {
    Segment s;
    s.head = head; s.count = count; s.firstRow = firstRow; s.keyType = keyType; s.valueType = valueType;
    auto stride = [&](int t) {
        size_t b = row_bytes(t, d);
        if (is_float_type(t)) b = (b + 15) / 16 * 16 + (padding ? 16 : 0);
        else b += padding;  // block rows need no alignment: exercise odd strides
        return (int)b;
    };
    s.keyStride = stride(keyType);
    s.valueStride = stride(valueType);
    s.keys = Bytes((size_t)std::max(count, 1) * s.keyStride, 0xcd);
    s.values = Bytes((size_t)std::max(count, 1) * s.valueStride, 0xcd);
    s.refKeys.resize((size_t)count * d);
    s.refValues.resize((size_t)count * d);
    std::vector<float> x(d);
    for (int r = 0; r < count; r++) {
        const float offset = normal(0.3f);  // rows with a nonzero mean exercise the minimum of q4_1 / q2_1
        for (int c = 0; c < d; c++) x[c] = normal() + offset;
        encode_row(keyType, x.data(), d, s.keys.data() + (size_t)r * s.keyStride);
        decode_row(keyType, s.keys.data() + (size_t)r * s.keyStride, d, &s.refKeys[(size_t)r * d]);
        for (int c = 0; c < d; c++) x[c] = normal(2.0f) + offset;
        encode_row(valueType, x.data(), d, s.values.data() + (size_t)r * s.valueStride);
        decode_row(valueType, s.values.data() + (size_t)r * s.valueStride, d, &s.refValues[(size_t)r * d]);
    }
    if (pos.empty()) for (int r = 0; r < count; r++) pos.push_back(firstRow + r);
    s.pos = pos;
    s.positions = Bytes(4 * (size_t)std::max(count, 1));
    std::memcpy(s.positions.data(), pos.data(), 4 * (size_t)count);
    s.refLog.assign(count, 0.0);
    if (logCounts) {
        s.logCounts = Bytes(4 * (size_t)std::max(count, 1));
        for (int r = 0; r < count; r++) {
            const float lc = std::log((float)uniform(1, 5));
            std::memcpy(s.logCounts.data() + 4 * r, &lc, 4);
            s.refLog[r] = lc;
        }
    }
    s.desc.keys = s.keys.address();
    s.desc.values = s.values.address();
    s.desc.positions = s.positions.address();
    s.desc.log_counts = logCounts ? s.logCounts.address() : 0;
    s.desc.count = count;
    s.desc.key_type = keyType;
    s.desc.value_type = valueType;
    s.desc.key_stride = s.keyStride;
    s.desc.value_stride = s.valueStride;
    s.desc.head = head;
    s.desc.first_row = firstRow;
    s.desc.reserved = 0;
    return s;
}

/// Ascending positions: `count` of them from `start`, steps drawn from 1 ..< maxStep + 1.
std::vector<int> ascending(int count, int start, int maxStep) {
    std::vector<int> p;
    int v = start;
    for (int i = 0; i < count; i++) { p.push_back(v); v += uniform(1, maxStep); }
    return p;
}

/// `p` with its last 5 positions raised (staying ascending) past `last`.
std::vector<int> run_past(std::vector<int> p, int last) {
    const int n = (int)p.size();
    for (int k = n - 5; k < n; k++) p[k] = std::max({p[k], p[k - 1] + 1, last + 1 + (k - (n - 5))});
    return p;
}

/// The reference's view of one KV head: the concatenation of its segments' rows.
struct HeadRows {
    std::vector<const double *> keys, values;
    std::vector<double> logc;
    std::vector<int> pos;
};

std::vector<HeadRows> head_rows(const std::vector<Segment> &segs, int kvHeads, int d) {
    std::vector<HeadRows> out(kvHeads);
    for (const Segment &s : segs)
        for (int r = 0; r < s.count; r++) {
            HeadRows &h = out[s.head];
            if ((int)h.keys.size() != s.firstRow + r) { std::fprintf(stderr, "test setup: first_row mismatch\n"); std::abort(); }
            h.keys.push_back(&s.refKeys[(size_t)r * d]);
            h.values.push_back(&s.refValues[(size_t)r * d]);
            h.logc.push_back(s.refLog[r]);
            h.pos.push_back(s.pos[r]);
        }
    return out;
}

/// Softmax attention of query q over the rows of `h` that `visible` admits: output, lse
/// (-inf with none visible) and the probability of every row (0 where hidden).
template <class Visible>
void reference_attention(const HeadRows &h, const float *q, int d, double scale, Visible visible,
                         std::vector<double> &out, double &lse, std::vector<double> &prob) {
    const size_t n = h.keys.size();
    std::vector<double> s(n, -kInf);
    double m = -kInf;
    for (size_t j = 0; j < n; j++) {
        if (!visible(h.pos[j])) continue;
        double dot = 0;
        for (int c = 0; c < d; c++) dot += (double)q[c] * h.keys[j][c];
        s[j] = dot * scale + h.logc[j];
        m = std::max(m, s[j]);
    }
    out.assign(d, 0.0);
    prob.assign(n, 0.0);
    if (m == -kInf) { lse = -kInf; return; }
    double total = 0;
    for (size_t j = 0; j < n; j++) if (s[j] > -kInf) total += std::exp(s[j] - m);
    lse = m + std::log(total);
    for (size_t j = 0; j < n; j++) {
        if (s[j] == -kInf) continue;
        prob[j] = std::exp(s[j] - lse);
        for (int c = 0; c < d; c++) out[c] += prob[j] * h.values[j][c];
    }
}

double max_abs_value(const std::vector<Segment> &segs) {
    double m = 1.0;
    for (const Segment &s : segs) for (double v : s.refValues) m = std::max(m, std::fabs(v));
    return m;
}

// ------------------------------------------------------------------------------ decode

/// Decode attention over KV heads whose rows `segs` describe (sorted by head): partial, merge and
/// column sums, against the reference.
void decode_case(const std::string &name, int kvHeads, int g, int d, std::vector<Segment> &segs) {
    if (!wanted(name)) return;
    const int heads = kvHeads * g;
    std::vector<kvcu_segment> descs;
    for (Segment &s : segs) descs.push_back(s.desc);
    std::vector<kvcu_item> items;
    std::vector<int> itemFirst(kvHeads + 1, 0);
    for (int m = 0; m < kvHeads; m++) {
        itemFirst[m] = (int)items.size();
        for (size_t si = 0; si < segs.size(); si++)
            if (segs[si].head == m)
                for (int a = 0; a < segs[si].count; a += KVCU_CHUNK)
                    items.push_back({(int)si, a, std::min(segs[si].count, a + KVCU_CHUNK), 0});
    }
    itemFirst[kvHeads] = (int)items.size();
    std::vector<float> query((size_t)heads * d);
    for (float &x : query) x = normal(1.5f);
    const float scale = 1.0f / std::sqrt((float)d);
    const std::vector<HeadRows> rows = head_rows(segs, kvHeads, d);
    int maxRows = 0;
    for (const HeadRows &h : rows) maxRows = std::max(maxRows, (int)h.keys.size());
    const int stride = maxRows + 5;

    const size_t nItems = std::max<size_t>(items.size(), 1);
    std::vector<float> partials(nItems * g * (d + 2), kNaN), scores(nItems * g * KVCU_CHUNK, kNaN);
    std::vector<float> output((size_t)heads * d, kNaN), lse(heads, kNaN), sums((size_t)kvHeads * stride, kNaN);
    if (!items.empty())
        emu_launch(dim3((unsigned)items.size()), dim3(KVCU_THREADS), [&] {
            kvcu_decode_partial(descs.data(), items.data(), query.data(), g, d, scale, partials.data(), scores.data());
        });
    emu_launch(dim3(heads), dim3(KVCU_THREADS), [&] {
        kvcu_decode_merge(itemFirst.data(), g, d, partials.data(), output.data(), lse.data());
    });
    if (!items.empty())
        emu_launch(dim3((unsigned)items.size()), dim3(KVCU_THREADS), [&] {
            kvcu_decode_column_sums(descs.data(), items.data(), g, scores.data(), lse.data(), sums.data(), stride);
        });

    double outErr = 0, lseErr = 0, sumErr = 0;
    bool exact = true;  // empty heads, untouched entries
    const double vscale = max_abs_value(segs);
    for (int m = 0; m < kvHeads; m++) {
        const int n = (int)rows[m].keys.size();
        std::vector<double> colRef(n, 0.0);
        for (int hh = 0; hh < g; hh++) {
            const int h = m * g + hh;
            std::vector<double> out, prob;
            double l;
            reference_attention(rows[m], &query[(size_t)h * d], d, scale, [](int) { return true; }, out, l, prob);
            for (int c = 0; c < d; c++) {
                const float got = output[(size_t)h * d + c];
                if (n == 0) exact &= got == 0.0f;
                outErr = std::max(outErr, std::isnan(got) ? kInf : std::fabs(got - out[c]) / vscale);
            }
            if (n == 0) exact &= lse[h] == -std::numeric_limits<float>::infinity();
            else lseErr = std::max(lseErr, std::isnan(lse[h]) ? kInf : std::fabs(lse[h] - l));
            for (int j = 0; j < n; j++) colRef[j] += prob[j];
        }
        for (int j = 0; j < stride; j++) {
            const float got = sums[(size_t)m * stride + j];
            if (j < n) sumErr = std::max(sumErr, std::isnan(got) ? kInf : std::fabs(got - colRef[j]));
            else exact &= std::isnan(got);  // past the head's rows: never written
        }
    }
    const double tol = 1e-4;
    report(name, fmt("out", outErr) + " " + fmt("lse", lseErr) + " " + fmt("colsum", sumErr) + (exact ? "" : " (empty/untouched wrong)"),
           outErr < tol && lseErr < tol && sumErr < tol && exact);
}

void decode_tests() {
    for (int d : {64, 128, 256, 96}) {
        for (int ki = 0; ki < 7; ki++) {
            // Every type as keys and as values at every head dimension: values are the key type
            // shifted by a step that changes with d, so the pairs vary.
            const int kt = kTypes[ki], vt = kTypes[(ki + 1 + (d / 32) % 5) % 7];
            for (int pass = 0; pass < 2; pass++) {
                const int keyType = pass ? vt : kt, valueType = pass ? kt : vt;
                // KV head 0: 700 rows in two segments (300 + 400, both crossing the chunk
                // boundary), the second with log counts; KV head 1: one row; KV head 2: none.
                std::vector<Segment> segs;
                segs.push_back(make_segment(0, 0, 300, d, keyType, valueType, false, {}, 0));
                segs.push_back(make_segment(0, 300, 400, d, keyType, valueType, true, {}, 1));
                segs.push_back(make_segment(1, 0, 1, d, keyType, valueType, false, {}, 1));
                char name[96];
                std::snprintf(name, sizeof name, "decode d=%d g=3 k=%s v=%s", d, type_name(keyType), type_name(valueType));
                decode_case(name, 3, 3, d, segs);
            }
        }
    }
    {   // Mixed types inside one head; the largest group (g = 8) at the largest head dimension.
        std::vector<Segment> segs;
        segs.push_back(make_segment(0, 0, 257, 256, KVCU_Q4_1, KVCU_BF16, true, {}, 1));
        segs.push_back(make_segment(0, 257, 40, 256, KVCU_F32, KVCU_Q2_1, false, {}, 0));
        segs.push_back(make_segment(0, 297, 512, 256, KVCU_F16, KVCU_Q8_0, false, {}, 0));
        decode_case("decode d=256 g=8 mixed types, 3 segments", 1, 8, 256, segs);
    }
    {   // g = 1, a small head dimension (many row groups), more KV heads.
        std::vector<Segment> segs;
        for (int m = 0; m < 4; m++) segs.push_back(make_segment(m, 0, 37 + 150 * m, 32, kTypes[m], kTypes[6 - m], m == 2, {}, m & 1));
        decode_case("decode d=32 g=1 4 heads", 4, 1, 32, segs);
    }
}

// ------------------------------------------------------------------------------ prefill

void prefill_case(const std::string &name, int d, int keyType, int valueType) {
    if (!wanted(name)) return;
    const int kvHeads = 2, g = 3, heads = kvHeads * g, T = 70;
    // Query positions with gaps, starting at 3.
    const std::vector<int> qpos = ascending(T, 3, 3);
    const int lastQ = qpos.back();
    // KV head 0: an older run (positions 0 .. with gaps, log counts) then the recent rows, whose
    // positions run past every query's. KV head 1: one segment starting at 5 (query 0 at
    // position 3 sees none of it), also running past the queries.
    std::vector<Segment> segs;
    std::vector<int> p0 = ascending(45, 0, 2);
    std::vector<int> p1 = run_past(ascending(100, p0.back() + 1, 2), lastQ);
    std::vector<int> p2 = run_past(ascending(90, 5, 3), lastQ);
    segs.push_back(make_segment(0, 0, 45, d, keyType, valueType, true, p0, 1));
    segs.push_back(make_segment(0, 45, 100, d, keyType, valueType, false, p1, 0));
    segs.push_back(make_segment(1, 0, 90, d, keyType, valueType, false, p2, 1));
    std::vector<kvcu_segment> descs;
    for (Segment &s : segs) descs.push_back(s.desc);
    const std::vector<int> segmentFirst = {0, 2, 3};
    const int queryStride = heads * d + 24;
    std::vector<float> queries((size_t)T * queryStride);
    for (float &x : queries) x = normal(1.5f);
    const float scale = 1.0f / std::sqrt((float)d);
    const std::vector<HeadRows> rows = head_rows(segs, kvHeads, d);
    int maxSegRows = 0, maxRows = 0;
    for (const Segment &s : segs) maxSegRows = std::max(maxSegRows, s.count);
    for (const HeadRows &h : rows) maxRows = std::max(maxRows, (int)h.keys.size());
    const int stride = maxRows + 3;

    std::vector<float> output((size_t)T * heads * d, kNaN), lse((size_t)T * heads, kNaN), sums((size_t)kvHeads * stride, kNaN);
    emu_launch(dim3((T + KVCU_TILE - 1) / KVCU_TILE, heads), dim3(KVCU_THREADS), [&] {
        kvcu_prefill(descs.data(), segmentFirst.data(), queries.data(), T, queryStride, qpos.data(), heads, g, d, scale,
                     output.data(), lse.data());
    });
    emu_launch(dim3((maxSegRows + KVCU_TILE - 1) / KVCU_TILE, (unsigned)segs.size()), dim3(KVCU_THREADS), [&] {
        kvcu_prefill_column_sums(descs.data(), queries.data(), T, queryStride, qpos.data(), heads, g, d, scale, lse.data(),
                                 sums.data(), stride);
    });

    double outErr = 0, lseErr = 0, sumErr = 0;
    bool exact = true;
    int blind = 0;  // (query, head) pairs that see no row
    const double vscale = max_abs_value(segs);
    for (int m = 0; m < kvHeads; m++) {
        const int n = (int)rows[m].keys.size();
        std::vector<double> colRef(n, 0.0);
        for (int hh = 0; hh < g; hh++) {
            const int h = m * g + hh;
            for (int t = 0; t < T; t++) {
                std::vector<double> out, prob;
                double l;
                const int qp = qpos[t];
                reference_attention(rows[m], &queries[(size_t)t * queryStride + h * d], d, scale,
                                    [qp](int p) { return p <= qp; }, out, l, prob);
                const float *got = &output[((size_t)t * heads + h) * d];
                const float gotLse = lse[(size_t)t * heads + h];
                if (l == -kInf) {
                    blind++;
                    for (int c = 0; c < d; c++) exact &= got[c] == 0.0f;
                    exact &= gotLse == -std::numeric_limits<float>::infinity();
                } else {
                    for (int c = 0; c < d; c++) outErr = std::max(outErr, std::isnan(got[c]) ? kInf : std::fabs(got[c] - out[c]) / vscale);
                    lseErr = std::max(lseErr, std::isnan(gotLse) ? kInf : std::fabs(gotLse - l));
                }
                for (int j = 0; j < n; j++) colRef[j] += prob[j];
            }
        }
        for (int j = 0; j < stride; j++) {
            const float got = sums[(size_t)m * stride + j];
            // Column sums add up to T * g probabilities: compare relative to the row's scale.
            if (j < n) sumErr = std::max(sumErr, std::isnan(got) ? kInf : std::fabs(got - colRef[j]) / std::max(1.0, colRef[j]));
            else exact &= std::isnan(got);
        }
    }
    if (blind == 0) exact = false;  // the setup must exercise a query that sees nothing
    const double tol = 1e-4;
    report(name, fmt("out", outErr) + " " + fmt("lse", lseErr) + " " + fmt("colsum", sumErr) + (exact ? "" : " (empty/untouched wrong)"),
           outErr < tol && lseErr < tol && sumErr < tol && exact);
}

void prefill_tests() {
    const int pairs[][2] = {{KVCU_F16, KVCU_F16}, {KVCU_F32, KVCU_F32}, {KVCU_Q8_0, KVCU_Q8_0}, {KVCU_F16, KVCU_Q8_0},
                            {KVCU_Q8_0, KVCU_F32}, {KVCU_BF16, KVCU_Q4_0}, {KVCU_Q4_1, KVCU_Q2_1}};
    for (int d : {64, 128})
        for (const auto &p : pairs) {
            char name[96];
            std::snprintf(name, sizeof name, "prefill d=%d g=3 T=70 k=%s v=%s", d, type_name(p[0]), type_name(p[1]));
            prefill_case(name, d, p[0], p[1]);
        }
}

// ------------------------------------------------------------------------------ observe

void observe_case(const std::string &name, int d, int keyType) {
    if (!wanted(name)) return;
    const int kvHeads = 3, g = 2, heads = kvHeads * g, Q = 5;
    // Query positions: the first sees no row of KV head 1 (which starts at 40).
    const std::vector<int> qpos = {12, 90, 150, 260, 400};
    std::vector<Segment> segs;
    segs.push_back(make_segment(0, 0, 130, d, keyType, keyType, true, ascending(130, 0, 2), 0));
    segs.push_back(make_segment(0, 130, 150, d, keyType, keyType, false, ascending(150, 300, 2), 1));
    segs.push_back(make_segment(1, 0, 200, d, keyType, keyType, false, ascending(200, 40, 3), 1));
    // KV head 2: no rows (its probability rows stay untouched).
    std::vector<kvcu_segment> descs;
    for (Segment &s : segs) descs.push_back(s.desc);
    const int queryStride = heads * d + 8;
    std::vector<float> queries((size_t)Q * queryStride);
    for (float &x : queries) x = normal(1.5f);
    const float scale = 1.0f / std::sqrt((float)d);
    const std::vector<HeadRows> rows = head_rows(segs, kvHeads, d);
    std::vector<int> lengths(kvHeads);
    int maxSegRows = 0, maxRows = 0;
    for (int m = 0; m < kvHeads; m++) lengths[m] = (int)rows[m].keys.size(), maxRows = std::max(maxRows, lengths[m]);
    for (const Segment &s : segs) maxSegRows = std::max(maxSegRows, s.count);
    const int outStride = maxRows + 7;

    std::vector<float> x((size_t)heads * Q * outStride, kNaN);
    emu_launch(dim3((maxSegRows + KVCU_THREADS - 1) / KVCU_THREADS, (unsigned)segs.size()), dim3(KVCU_THREADS), [&] {
        kvcu_observe_logits(descs.data(), queries.data(), Q, queryStride, qpos.data(), g, d, scale, x.data(), outStride);
    });
    const std::vector<float> logits = x;
    emu_launch(dim3(heads * Q), dim3(KVCU_THREADS), [&] {
        kvcu_softmax_rows(x.data(), outStride, lengths.data(), g * Q);
    });

    double logitErr = 0, probErr = 0;
    bool exact = true;
    int blindRows = 0;
    for (int h = 0; h < heads; h++) {
        const int m = h / g, n = lengths[m];
        for (int t = 0; t < Q; t++) {
            std::vector<double> out, prob;
            double l;
            const int qp = qpos[t];
            const float *q = &queries[(size_t)t * queryStride + h * d];
            reference_attention(rows[m], q, d, scale, [qp](int p) { return p <= qp; }, out, l, prob);
            if (n > 0 && l == -kInf) blindRows++;
            const size_t base = ((size_t)h * Q + t) * outStride;
            for (int j = 0; j < outStride; j++) {
                const float lg = logits[base + j], pr = x[base + j];
                if (j >= n) { exact &= std::isnan(lg) && std::isnan(pr); continue; }
                if (rows[m].pos[j] > qp) {
                    exact &= lg == -std::numeric_limits<float>::infinity() && pr == 0.0f;  // masked: exactly 0
                    continue;
                }
                double dot = 0;
                for (int c = 0; c < d; c++) dot += (double)q[c] * rows[m].keys[j][c];
                const double lref = dot * scale + rows[m].logc[j];
                logitErr = std::max(logitErr, std::isnan(lg) ? kInf : std::fabs(lg - lref));
                probErr = std::max(probErr, std::isnan(pr) ? kInf : std::fabs(pr - prob[j]));
            }
        }
    }
    if (blindRows == 0) exact = false;
    const double tol = 1e-4;
    report(name, fmt("logit", logitErr) + " " + fmt("prob", probErr) + (exact ? "" : " (masked/untouched wrong)"),
           logitErr < tol && probErr < 1e-5 && exact);
}

void observe_tests() {
    for (int d : {64, 128, 256})
        for (int kt : {KVCU_F16, KVCU_F32, KVCU_BF16, KVCU_Q8_0, KVCU_Q4_0, KVCU_Q2_1}) {
            if (d == 256 && kt != KVCU_F16 && kt != KVCU_Q4_0) continue;
            char name[96];
            std::snprintf(name, sizeof name, "observe d=%d g=2 Q=5 k=%s", d, type_name(kt));
            observe_case(name, d, kt);
        }
}

// ------------------------------------------------------------------------------ gather

void gather_case(const std::string &name, int rowBytes, int srcStride, int dstStride, int srcOffset, int dstOffset,
                 int count) {
    if (!wanted(name)) return;
    const int srcRows = 97;
    Bytes src((size_t)srcRows * srcStride + srcOffset), dst((size_t)count * dstStride + dstOffset + 64, 0xab);
    for (size_t i = 0; i < src.size; i++) src.data()[i] = (unsigned char)uniform(0, 255);
    std::vector<int> rows(count);
    for (int &r : rows) r = uniform(0, srcRows - 1);
    emu_launch(dim3((count + 63) / 64), dim3(KVCU_THREADS), [&] {
        kvcu_gather_rows(src.data() + srcOffset, srcStride, dst.data() + dstOffset, dstStride, rows.data(), count, rowBytes);
    });
    size_t wrong = 0;
    for (size_t b = 0; b < dst.size; b++) {
        const long long rel = (long long)b - dstOffset;
        unsigned char want = 0xab;
        if (rel >= 0 && rel / dstStride < count && rel % dstStride < rowBytes)
            want = src.data()[srcOffset + (size_t)rows[rel / dstStride] * srcStride + rel % dstStride];
        wrong += dst.data()[b] != want;
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "wrong bytes %zu", wrong);
    report(name, buf, wrong == 0);
}

void gather_tests() {
    gather_case("gather words: row 136 B, strides 144 / 136, 150 rows", 136, 144, 136, 0, 0, 150);
    gather_case("gather words: row 4 B, 64 rows (one full block)", 4, 4, 8, 0, 0, 64);
    gather_case("gather bytes: row 37 B, strides 41 / 40, 150 rows", 37, 41, 40, 0, 0, 150);
    gather_case("gather bytes: row 64 B, source offset 1", 64, 64, 64, 1, 0, 130);
    gather_case("gather bytes: row 64 B, destination offset 2", 64, 64, 68, 0, 2, 65);
    gather_case("gather bytes: row 200 B (> threads), stride 202", 200, 202, 202, 0, 0, 70);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc > 1) filter = argv[1];
    // The reference's own conversions, checked against known values first.
    if (wanted("conversions f16 / bf16 (all 65536 patterns)")) {
        bool ok = ref_f16(0x3c00) == 1.0 && ref_f16(0xc000) == -2.0 && ref_f16(0x0001) == std::ldexp(1.0, -24) &&
                  ref_f16(0x7bff) == 65504.0 && to_f16(1.0f) == 0x3c00 && to_f16(-2.0f) == 0xc000 &&
                  to_f16(std::ldexp(1.0f, -24)) == 0x0001 && to_f16(65504.0f) == 0x7bff && to_bf16(1.0f) == 0x3f80 &&
                  ref_bf16(0xc040) == -3.0;
        // The kernel's converters against the reference's, over every f16 / bf16 bit pattern.
        size_t mismatches = 0;
        for (uint32_t h = 0; h < 65536; h++) {
            const double want = ref_f16((uint16_t)h), got = kvcu_h2f((unsigned short)h);
            if (!(want == got || (std::isnan(want) && std::isnan(got)))) mismatches++;
            const double wantb = ref_bf16((uint16_t)h), gotb = kvcu_bf2f((unsigned short)h);
            if (!(wantb == gotb || (std::isnan(wantb) && std::isnan(gotb)))) mismatches++;
            if (to_f16((float)ref_f16((uint16_t)h)) != h && !std::isnan(ref_f16((uint16_t)h))) mismatches++;
        }
        report("conversions f16 / bf16 (all 65536 patterns)", "mismatches " + std::to_string(mismatches), ok && mismatches == 0);
    }
    decode_tests();
    prefill_tests();
    observe_tests();
    gather_tests();
    if (cases == 0) {
        std::printf("no case matches \"%s\"\n", filter ? filter : "");
        return 2;
    }
    std::printf("%s: %d case%s, %d failure%s\n", failures ? "FAILED" : "ALL PASSED", cases, cases == 1 ? "" : "s", failures,
                failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
