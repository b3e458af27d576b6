#pragma once
// RapidJSON plumbing shared by this folder's serializers (private to the folder).
#include <rapidjson/writer.h>

#include <string>
#include <string_view>

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

namespace flowserve::http_detail {

// True when `text` opens more than `limit` objects/arrays inside one another. A linear scan
// that skips strings: run before parsing so a "[[[[..." body costs no parser memory.
inline bool JsonNestedDeeperThan(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace flowserve::http_detail
