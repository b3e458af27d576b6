#include "common/custom_metrics.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <memory>
#include <mutex>

namespace flowserve::custom_metrics {
namespace {

struct Metric {
  uint64_t family = 0;
  std::map<std::string, std::string> labels;
  std::map<uint64_t, int> owners;  // owner -> references
  double value = 0;                // counter, gauge; a histogram's sum
  std::vector<double> bounds;      // histograms
  std::vector<uint64_t> counts;    // per bound, not cumulative; the last is +Inf
  uint64_t observations = 0;
};

struct Family {
  std::string name;
  std::string description;
  Kind kind = Kind::kCounter;
  std::map<uint64_t, int> owners;
};

struct Registry {
  std::mutex mu;
  uint64_t next_id = 1;
  std::map<uint64_t, Family> families;
  std::map<uint64_t, Metric> metrics;
};

Registry& Reg() {
  static auto* r = new Registry;  // never destroyed: threads may outlive main
  return *r;
}

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

bool ValidName(const std::string& n, bool label) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = std::isalpha(static_cast<unsigned char>(c)) || c == '_' || (!label && c == ':') ||
              (i > 0 && std::isdigit(static_cast<unsigned char>(c)));
    if (!ok) return false;
  }
  return true;
}

const char* KindName(Kind k) {
  return k == Kind::kCounter ? "counter" : k == Kind::kGauge ? "gauge" : "histogram";
}

Metric* Find(Registry& r, uint64_t id) {
  auto it = r.metrics.find(id);
  return it == r.metrics.end() ? nullptr : &it->second;
}

Status Unknown(uint64_t id) {
  return NotFound("custom metric " + std::to_string(id) + " does not exist (any more)");
}

}  // namespace

uint64_t NewOwner() {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.next_id++;
}

void ReleaseOwner(uint64_t owner) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto it = r.metrics.begin(); it != r.metrics.end();) {
    it->second.owners.erase(owner);
    it = it->second.owners.empty() ? r.metrics.erase(it) : std::next(it);
  }
  for (auto it = r.families.begin(); it != r.families.end();) {
    it->second.owners.erase(owner);
    const uint64_t id = it->first;
    bool used = !it->second.owners.empty() ||
                std::any_of(r.metrics.begin(), r.metrics.end(),
                            [id](const auto& m) { return m.second.family == id; });
    it = used ? std::next(it) : r.families.erase(it);
  }
}

Result<uint64_t> AddFamily(uint64_t owner, const std::string& name, const std::string& description,
                           Kind kind) {
  if (!ValidName(name, false))
    return InvalidArgument("MetricFamily name '" + name +
                           "' is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)");
  if (name.rfind("nv_", 0) == 0)
    return InvalidArgument("MetricFamily name '" + name +
                           "': the nv_ prefix is reserved for the server's own metrics");
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& [id, f] : r.families) {
    if (f.name != name) continue;
    if (f.kind != kind)
      return InvalidArgument("MetricFamily '" + name + "' already exists as a " + KindName(f.kind) +
                             ", not a " + KindName(kind));
    ++f.owners[owner];
    return id;
  }
  const uint64_t id = r.next_id++;
  Family& f = r.families[id];
  f.name = name;
  f.description = description;
  f.kind = kind;
  ++f.owners[owner];
  return id;
}

