// FillHttpRequest on its own: the listener and in-process harnesses build the requests
// their handlers see the same way, and the harnesses need none of the listener's sockets.
#include <utility>

#include "frontends/http/http_listener.h"

namespace flowserve {

void FillHttpRequest(HttpRequest& r, std::string_view method, std::string_view target,
                     const void* fields, char* data, size_t size, std::shared_ptr<void> owner) {
  r.method_ = method;
  const size_t q = target.find('?');
  r.path_ = target.substr(0, q);
  r.query_ = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  r.fields_ = fields;
  r.data_ = data;
  r.size_ = size;
  r.owner_ = std::move(owner);
  r.body_.reset();
}

void FillHttpRequest(HttpRequest& r, std::string_view method, std::string_view target,
                     const void* fields, std::shared_ptr<std::string> body) {
  if (!body) body = std::make_shared<std::string>();
  FillHttpRequest(r, method, target, fields, body->data(), body->size(), body);
  r.body_ = std::move(body);
}

const std::shared_ptr<std::string>& HttpRequest::body() const {
  if (!body_) body_ = std::make_shared<std::string>(data_, size_);
  return body_;
}

}  // namespace flowserve
