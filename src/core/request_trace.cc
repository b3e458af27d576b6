#include "core/request_trace.h"

#include <rapidjson/writer.h>

#include <atomic>
#include <cmath>
#include <cstring>

#include "core/inference_request.h"
#include "core/inference_response.h"
#include "core/trace_output.h"

namespace flowserve {
namespace {

struct StringOut {
  using Ch = char;
  std::string* s;
  void Put(char c) { s->push_back(c); }
  void Flush() {}
};
using JsonWriter = rapidjson::Writer<StringOut>;

void Str(JsonWriter& w, std::string_view v) {
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}

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

void TraceUntilComplete(InferenceRequest& request) {
  if (!request.trace) return;
  request.on_complete = [trace = request.trace, cb = std::move(request.on_complete)](
                            std::unique_ptr<InferenceResponse> response) mutable {
    cb(std::move(response));
    trace->Stamp(kTraceRequestEnd, NowNs());
    TraceSession* session = trace->session.get();
    session->Submit(std::move(trace));
  };
}

void AppendTraceJson(const RequestTrace& trace, std::string& out) {
  StringOut os{&out};
  JsonWriter w(os);
  w.StartObject();
  w.Key("id");
  w.Uint64(trace.id);
  w.Key("model_name");
  Str(w, trace.model_name);
  w.Key("model_version");
  w.Int64(trace.model_version);
  if (trace.parent_id != 0) {
    w.Key("parent_id");
    w.Uint64(trace.parent_id);
  }
  if (trace.timestamps) {
    w.Key("timestamps");
    w.StartArray();
    for (int p = 0; p < kTracePointCount; ++p) {
      if (trace.ns[p] == 0) continue;
      w.StartObject();
      w.Key("name");
      w.String(TracePointName(p));
      w.Key("ns");
      w.Uint64(trace.ns[p]);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  for (const auto& t : trace.tensor_records) {
    out += ',';
    JsonWriter tw(os);
    tw.StartObject();
    tw.Key("id");
    tw.Uint64(trace.id);
    tw.Key("activity");
    tw.String(t.activity);
    tw.Key("tensor");
    tw.StartObject();
    tw.Key("name");
    Str(tw, t.name);
    tw.Key("data");
    Str(tw, ElementsText(t));
    tw.Key("shape");
    Str(tw, ShapeText(t.shape));
    tw.Key("dtype");
    Str(tw, DataTypeName(t.dtype));
    tw.EndObject();
    tw.EndObject();
  }
}

}  // namespace flowserve