Result<uint64_t> AddMetric(uint64_t owner, uint64_t family,
                           const std::map<std::string, std::string>& labels,
                           const std::vector<double>& buckets) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  auto f = r.families.find(family);
  if (f == r.families.end())
    return NotFound("metric family " + std::to_string(family) + " does not exist (any more)");
  for (const auto& [k, _] : labels) {
    if (!ValidName(k, true) || k.rfind("__", 0) == 0)
      return InvalidArgument("Metric of '" + f->second.name + "': label name '" + k +
                             "' is not valid");
  }
  if (f->second.kind == Kind::kHistogram) {
    if (buckets.empty())
      return InvalidArgument("Metric of histogram '" + f->second.name + "' needs buckets");
    for (size_t i = 1; i < buckets.size(); ++i)
      if (!(buckets[i] > buckets[i - 1]))
        return InvalidArgument("Metric of histogram '" + f->second.name +
                               "': buckets must increase strictly");
  } else if (!buckets.empty()) {
    return InvalidArgument("Metric of " + std::string(KindName(f->second.kind)) + " '" +
                           f->second.name + "': buckets are for histograms only");
  }
  for (auto& [id, m] : r.metrics) {
    if (m.family == family && m.labels == labels) {
      if (f->second.kind == Kind::kHistogram && m.bounds != buckets)
        return InvalidArgument("Metric of histogram '" + f->second.name +
                               "' with these labels already exists with other buckets");
      ++m.owners[owner];
      return id;
    }
  }
  const uint64_t id = r.next_id++;
  Metric& m = r.metrics[id];
  m.family = family;
  m.labels = labels;
  m.bounds = buckets;
  if (!buckets.empty()) m.counts.assign(buckets.size() + 1, 0);
  ++m.owners[owner];
  return id;
}

Status Increment(uint64_t metric, double value) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  Metric* m = Find(r, metric);
  if (!m) return Unknown(metric);
  Kind kind = r.families[m->family].kind;
  if (kind == Kind::kHistogram) return InvalidArgument("increment() is not for histograms");
  if (kind == Kind::kCounter && value < 0)
    return InvalidArgument("a counter cannot be incremented by a negative value");
  m->value += value;
  return Status::Ok();
}

Status Set(uint64_t metric, double value) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  Metric* m = Find(r, metric);
  if (!m) return Unknown(metric);
  if (r.families[m->family].kind != Kind::kGauge)
    return InvalidArgument("set() is only for gauges");
  m->value = value;
  return Status::Ok();
}

Status Observe(uint64_t metric, double value) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  Metric* m = Find(r, metric);
  if (!m) return Unknown(metric);
  if (r.families[m->family].kind != Kind::kHistogram)
    return InvalidArgument("observe() is only for histograms");
  size_t i = std::lower_bound(m->bounds.begin(), m->bounds.end(), value) - m->bounds.begin();
  ++m->counts[i];
  ++m->observations;
  m->value += value;
  return Status::Ok();
}

Result<double> Value(uint64_t metric) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  Metric* m = Find(r, metric);
  if (!m) return Unknown(metric);
  return m->value;
}

std::string Render() {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  std::string out;
  for (const auto& [fid, f] : r.families) {
    out += "# HELP " + f.name + " " + f.description + "\n";
    out += "# TYPE " + f.name + " " + KindName(f.kind) + "\n";
    for (const auto& [_, m] : r.metrics) {
      if (m.family != fid) continue;
      std::string labels;
      for (const auto& [k, v] : m.labels) {
        labels += labels.empty() ? "" : ",";
        labels += k + "=\"" + Escape(v) + "\"";
      }
      if (f.kind != Kind::kHistogram) {
        out += f.name + (labels.empty() ? "" : "{" + labels + "}") + " " + Number(m.value) + "\n";
        continue;
      }
      uint64_t cumulative = 0;
      std::string sep = labels.empty() ? "" : ",";
      for (size_t i = 0; i < m.counts.size(); ++i) {
        cumulative += m.counts[i];
        std::string le = i < m.bounds.size() ? Number(m.bounds[i]) : "+Inf";
        out += f.name + "_bucket{" + labels + sep + "le=\"" + le + "\"} " +
               std::to_string(cumulative) + "\n";
      }
      std::string braces = labels.empty() ? "" : "{" + labels + "}";
      out += f.name + "_sum" + braces + " " + Number(m.value) + "\n";
      out += f.name + "_count" + braces + " " + std::to_string(m.observations) + "\n";
    }
  }
  return out;
}

}  // namespace flowserve::custom_metrics
