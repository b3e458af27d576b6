#pragma once
#include <map>
#include <string>
#include <vector>

namespace flowserve {

struct ServerOptions {
  std::vector<std::string> model_repositories;
  std::string model_control_mode = "none";  // none | poll | explicit
  std::vector<std::string> startup_models;  // --load-model (explicit mode); "*" = all
  int repository_poll_secs = 15;
  // Where s3:// repositories are mirrored (--repository-cache-dir); empty: the
  // TRITON_AWS_MOUNT_DIRECTORY environment variable, else a temporary folder.
  std::string repository_cache_dir;
  bool strict_readiness = true;
  bool exit_on_error = true;
  bool strict_model_config = false;
  // Auto-complete fills a config from the model file; strict_model_config also disables it.
  bool disable_auto_complete_config = false;
  int exit_timeout_secs = 30;
  int model_load_thread_count = 4;
  std::string server_id = "triton";
  // --backend-config=<backend>,<key>=<value>
  std::map<std::string, std::map<std::string, std::string>> backend_config;
  // --cache-config=<cache>,<key>=<value> entries, as given (the core validates them).
  std::vector<std::string> cache_config;
  // Startup trace settings (--trace-config), as core/trace_settings.h parses them;
  // empty: Triton's defaults (tracing off).
  std::map<std::string, std::vector<std::string>> trace_settings;
};

}  // namespace flowserve
