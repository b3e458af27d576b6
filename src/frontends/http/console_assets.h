#pragma once
// The web console under /console/: its built-in files with their content types, caching
// rules and a Content-Security-Policy that lets a page load from this origin alone, plus
// the one fact the public APIs do not give (uptime, control mode) as /console/facts.json.
// A path names one of the built files or a console page; nothing else, however encoded,
// reaches anything (404).
#include <chrono>
#include <string>
#include <string_view>

#include "frontends/http/http_listener.h"

namespace flowserve {

struct ConsoleFacts {
  std::string model_control_mode;  // none | poll | explicit
  std::chrono::steady_clock::time_point started;
};

// "/console" or anything under "/console/".
bool IsConsolePath(std::string_view path);

HttpReply ConsoleReply(const HttpRequest& req, const ConsoleFacts& facts);

}  // namespace flowserve
