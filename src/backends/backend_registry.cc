#include <mutex>

#include "backends/backend.h"

namespace flowserve {
namespace {

struct Entry {
  BackendFactory factory;
  std::unique_ptr<Backend> instance;
};

std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, Entry>& Registry() {
  static std::map<std::string, Entry> registry;
  return registry;
}

}  // namespace

void RegisterBackend(const std::string& name, BackendFactory factory) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  Registry()[name] = Entry{std::move(factory), nullptr};
}

Result<Backend*> FindBackend(const std::string& name) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  auto it = Registry().find(name);
  if (it == Registry().end()) {
    std::string known;
    for (const auto& [n, _] : Registry()) known += (known.empty() ? "" : ", ") + n;
    return NotFound("unknown backend '" + name + "' (this build has: " + known + ")");
  }
  if (!it->second.instance) it->second.instance = it->second.factory();
  return it->second.instance.get();
}

std::vector<std::string> RegisteredBackends() {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  std::vector<std::string> names;
  for (const auto& [n, _] : Registry()) names.push_back(n);
  return names;
}

}  // namespace flowserve
