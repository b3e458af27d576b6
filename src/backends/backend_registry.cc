// Backends by name: the built-in ones registered at start-up, the framework ones loaded
// from <backend directory>/<name>/libflowserve_<name>.so the first time a model needs
// them, so a server whose models need no framework never maps one.
#include <dlfcn.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <mutex>

#include "backends/backend.h"
#include "backends/backend_module.h"
#include "common/logging.h"

namespace flowserve {
namespace {

namespace fs = std::filesystem;

struct Entry {
  BackendFactory factory;  // empty for a module's backend
  std::unique_ptr<Backend> instance;
};

struct Registry {
  std::mutex mu;
  std::map<std::string, Entry> entries;
  std::string directory;
};

Registry& TheRegistry() {
  static Registry registry;
  return registry;
}

bool IsPlainName(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
      return false;
  }
  return true;
}

// Loads the module for `name`. The handle is never closed: the backend's vtables and
// every model it made live in that mapping until the process exits.
Result<std::unique_ptr<Backend>> LoadModule(const std::string& name, const std::string& dir) {
  if (!IsPlainName(name)) {
    return NotFound("unknown backend '" + name + "' (not a backend name)");
  }
  const std::string path = (fs::path(dir) / name / ("libflowserve_" + name + ".so")).string();
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return NotFound("unknown backend '" + name + "': no module " + path +
                    " (built-in backends: identity, oneflow; --backend-directory=" + dir + ")");
  }
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    return Unavailable("backend '" + name + "': cannot load " + path + ": " +
                       (err ? err : "unknown dlopen error"));
  }
  using CreateFn = Backend* (*)(uint32_t, const char*);
  auto create = reinterpret_cast<CreateFn>(dlsym(handle, FLOWSERVE_BACKEND_ENTRY));
  if (create == nullptr) {
    const char* err = dlerror();
    return Unavailable("backend '" + name + "': " + path + " is not a flowserve backend module (" +
                       (err ? err : "no " FLOWSERVE_BACKEND_ENTRY) + ")");
  }
  Backend* backend = create(FLOWSERVE_BACKEND_API_VERSION, name.c_str());
  if (backend == nullptr) {
    return Unavailable("backend '" + name + "': " + path +
                       " was built for another flowserve version (backend API " +
                       std::to_string(FLOWSERVE_BACKEND_API_VERSION) + " expected)");
  }
  FS_LOG_INFO("loaded backend '{}' from {}", name, path);
  return std::unique_ptr<Backend>(backend);
}

}  // namespace

void RegisterBackend(const std::string& name, BackendFactory factory) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.entries[name] = Entry{std::move(factory), nullptr};
}

void SetBackendDirectory(const std::string& dir) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.directory = dir;
}

std::string DefaultBackendDirectory() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "backends";
  fs::path here = exe.parent_path() / "backends";
  if (fs::is_directory(here, ec)) return here.string();
  return (exe.parent_path().parent_path() / "lib" / "flowserve" / "backends").string();
}

Result<Backend*> FindBackend(const std::string& name) {
  Registry& r = TheRegistry();
  // Held across the module load: two models naming a new backend at once load it once.
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.entries.find(name);
  if (it != r.entries.end() && it->second.instance) return it->second.instance.get();
  if (it != r.entries.end() && it->second.factory) {
    it->second.instance = it->second.factory();
    return it->second.instance.get();
  }
  if (r.directory.empty()) r.directory = DefaultBackendDirectory();
  // A failed load is not remembered: installing the module and reloading the model works.
  auto loaded = LoadModule(name, r.directory);
  if (!loaded.ok()) return loaded.status();
  Entry& e = r.entries[name];
  e.instance = std::move(loaded).value();
  return e.instance.get();
}

std::vector<std::string> RegisteredBackends() {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (const auto& [n, _] : r.entries) names.push_back(n);
  return names;
}

}  // namespace flowserve
