#pragma once
// RapidJSON plumbing shared by this folder's serializers (private to the folder).
#include <rapidjson/writer.h>

#include <string>

namespace flowserve::http_detail {

// Output stream appending straight to a std::string: the reply owns its bytes without
// an extra copy out of a rapidjson::StringBuffer.
struct StringOut {
  using Ch = char;
  std::string* s;
  void Put(char c) { s->push_back(c); }
  void Flush() {}
};

using JsonWriter = rapidjson::Writer<StringOut>;

inline void WriteString(JsonWriter& w, std::string_view v) {
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}
inline void WriteKey(JsonWriter& w, std::string_view v) {
  w.Key(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}

}  // namespace flowserve::http_detail
