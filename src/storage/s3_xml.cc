#include "storage/s3_xml.h"

#include <expat.h>

#include <functional>

namespace flowserve::storage {
namespace {

// Calls `on_text(path, text)` for every element with its text content, where path is
// the '/'-joined element names from the root ("ListBucketResult/Contents/Key"). Namespace
// prefixes are not expanded: S3 uses a default namespace only.
class ElementWalker {
 public:
  using Callback = std::function<void(const std::string& path, const std::string& text)>;

  Status Parse(const std::string& xml, Callback on_text, Callback on_end) {
    on_text_ = std::move(on_text);
    on_end_ = std::move(on_end);
    XML_Parser p = XML_ParserCreate("UTF-8");
    if (!p) return Internal("out of memory creating an XML parser");
    XML_SetUserData(p, this);
    XML_SetElementHandler(p, &Start, &End);
    XML_SetCharacterDataHandler(p, &Chars);
    Status st;
    if (XML_Parse(p, xml.data(), static_cast<int>(xml.size()), 1) == XML_STATUS_ERROR) {
      st = InvalidArgument(std::string("malformed XML: ") + XML_ErrorString(XML_GetErrorCode(p)) +
                           " at line " + std::to_string(XML_GetCurrentLineNumber(p)));
    }
    XML_ParserFree(p);
    return st;
  }

 private:
  static void Start(void* self_v, const XML_Char* name, const XML_Char**) {
    auto* self = static_cast<ElementWalker*>(self_v);
    self->stack_.push_back(self->path_.size());
    if (!self->path_.empty()) self->path_ += "/";
    self->path_ += name;
    self->text_.clear();
  }
  static void End(void* self_v, const XML_Char*) {
    auto* self = static_cast<ElementWalker*>(self_v);
    self->on_text_(self->path_, self->text_);
    self->on_end_(self->path_, "");
    self->text_.clear();
    self->path_.resize(self->stack_.back());
    self->stack_.pop_back();
  }
  static void Chars(void* self_v, const XML_Char* s, int len) {
    static_cast<ElementWalker*>(self_v)->text_.append(s, len);
  }

  Callback on_text_, on_end_;
  std::string path_, text_;
  std::vector<size_t> stack_;
};

std::string Unquote(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

}  // namespace

Result<ListPage> ParseListObjectsV2(const std::string& xml) {
  ListPage page;
  ObjectInfo cur;
  bool bad_size = false;
  ElementWalker w;
  Status st = w.Parse(
      xml,
      [&](const std::string& path, const std::string& text) {
        if (path == "ListBucketResult/Contents/Key") {
          cur.key = text;
        } else if (path == "ListBucketResult/Contents/ETag") {
          cur.etag = Unquote(text);
        } else if (path == "ListBucketResult/Contents/Size") {
          try {
            cur.size = std::stoull(text);
          } catch (...) {
            bad_size = true;
          }
        } else if (path == "ListBucketResult/IsTruncated") {
          page.truncated = text == "true";
        } else if (path == "ListBucketResult/NextContinuationToken") {
          page.next_token = text;
        }
      },
      [&](const std::string& path, const std::string&) {
        if (path == "ListBucketResult/Contents") {
          page.objects.push_back(std::move(cur));
          cur = ObjectInfo{};
        }
      });
  if (!st.ok()) return st;
  if (bad_size) return InvalidArgument("listing has an object whose Size is not a number");
  if (page.truncated && page.next_token.empty()) {
    return InvalidArgument("listing is truncated but has no NextContinuationToken");
  }
  return page;
}

S3Error ParseS3Error(const std::string& xml) {
  S3Error err;
  ElementWalker w;
  w.Parse(
      xml,
      [&](const std::string& path, const std::string& text) {
        if (path == "Error/Code") err.code = text;
        if (path == "Error/Message") err.message = text;
      },
      [](const std::string&, const std::string&) {});
  return err;
}

}  // namespace flowserve::storage
