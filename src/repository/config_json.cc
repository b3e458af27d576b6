// ModelConfig -> the JSON GET /v2/models/{m}/config returns. Protobuf's own JSON printer
// quotes 64-bit integers; Triton answers with plain numbers (dims: [16]) and clients
// index them as numbers, so the config is written field by field through reflection.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "model_config.pb.h"
#include "repository/model_repository.h"

namespace flowserve {
namespace {

namespace pb = google::protobuf;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void WriteMessage(Writer& w, const pb::Message& msg);

template <typename T>
void WriteFloating(Writer& w, T v) {
  if (std::isnan(v)) {
    w.String("NaN");
  } else if (std::isinf(v)) {
    w.String(v > 0 ? "Infinity" : "-Infinity");
  } else {
    // Shortest round-trip form, so 0.1f prints as 0.1 rather than 0.10000000149011612.
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    (void)ec;  // 64 bytes hold any float or double
    w.RawValue(buf, end - buf, rapidjson::kNumberType);
  }
}

void WriteEnum(Writer& w, const pb::EnumDescriptor* type, int number) {
  const pb::EnumValueDescriptor* value = type->FindValueByNumber(number);
  if (value != nullptr) {
    w.String(value->name().c_str(), static_cast<rapidjson::SizeType>(value->name().size()));
  } else {
    w.Int(number);
  }
}

// One value of `fd` (element `index` when repeated).
void WriteValue(Writer& w, const pb::Message& msg, const pb::FieldDescriptor* fd, int index) {
  const pb::Reflection* r = msg.GetReflection();
  const bool rep = index >= 0;
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      w.Int(rep ? r->GetRepeatedInt32(msg, fd, index) : r->GetInt32(msg, fd));
      break;
    case pb::FieldDescriptor::CPPTYPE_INT64:
      w.Int64(rep ? r->GetRepeatedInt64(msg, fd, index) : r->GetInt64(msg, fd));
      break;
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      w.Uint(rep ? r->GetRepeatedUInt32(msg, fd, index) : r->GetUInt32(msg, fd));
      break;
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      w.Uint64(rep ? r->GetRepeatedUInt64(msg, fd, index) : r->GetUInt64(msg, fd));
      break;
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      WriteFloating(w, rep ? r->GetRepeatedFloat(msg, fd, index) : r->GetFloat(msg, fd));
      break;
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      WriteFloating(w, rep ? r->GetRepeatedDouble(msg, fd, index) : r->GetDouble(msg, fd));
      break;
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      w.Bool(rep ? r->GetRepeatedBool(msg, fd, index) : r->GetBool(msg, fd));
      break;
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      WriteEnum(w, fd->enum_type(),
                rep ? r->GetRepeatedEnumValue(msg, fd, index) : r->GetEnumValue(msg, fd));
      break;
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      // The schema has no `bytes` fields, so every string is text.
      std::string scratch;
      const std::string& s = rep ? r->GetRepeatedStringReference(msg, fd, index, &scratch)
                                 : r->GetStringReference(msg, fd, &scratch);
      w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      WriteMessage(w, rep ? r->GetRepeatedMessage(msg, fd, index) : r->GetMessage(msg, fd));
      break;
  }
}

// JSON object keys are strings whatever the proto key type ("1": {...} for uint64 keys).
std::string MapKey(const pb::Message& entry, const pb::FieldDescriptor* key) {
  const pb::Reflection* r = entry.GetReflection();
  switch (key->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return std::to_string(r->GetInt32(entry, key));
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return std::to_string(r->GetInt64(entry, key));
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return std::to_string(r->GetUInt32(entry, key));
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return std::to_string(r->GetUInt64(entry, key));
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(entry, key) ? "true" : "false";
    default:
      return r->GetString(entry, key);
  }
}

void WriteMap(Writer& w, const pb::Message& msg, const pb::FieldDescriptor* fd) {
  const pb::Reflection* r = msg.GetReflection();
  const pb::Descriptor* entry_type = fd->message_type();
  const pb::FieldDescriptor* key = entry_type->map_key();
  const pb::FieldDescriptor* value = entry_type->map_value();
  // Sorted by key so the same config always prints the same bytes.
  std::vector<std::pair<std::string, const pb::Message*>> entries;
  for (int i = 0; i < r->FieldSize(msg, fd); ++i) {
    const pb::Message& entry = r->GetRepeatedMessage(msg, fd, i);
    entries.emplace_back(MapKey(entry, key), &entry);
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  w.StartObject();
  for (const auto& [k, entry] : entries) {
    w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
    WriteValue(w, *entry, value, -1);
  }
  w.EndObject();
}

// Like protobuf's JSON printer with always_print_primitive_fields (what Triton uses):
// scalars, repeated fields and maps always appear, sub-messages and oneof members only
// when set.
void WriteMessage(Writer& w, const pb::Message& msg) {
  const pb::Descriptor* type = msg.GetDescriptor();
  const pb::Reflection* r = msg.GetReflection();
  w.StartObject();
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::FieldDescriptor* fd = type->field(i);
    const bool message_like = fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    if (!fd->is_repeated() && (message_like || fd->containing_oneof() != nullptr) &&
        !r->HasField(msg, fd)) {
      continue;
    }
    w.Key(fd->name().c_str(), static_cast<rapidjson::SizeType>(fd->name().size()));
    if (fd->is_map()) {
      WriteMap(w, msg, fd);
    } else if (fd->is_repeated()) {
      w.StartArray();
      for (int j = 0; j < r->FieldSize(msg, fd); ++j) WriteValue(w, msg, fd, j);
      w.EndArray();
    } else {
      WriteValue(w, msg, fd, -1);
    }
  }
  w.EndObject();
}

}  // namespace

std::string ModelConfigToJson(const inference::ModelConfig& config) {
  rapidjson::StringBuffer buffer;
  Writer writer(buffer);
  WriteMessage(writer, config);
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace flowserve
