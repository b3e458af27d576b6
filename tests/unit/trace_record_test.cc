// The trace writer formats records by hand for speed: its text must be exactly what a JSON
// library writes for the same record (Triton's trace format), escapes included.
#include <gtest/gtest.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstring>

#include "core/request_trace.h"

namespace flowserve {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void Str(Writer& w, std::string_view v) {
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}

// The timestamps record as rapidjson writes it.
std::string Reference(const RequestTrace& t) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("id");
  w.Uint64(t.id);
  w.Key("model_name");
  Str(w, t.model_name);
  w.Key("model_version");
  w.Int64(t.model_version);
  if (t.parent_id != 0) {
    w.Key("parent_id");
    w.Uint64(t.parent_id);
  }
  if (t.timestamps) {
    w.Key("timestamps");
    w.StartArray();
    for (int p = 0; p < kTracePointCount; ++p) {
      if (t.ns[p] == 0) continue;
      w.StartObject();
      w.Key("name");
      w.String(TracePointName(p));
      w.Key("ns");
      w.Uint64(t.ns[p]);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  return sb.GetString();
}

RequestTrace Sample() {
  RequestTrace t;
  t.id = 18446744073709551615ull;  // the widest id
  t.model_name = "identity";
  t.model_version = 3;
  t.timestamps = true;
  for (int p = 0; p < kTracePointCount; ++p) t.ns[p] = 1700000000000000000ull + p * 1234;
  return t;
}

std::string Written(const RequestTrace& t) {
  std::string out = "previous,";  // appends, never replaces
  AppendTraceJson(t, out);
  EXPECT_EQ(out.rfind("previous,", 0), 0u);
  return out.substr(9);
}

TEST(TraceRecord, TimestampsRecordMatchesJsonLibrary) {
  RequestTrace t = Sample();
  EXPECT_EQ(Written(t), Reference(t));
  t.ns[kTraceComputeInputEnd] = 0;  // a point not reached is left out
  t.ns[kTraceRequestEnd] = 0;
  EXPECT_EQ(Written(t), Reference(t));
  t.parent_id = 7;  // an ensemble step
  t.model_version = -1;
  EXPECT_EQ(Written(t), Reference(t));
  t.timestamps = false;  // TENSORS level only
  EXPECT_EQ(Written(t), Reference(t));
}

TEST(TraceRecord, ModelNameIsEscapedAsJsonLibraryDoes) {
  RequestTrace t = Sample();
  t.model_name = std::string("q\"b\\s/\b\f\n\r\t\x01\x1f\x7f \xc3\xa9", 17);
  const std::string written = Written(t);
  EXPECT_EQ(written, Reference(t));
  EXPECT_NE(written.find(R"("q\"b\\s/\b\f\n\r\t\u0001\u001F)"), std::string::npos) << written;
}

TEST(TraceRecord, TensorRecordsFollowTheTimestamps) {
  RequestTrace t = Sample();
  Tensor in;
  in.name = "IN\"0";
  in.dtype = DataType::kInt32;
  in.shape = {1, 2};
  const int32_t v[2] = {-5, 7};
  std::memcpy(AllocateTensorData(in, sizeof(v)), v, sizeof(v));
  t.tensors = true;
  t.CaptureTensors("TENSOR_QUEUE_INPUT", {in});
  const std::string written = Written(t);
  EXPECT_EQ(written,
            Reference(t) +
                R"(,{"id":18446744073709551615,"activity":"TENSOR_QUEUE_INPUT",)"
                R"("tensor":{"name":"IN\"0","data":"-5,7","shape":"1,2","dtype":"INT32"}})");
}

}  // namespace
}  // namespace flowserve
