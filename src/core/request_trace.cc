#include "core/request_trace.h"

#include <atomic>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/inference_request.h"
#include "core/inference_response.h"
#include "core/trace_output.h"

namespace flowserve {
namespace {

float HalfToFloat(uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  float v = exp == 0    ? std::ldexp(static_cast<float>(mant), -24)
            : exp == 31 ? (mant ? NAN : INFINITY)
                        : std::ldexp(static_cast<float>(mant | 0x400), exp - 25);
  return (h & 0x8000) ? -v : v;
}

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Triton writes a tensor's elements as one comma-separated string.
std::string ElementsText(const TracedTensor& t) {
  std::string out;
  const char* p = t.bytes.data();
  const size_t n = t.bytes.size();
  auto sep = [&] {
    if (!out.empty()) out += ',';
  };
  if (t.dtype == DataType::kBytes) {
    for (size_t i = 0; i + 4 <= n;) {
      const uint32_t len = Load<uint32_t>(p + i);
      i += 4;
      if (i + len > n) break;
      sep();
      out.append(p + i, len);
      i += len;
    }
    return out;
  }
  const size_t size = DataTypeSize(t.dtype);
  if (size == 0) return out;
  for (size_t i = 0; i + size <= n; i += size) {
    std::string v;
    switch (t.dtype) {
      case DataType::kBool:
        v = p[i] ? "1" : "0";
        break;
      case DataType::kUint8:
        v = std::to_string(Load<uint8_t>(p + i));
        break;
      case DataType::kUint16:
        v = std::to_string(Load<uint16_t>(p + i));
        break;
      case DataType::kUint32:
        v = std::to_string(Load<uint32_t>(p + i));
        break;
      case DataType::kUint64:
        v = std::to_string(Load<uint64_t>(p + i));
        break;
      case DataType::kInt8:
        v = std::to_string(Load<int8_t>(p + i));
        break;
      case DataType::kInt16:
        v = std::to_string(Load<int16_t>(p + i));
        break;
      case DataType::kInt32:
        v = std::to_string(Load<int32_t>(p + i));
        break;
      case DataType::kInt64:
        v = std::to_string(Load<int64_t>(p + i));
        break;
      case DataType::kFp16:
        v = std::to_string(HalfToFloat(Load<uint16_t>(p + i)));
        break;
      case DataType::kBf16: {
        const uint32_t bits = static_cast<uint32_t>(Load<uint16_t>(p + i)) << 16;
        v = std::to_string(Load<float>(reinterpret_cast<const char*>(&bits)));
        break;
      }
      case DataType::kFp32:
        v = std::to_string(Load<float>(p + i));
        break;
      case DataType::kFp64:
        v = std::to_string(Load<double>(p + i));
        break;
      default:
        return out;
    }
    sep();
    out += v;
  }
  return out;
}

template <typename T>
void AppendNumber(std::string& out, T v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

// A JSON string literal as rapidjson's Writer escapes it: the short escapes it knows,
// \u00XX for other control characters, everything else (UTF-8 included) as is.
void AppendJsonString(std::string& out, std::string_view v) {
  static const char kHex[] = "0123456789ABCDEF";
  out += '"';
  size_t plain = 0;  // start of the run not yet copied
  for (size_t i = 0; i < v.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(v[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(v.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xf];
    }
  }
  out.append(v.data() + plain, v.size() - plain);
  out += '"';
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s;
}

}  // namespace

const char* TracePointName(int point) {
  static const char* kNames[kTracePointCount] = {
      "REQUEST_START",        "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
      "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"};
  return point >= 0 && point < kTracePointCount ? kNames[point] : "";
}

uint64_t NextTraceId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

void RequestTrace::CaptureTensors(const char* activity, const std::vector<Tensor>& list) {
  for (const auto& t : list) {
    TracedTensor c{activity, t.name, t.dtype, t.shape, std::string()};
    if (t.data != nullptr) c.bytes.assign(t.data, t.byte_size);
    tensor_records.push_back(std::move(c));
  }
}

void TraceQueued(RequestTrace& trace, int64_t version, uint64_t ns_now,
                 const std::vector<Tensor>& inputs) {
  trace.model_version = version;
  trace.Stamp(kTraceQueueStart, ns_now);
  if (trace.tensors) trace.CaptureTensors("TENSOR_QUEUE_INPUT", inputs);
}

void TraceExecuted(RequestTrace& trace, uint64_t start, uint64_t input_end, uint64_t output_start,
                   uint64_t end, const InferenceResponse& response) {
  trace.Stamp(kTraceComputeStart, start);
  trace.Stamp(kTraceComputeInputEnd, input_end);
  trace.Stamp(kTraceComputeOutputStart, output_start);
  trace.Stamp(kTraceComputeEnd, end);
  if (trace.tensors) trace.CaptureTensors("TENSOR_BACKEND_OUTPUT", response.outputs);
}

std::shared_ptr<RequestTrace> StartChildTrace(const RequestTrace& parent,
                                              const std::string& model_name, uint64_t ns_now) {
  auto child = std::make_shared<RequestTrace>();
  child->id = NextTraceId();
  child->parent_id = parent.id;
  child->model_name = model_name;
  child->timestamps = parent.timestamps;
  child->tensors = parent.tensors;
  child->session = parent.session;
  child->Stamp(kTraceRequestStart, ns_now);
  return child;
}

void FinishTrace(std::shared_ptr<RequestTrace> trace) {
  trace->Stamp(kTraceRequestEnd, NowNs());
  TraceSession* session = trace->session.get();
  session->Submit(std::move(trace));
}

void TraceUntilComplete(InferenceRequest& request) {
  if (!request.trace) return;
  request.on_complete = [trace = request.trace, cb = std::move(request.on_complete)](
                            std::unique_ptr<InferenceResponse> response) mutable {
    const bool final = response->final;  // a decoupled model's request ends with its last
    cb(std::move(response));
    if (final) FinishTrace(std::move(trace));
  };
}

void AppendTraceJson(const RequestTrace& trace, std::string& out) {
  // The record is the same shape every time: written piece by piece into `out`, with
  // numbers formatted in place, so a trace costs the writer thread well under a
  // microsecond. The text is what rapidjson's Writer produced before (Triton's format).
  out += "{\"id\":";
  AppendNumber(out, trace.id);
  out += ",\"model_name\":";
  AppendJsonString(out, trace.model_name);
  out += ",\"model_version\":";
  AppendNumber(out, trace.model_version);
  if (trace.parent_id != 0) {
    out += ",\"parent_id\":";
    AppendNumber(out, trace.parent_id);
  }
  if (trace.timestamps) {
    out += ",\"timestamps\":[";
    bool first = true;
    for (int p = 0; p < kTracePointCount; ++p) {
      if (trace.ns[p] == 0) continue;
      out += first ? "{\"name\":\"" : ",{\"name\":\"";
      first = false;
      out += TracePointName(p);
      out += "\",\"ns\":";
      AppendNumber(out, trace.ns[p]);
      out += '}';
    }
    out += ']';
  }
  out += '}';
  for (const auto& t : trace.tensor_records) {
    out += ",{\"id\":";
    AppendNumber(out, trace.id);
    out += ",\"activity\":\"";
    out += t.activity;
    out += "\",\"tensor\":{\"name\":";
    AppendJsonString(out, t.name);
    out += ",\"data\":";
    AppendJsonString(out, ElementsText(t));
    out += ",\"shape\":";
    AppendJsonString(out, ShapeText(t.shape));
    out += ",\"dtype\":";
    AppendJsonString(out, DataTypeName(t.dtype));
    out += "}}";
  }
}

}  // namespace flowserve
