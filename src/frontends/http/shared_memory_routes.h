#pragma once
// Triton's shared memory endpoints over HTTP:
//   GET  /v2/systemsharedmemory[/region/{name}]/status
//   POST /v2/systemsharedmemory/region/{name}/register  {"key", "offset", "byte_size"}
//   POST /v2/systemsharedmemory[/region/{name}]/unregister
// and the same under /v2/cudasharedmemory, which answers that this server has no GPU.
#include <string>
#include <vector>

#include "frontends/http/http_listener.h"

namespace flowserve {

class SharedMemoryRegistry;

// `seg` is the decoded path, seg[1] being "systemsharedmemory" or "cudasharedmemory".
HttpReply HandleSharedMemoryRoute(SharedMemoryRegistry& registry, const HttpRequest& req,
                                  const std::vector<std::string>& seg);

}  // namespace flowserve
