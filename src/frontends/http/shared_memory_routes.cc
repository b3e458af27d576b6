#include "frontends/http/shared_memory_routes.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "core/shared_memory_registry.h"
#include "frontends/http/infer_codec.h"
#include "frontends/http/json_util.h"

namespace flowserve {

using http_detail::JsonWriter;
using http_detail::StringOut;
using http_detail::WriteKey;
using http_detail::WriteString;

namespace {

struct RegisterBody {
  std::string key;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

Result<RegisterBody> ParseRegisterBody(const std::string& body, const std::string& name) {
  const std::string what = "register system shared memory region '" + name + "': ";
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(body.data(), body.size());
  if (doc.HasParseError()) {
    return InvalidArgument(what + "failed to parse the request JSON: " +
                           rapidjson::GetParseError_En(doc.GetParseError()));
  }
  if (!doc.IsObject()) return InvalidArgument(what + "the request body must be a JSON object");
  RegisterBody out;
  auto key = doc.FindMember("key");
  if (key == doc.MemberEnd() || !key->value.IsString()) {
    return InvalidArgument(what + "'key' must be given as a string");
  }
  out.key.assign(key->value.GetString(), key->value.GetStringLength());
  auto size = doc.FindMember("byte_size");
  if (size == doc.MemberEnd() || !size->value.IsUint64()) {
    return InvalidArgument(what + "'byte_size' must be given as a non-negative integer");
  }
  out.byte_size = size->value.GetUint64();
  if (auto offset = doc.FindMember("offset"); offset != doc.MemberEnd()) {
    if (!offset->value.IsUint64()) {
      return InvalidArgument(what + "'offset' must be a non-negative integer");
    }
    out.offset = offset->value.GetUint64();
  }
  return out;
}

HttpReply StatusJson(const std::vector<SharedMemoryRegionInfo>& regions) {
  HttpReply reply;
  StringOut out{&reply.body};
  JsonWriter w(out);
  w.StartArray();
  for (const auto& r : regions) {
    w.StartObject();
    WriteKey(w, "name");
    WriteString(w, r.name);
    WriteKey(w, "key");
    WriteString(w, r.key);
    WriteKey(w, "offset");
    w.Uint64(r.offset);
    WriteKey(w, "byte_size");
    w.Uint64(r.byte_size);
    w.EndObject();
  }
  w.EndArray();
  return reply;
}

HttpReply Ok() { return JsonReply(""); }

HttpReply MethodNotAllowed(const HttpRequest& req) {
  HttpReply r = ErrorReply(InvalidArgument("method " + std::string(req.method()) +
                                           " is not allowed on " + std::string(req.path())));
  r.status = 405;
  return r;
}

}  // namespace

HttpReply HandleSharedMemoryRoute(SharedMemoryRegistry& registry, const HttpRequest& req,
                                  const std::vector<std::string>& seg) {
  // [v2, area, action] or [v2, area, "region", name, action]
  std::string name, action;
  if (seg.size() == 3) {
    action = seg[2];
  } else if (seg.size() == 5 && seg[2] == "region") {
    name = seg[3];
    action = seg[4];
  } else {
    return ErrorReply(NotFound("Not Found"));
  }
  if (action != "status" && action != "register" && action != "unregister") {
    return ErrorReply(NotFound("Not Found"));
  }
  const bool get = req.method() == "GET" || req.method() == "HEAD";
  if (action == "status" ? !get : req.method() != "POST") return MethodNotAllowed(req);
  if (action == "register" && name.empty()) return ErrorReply(NotFound("Not Found"));

  if (seg[1] == "cudasharedmemory") {
    // No GPU here, so no CUDA region can ever be registered: status lists none, and
    // unregistering all of none succeeds, as a Triton built without GPU support answers.
    if (action == "status") {
      if (name.empty()) return StatusJson({});
      return ErrorReply(NotFound("unable to find cuda shared memory region: '" + name + "'"));
    }
    if (action == "unregister" && name.empty()) return Ok();
    return ErrorReply(InvalidArgument("failed to " + action + " CUDA shared memory region '" +
                                      name + "': GPUs not supported by this server"));
  }

  if (action == "status") {
    auto regions = registry.List(name);
    if (!regions.ok()) return ErrorReply(regions.status());
    return StatusJson(*regions);
  }
  if (action == "register") {
    auto body = ParseRegisterBody(*req.body(), name);
    if (!body.ok()) return ErrorReply(body.status());
    Status st = registry.Register(name, body->key, body->offset, body->byte_size);
    return st.ok() ? Ok() : ErrorReply(st);
  }
  if (name.empty()) {
    registry.UnregisterAll();
    return Ok();
  }
  Status st = registry.Unregister(name);
  return st.ok() ? Ok() : ErrorReply(st);
}

}  // namespace flowserve
