// The Python backend (Triton's model.py API); built as the module
// backends/python/libflowserve_python.so. Each model instance runs model.py in its own
// /usr/bin/python3 process (stub.py next to this module), started and supervised by a
// thread of the instance. Control messages go over a socket; tensor bytes go through
// shared memory (see stub_process.h and stub.py).
#include <poll.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "backends/backend.h"
#include "backends/backend_module.h"
#include "backends/python/packed_env.h"
#include "backends/python/stub_process.h"
#include "backends/sequence_tensors.h"
#include "common/adaptive_spin.h"
#include "common/client_activity.h"
#include "common/custom_metrics.h"
#include "common/logging.h"
#include "common/readiness_watch.h"
#include "common/shareable_buffer.h"
#include "common/wake_batch.h"
#include "core/response_sender.h"
#include "model_config.pb.h"
#include "repository/model_repository.h"

namespace flowserve {
namespace python {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr size_t kAlign = 64;
// Inputs from this size on travel as a reference into the shareable buffer they lie in
// (if they do) instead of a copy into the arena: below it the copy is cheaper than the
// lookup and the process's page faults on a mapping of its own.
constexpr size_t kShareMinBytes = 16 << 10;
// New shareable buffers one execute message may carry (with the arena's, the descriptors
// must fit the channel's limit per message).
constexpr size_t kMaxNewRegions = 8;
size_t AlignUp(size_t n, size_t a = kAlign) { return (n + a - 1) / a * a; }

// --backend-config=python,<key>=<value>
struct Options {
  std::string python = "/usr/bin/python3";
  size_t shm_default = 1 << 20;  // the instance's input arena to start with
  size_t shm_growth = 1 << 20;   // arena growth step
  size_t inline_max = 64 << 10;  // tensors up to this (per message) travel in the frame
  int restart_limit = 3;         // deaths within restart_window that stop restarts
  std::chrono::seconds restart_window{60};
  std::chrono::milliseconds finalize_timeout{5000};
  std::chrono::milliseconds autocomplete_timeout{60000};
  // How long the instance thread polls for the reply before sleeping. The poll yields at
  // every turn and backs off when the kernel takes its core (AdaptiveSpin), so it no
  // longer starves the Python process on 2 cores: bench/python_vs_identity.sh, small
  // tensor, Python p50 at c=1 36-38 us with 50 against 59-67 us without; c=8 unchanged.
  std::chrono::microseconds spin{50};
  // How long the Python process polls for the next execute message after replying,
  // before it sleeps in recv() (stub.py Spin: yields at every turn, backs off under
  // load). Saves the wake-up of the process on the way in.
  std::chrono::microseconds stub_spin{200};
};

Result<size_t> ParseSize(const std::string& key, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0)
    return InvalidArgument("--backend-config=python," + key + "=" + v + ": not a number");
  return static_cast<size_t>(n);
}

Result<Options> ParseOptions(const std::map<std::string, std::string>& bc) {
  Options o;
  for (const auto& [key, value] : bc) {
    if (key == "python-executable" || key == "python_executable") {
      o.python = value;
      continue;
    }
    auto n = ParseSize(key, value);
    if (!n.ok()) return n.status();
    if (key == "shm-default-byte-size") {
      o.shm_default = std::max<size_t>(*n, 4096);
    } else if (key == "shm-growth-byte-size") {
      o.shm_growth = std::max<size_t>(*n, 4096);
    } else if (key == "shm-inline-byte-size") {
      o.inline_max = *n;
    } else if (key == "restart-limit") {
      o.restart_limit = static_cast<int>(*n);
    } else if (key == "restart-window-seconds") {
      o.restart_window = std::chrono::seconds(*n);
    } else if (key == "spin-microseconds") {
      o.spin = std::chrono::microseconds(*n);
    } else if (key == "stub-spin-microseconds") {
      o.stub_spin = std::chrono::microseconds(*n);
    } else if (key == "finalize-timeout-seconds" || key == "stub-timeout-seconds") {
      o.finalize_timeout = std::chrono::seconds(*n);
    } else {
      // Triton's other python keys (shm-region-prefix-name, ...) have no meaning here.
      FS_LOG_WARNING("--backend-config=python,{}={}: unknown key, ignored", key, value);
    }
  }
  if (access(o.python.c_str(), X_OK) != 0)
    return InvalidArgument("python interpreter '" + o.python +
                           "' is not executable (--backend-config=python,python-executable=...)");
  return o;
}

// Immutable after load; shared by the instances of one model version.
struct ModelInfo {
  std::string label;  // "model 'x' version 1"
  std::string model_name;
  int64_t version = 0;
  std::string model_dir;
  std::string version_dir;
  std::string model_file;
  std::string env_path;
  std::string stub_path;
  std::string config_json;
  Options options;
  std::vector<std::string> output_names;
  std::map<std::string, DataType> output_types;
  bool decoupled = false;  // model_transaction_policy { decoupled: true }
  std::function<void(const std::string& reason)> set_unavailable;
  std::function<void(std::unique_ptr<InferenceRequest>)> dispatch;
};

std::string JsonOf(const std::function<void(Writer&)>& fill) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  fill(w);
  return std::string(sb.GetString(), sb.GetSize());
}

void WriteString(Writer& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

// `"key": [ids]`, left out when there are none.
template <typename Id>
void WriteIds(Writer& w, const char* key, const std::vector<Id>& ids) {
  if (ids.empty()) return;
  w.Key(key);
  w.StartArray();
  for (Id id : ids) w.Int64(static_cast<int64_t>(id));
  w.EndArray();
}

// The start of a tensor description as both sides write it: [name, type, shape, kind,
// place...] (positional: the stub builds and reads one per tensor, and a list costs it
// no dict; docs/python.md measures it).
void WriteTensorHead(Writer& w, const Tensor& t) {
  w.StartArray();
  WriteString(w, t.name);
  WriteString(w, DataTypeName(t.dtype));
  w.StartArray();
  for (int64_t d : t.shape) w.Int64(d);
  w.EndArray();
}

// Where the stub finds model.py and its environment: the same in every message that
// imports the model (init, autocomplete).
void WriteModelLocation(Writer& w, const ModelInfo& info) {
  w.Key("model_file");
  WriteString(w, info.model_file);
  w.Key("version_dir");
  WriteString(w, info.version_dir);
  if (!info.env_path.empty()) {
    w.Key("env_path");
    WriteString(w, info.env_path);
  }
}

std::string ParametersJson(const Parameters& params) {
  return JsonOf([&](Writer& w) {
    w.StartObject();
    for (const auto& [k, v] : params) {
      WriteString(w, k);
      std::visit(
          [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, bool>) {
              w.Bool(x);
            } else if constexpr (std::is_same_v<T, int64_t>) {
              w.Int64(x);
            } else if constexpr (std::is_same_v<T, double>) {
              w.Double(x);
            } else {
              WriteString(w, x);
            }
          },
          v);
    }
    w.EndObject();
  });
}

Parameters ParseParameters(std::string_view json) {
  Parameters out;
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  if (d.HasParseError() || !d.IsObject()) return out;
  for (auto it = d.MemberBegin(); it != d.MemberEnd(); ++it) {
    std::string key(it->name.GetString(), it->name.GetStringLength());
    const auto& v = it->value;
    if (v.IsBool()) {
      out[key] = v.GetBool();
    } else if (v.IsInt64()) {
      out[key] = v.GetInt64();
    } else if (v.IsNumber()) {
      out[key] = v.GetDouble();
    } else if (v.IsString()) {
      out[key] = std::string(v.GetString(), v.GetStringLength());
    }
  }
  return out;
}

std::string StrOf(const rapidjson::Value& v) {
  return v.IsString() ? std::string(v.GetString(), v.GetStringLength()) : std::string();
}

// Maps every descriptor that came with a frame.
Result<std::vector<std::shared_ptr<Mapping>>> MapAll(const Frame& frame) {
  std::vector<std::shared_ptr<Mapping>> maps;
  for (const auto& fd : frame.fds) {
    auto m = MapSegment(fd.get());
    if (!m.ok()) return m.status();
    maps.push_back(std::move(m.value()));
  }
  return maps;
}

// The stub's pool of output segments (stub.py OutputPool) as this side sees it: each is
// mapped once, when it first arrives, and reused for later replies. A reply's tensors in
// a segment share one Lease; when the last of them is released (the responses were
// written out), the segment goes on the "free" list the next execute message carries.
struct SegmentCache {
  std::map<int64_t, std::shared_ptr<Mapping>> maps;  // instance thread only
  std::mutex mu;
  std::vector<int64_t> released;  // guarded by mu
};

// Built in place only: a copy's destructor would hand the segment back while the
// responses still point into it, and the stub would overwrite them.
struct Lease {
  Lease(std::shared_ptr<Mapping> m, std::shared_ptr<SegmentCache> c, int64_t i)
      : map(std::move(m)), cache(std::move(c)), id(i) {}
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  std::shared_ptr<Mapping> map;
  std::shared_ptr<SegmentCache> cache;
  int64_t id;
  ~Lease() {
    std::lock_guard<std::mutex> lock(cache->mu);
    cache->released.push_back(id);
  }
};

// An input arena: a segment both processes map, which the server copies a batch's inputs
// into. Outputs that view the inputs point into it too (no copy), so it is only written
// again once no response holds it; meanwhile batches go to another arena.
struct Arena {
  Arena(int64_t i, std::shared_ptr<Mapping> m) : id(i), map(std::move(m)) {}
  const int64_t id;
  const std::shared_ptr<Mapping> map;
  std::atomic<int> holds{0};  // responses pointing into it (their ArenaHold)
  bool Idle() const { return holds.load(std::memory_order_acquire) == 0; }
};

// The responses of one reply that point into its batch's arena share one hold. Built in
// place only, like Lease: a copy would release the arena twice.
struct ArenaHold {
  explicit ArenaHold(std::shared_ptr<Arena> a) : arena(std::move(a)) {
    arena->holds.fetch_add(1, std::memory_order_relaxed);
  }
  ArenaHold(const ArenaHold&) = delete;
  ArenaHold& operator=(const ArenaHold&) = delete;
  // release: the responses' last reads of the arena happen before the server rewrites it.
  ~ArenaHold() { arena->holds.fetch_sub(1, std::memory_order_release); }
  std::shared_ptr<Arena> arena;
};

// The pooled segments, and the batch's arena and regions, one message may point into.
struct SegmentRefs {
  std::shared_ptr<SegmentCache> cache;
  std::map<int64_t, std::shared_ptr<Lease>> leases;
  std::shared_ptr<Arena> arena;  // null: no arena references allowed (decoupled, BLS)
  std::shared_ptr<ArenaHold> arena_hold;
  // The shareable buffers (request bodies) the batch's inputs were sent in, by id.
  std::map<uint64_t, std::shared_ptr<ShareableBuffer>> regions;
};

// A tensor description [name, type, shape, kind, place...] from the stub, pointing into
// the frame's tail ("i", offset, size), a segment sent with the frame ("f", index, offset,
// size), a pooled one ("s", id, ...), the batch's arena ("a", id, ...) or one of its regions
// ("r", id, ...); the tensor keeps what it points into alive. Everything is bounds-checked:
// the stub runs user code.
Result<Tensor> DecodeTensor(const rapidjson::Value& d, const Frame& frame,
                            const std::vector<std::shared_ptr<Mapping>>& maps,
                            SegmentRefs* segments = nullptr) {
  if (!d.IsArray() || d.Size() < 6 || !d[0].IsString() || !d[1].IsString() || !d[2].IsArray() ||
      !d[3].IsString())
    return Internal("malformed tensor description from the Python process");
  for (rapidjson::SizeType k = 4; k < d.Size(); ++k)
    if (!d[k].IsUint64()) return Internal("malformed tensor description from the Python process");
  Tensor t;
  t.name = StrOf(d[0]);
  std::string wire = StrOf(d[1]);
  t.dtype = DataTypeFromName(wire);
  if (t.dtype == DataType::kInvalid)
    return Internal("tensor '" + t.name + "': unknown data type '" + wire + "'");
  for (const auto& s : d[2].GetArray()) {
    if (!s.IsInt64() || s.GetInt64() < 0) return Internal("tensor '" + t.name + "': bad shape");
    t.shape.push_back(s.GetInt64());
  }
  const std::string kind = StrOf(d[3]);
  // The place's numbers: [where,] offset, size.
  const bool has_where = d.Size() == 7;
  const uint64_t where = has_where ? d[4].GetUint64() : 0;
  const uint64_t off = d[d.Size() - 2].GetUint64();
  const uint64_t size = d[d.Size() - 1].GetUint64();
  const char* base = nullptr;
  size_t limit = 0;
  if (kind == "i" && !has_where) {
    base = frame.tail();
    limit = frame.tail_len;
    t.owner = std::shared_ptr<const void>(frame.payload, frame.payload.get());
  } else if (kind == "f" && has_where) {
    if (where >= maps.size()) return Internal("tensor '" + t.name + "': missing segment");
    base = maps[where]->data();
    limit = maps[where]->size();
    t.owner = maps[where];
  } else if (kind == "s" && has_where && segments != nullptr) {
    const auto id = static_cast<int64_t>(where);
    auto& lease = segments->leases[id];
    if (!lease) {
      auto it = segments->cache->maps.find(id);
      if (it == segments->cache->maps.end())
        return Internal("tensor '" + t.name + "': unknown segment " + std::to_string(id));
      lease = std::make_shared<Lease>(it->second, segments->cache, id);
    }
    base = lease->map->data();
    limit = lease->map->size();
    t.owner = std::shared_ptr<const void>(lease, base);
  } else if (kind == "a" && has_where) {
    // An output viewing the batch's own inputs; any other arena may be rewritten already.
    if (segments == nullptr || !segments->arena ||
        where != static_cast<uint64_t>(segments->arena->id))
      return Internal("tensor '" + t.name + "' points into an arena that is not its batch's");
    auto& hold = segments->arena_hold;
    if (!hold) hold = std::make_shared<ArenaHold>(segments->arena);
    base = hold->arena->map->data();
    limit = hold->arena->map->size();
    t.owner = std::shared_ptr<const void>(hold, base);
  } else if (kind == "r" && has_where) {
    // An output viewing an input that came in a shareable buffer: the response holds the
    // buffer, so nothing reuses it before the response is written out.
    auto it = segments == nullptr ? decltype(segments->regions)::iterator()
                                  : segments->regions.find(where);
    if (segments == nullptr || it == segments->regions.end())
      return Internal("tensor '" + t.name + "' points into a region that is not its batch's");
    base = it->second->data();
    limit = it->second->capacity();
    t.owner = std::shared_ptr<const void>(it->second, base);
  } else {
    return Internal("tensor '" + t.name + "': bad location");
  }
  if (off > limit || size > limit - off)
    return Internal("tensor '" + t.name + "' lies outside its buffer");
  t.data = base + off;
  t.byte_size = size;
  int64_t count = t.ElementCount();
  if (count < 0) return Internal("tensor '" + t.name + "': bad shape");
  if (t.dtype == DataType::kBytes) {
    if (!ValidateBytesBuffer(t.data, t.byte_size, count))
      return Internal("tensor '" + t.name + "': malformed BYTES buffer");
  } else if (static_cast<uint64_t>(count) * DataTypeSize(t.dtype) != size) {
    return Internal("tensor '" + t.name + "': " + std::to_string(size) + " bytes for shape " +
                    ShapeString(t.shape));
  }
  return t;
}

// Writes tensors of one message: their bytes in the frame's tail when small (sent
// straight from where they are), else copied once into a new segment sent as a fd.
struct EncodedTensors {
  std::string descs;  // JSON array
  std::vector<Chunk> tail;
  std::vector<char> padding;
  UniqueFd segment;
};

Status EncodeTensors(const std::vector<const Tensor*>& tensors, size_t inline_max,
                     EncodedTensors& out) {
  size_t total = 0;
  std::vector<size_t> offsets;
  for (const Tensor* t : tensors) {
    total = AlignUp(total);
    offsets.push_back(total);
    total += t->byte_size;
  }
  bool inline_data = total <= inline_max;
  std::shared_ptr<Mapping> seg;
  if (inline_data) {
    out.padding.assign(kAlign, 0);
    size_t pos = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (offsets[i] > pos) out.tail.push_back({out.padding.data(), offsets[i] - pos});
      out.tail.push_back({tensors[i]->data, tensors[i]->byte_size});
      pos = offsets[i] + tensors[i]->byte_size;
    }
  } else {
    int fd = -1;
    auto created = CreateSegment(total, &fd);
    if (!created.ok()) return created.status();
    out.segment = UniqueFd(fd);
    seg = created.value();
    for (size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i]->byte_size)
        std::memcpy(seg->data() + offsets[i], tensors[i]->data, tensors[i]->byte_size);
  }
  out.descs = JsonOf([&](Writer& w) {
    w.StartArray();
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = *tensors[i];
      WriteTensorHead(w, t);
      if (inline_data) {
        w.String("i");
      } else {
        w.String("f");
        w.Uint(0);
      }
      w.Uint64(offsets[i]);
      w.Uint64(t.byte_size);
      w.EndArray();
    }
    w.EndArray();
  });
  return Status::Ok();
}

StatusCode CodeOfTritonError(int code) {
  switch (code) {
    case 0:
      return StatusCode::kUnknown;
    case 2:
      return StatusCode::kNotFound;
    case 3:
      return StatusCode::kInvalidArgument;
    case 4:
      return StatusCode::kUnavailable;
    case 5:
      return StatusCode::kUnimplemented;
    case 6:
      return StatusCode::kAlreadyExists;
    case 7:
      return StatusCode::kCancelled;
    default:
      return StatusCode::kInternal;
  }
}

// Sends a BLS request from the stub into the server; its response goes back over
// `channel` from whichever thread completes it.
void DispatchBls(const ModelInfo& info, const std::shared_ptr<Channel>& channel,
                 const rapidjson::Document& msg, const Frame& frame) {
  uint64_t id = msg["id"].GetUint64();
  auto reply_error = [&](const Status& st) {
    std::string json = JsonOf([&](Writer& w) {
      w.StartObject();
      w.Key("op");
      w.String("bls_response");
      w.Key("id");
      w.Uint64(id);
      w.Key("error");
      WriteString(w, st.message());
      w.EndObject();
    });
    (void)channel->Send(json);
  };
  auto maps = MapAll(frame);
  if (!maps.ok()) return reply_error(maps.status());
  auto req = std::make_unique<InferenceRequest>();
  req->model_name = StrOf(msg["m"]);
  if (msg.HasMember("v") && msg["v"].IsInt64()) req->model_version = msg["v"].GetInt64();
  if (msg.HasMember("rid")) req->id = StrOf(msg["rid"]);
  if (msg.HasMember("c")) {
    if (msg["c"].IsUint64()) {
      req->correlation_id = msg["c"].GetUint64();
    } else if (msg["c"].IsString()) {
      req->correlation_id_str = StrOf(msg["c"]);
    }
  }
  if (msg.HasMember("t") && msg["t"].IsUint64()) req->timeout_us = msg["t"].GetUint64();
  if (msg.HasMember("f") && msg["f"].IsUint64()) {
    req->sequence_start = msg["f"].GetUint64() & 1;
    req->sequence_end = msg["f"].GetUint64() & 2;
  }
  if (msg.HasMember("p") && msg["p"].IsString()) req->parameters = ParseParameters(StrOf(msg["p"]));
  for (const auto& d : msg["i"].GetArray()) {
    auto t = DecodeTensor(d, frame, maps.value());
    if (!t.ok()) return reply_error(t.status());
    req->inputs.push_back(std::move(t.value()));
  }
  for (const auto& o : msg["o"].GetArray()) req->outputs.push_back({StrOf(o), 0});
  // exec(decoupled=True) takes every response of a decoupled model; plain exec() one.
  req->multiple_responses = msg.HasMember("d") && msg["d"].IsBool() && msg["d"].GetBool();
  req->endpoint = "BLS exec(decoupled=False)";
  req->arrival_ns = NowNs();
  size_t inline_max = info.options.inline_max;
  std::string label = info.label;
  req->on_complete = [channel, id, inline_max, label](std::unique_ptr<InferenceResponse> resp) {
    EncodedTensors enc;
    Status st = resp->status;
    if (st.ok()) {
      std::vector<const Tensor*> outs;
      for (const auto& t : resp->outputs) outs.push_back(&t);
      st = EncodeTensors(outs, inline_max, enc);
    }
    std::string json = JsonOf([&](Writer& w) {
      w.StartObject();
      w.Key("op");
      w.String("bls_response");
      w.Key("id");
      w.Uint64(id);
      if (!resp->final) {
        w.Key("final");
        w.Bool(false);
      }
      if (resp->flag_only && st.ok()) {
        w.Key("null");
        w.Bool(true);
      }
      w.Key("error");
      if (st.ok()) {
        w.Null();
        w.Key("o");
        w.RawValue(enc.descs.data(), enc.descs.size(), rapidjson::kArrayType);
        if (!resp->parameters.empty()) {
          w.Key("p");
          WriteString(w, ParametersJson(resp->parameters));
        }
      } else {
        WriteString(w, st.message());
      }
      w.EndObject();
    });
    int fd = enc.segment.get();
    Status sent =
        channel->Send(json, st.ok() ? std::span<const Chunk>(enc.tail) : std::span<const Chunk>{},
                      fd >= 0 ? std::span<const int>(&fd, 1) : std::span<const int>{});
    if (!sent.ok()) FS_LOG_VERBOSE(1, "{}: BLS response dropped: {}", label, sent.message());
  };
  if (!info.dispatch) {
    auto cb = std::move(req->on_complete);
    auto resp = std::make_unique<InferenceResponse>();
    resp->status = Unavailable("BLS is not available here");
    cb(std::move(resp));
    return;
  }
  info.dispatch(std::move(req));
}

void HandleSideMessage(const ModelInfo& info, const std::string& who,
                       const std::shared_ptr<Channel>& channel, const std::string& op,
                       const rapidjson::Document& msg, const Frame& frame, uint64_t metrics_owner);

// Reads frames until one whose "op" is `want`, serving log and BLS messages meanwhile.
Status Converse(const ModelInfo& info, const std::string& who, StubProcess& proc,
                std::string_view want, Frame& frame, rapidjson::Document& msg,
                std::optional<Clock::time_point> deadline = std::nullopt,
                uint64_t metrics_owner = 0) {
  for (;;) {
    FS_RETURN_IF_ERROR(proc.channel()->Receive(frame, proc.pidfd(), deadline));
    msg.Parse(frame.json().data(), frame.json().size());
    if (msg.HasParseError() || !msg.IsObject() || !msg.HasMember("op"))
      return Internal("malformed message from the Python process");
    std::string op = StrOf(msg["op"]);
    if (op == want) return Status::Ok();
    HandleSideMessage(info, who, proc.channel(), op, msg, frame, metrics_owner);
  }
}

// pb_utils.MetricFamily / Metric: creation and value() answer (as "bls_response", the
// stub's one reply channel), updates do not (the stub checked them already; a failure
// is logged).
void HandleMetric(const ModelInfo& info, const std::string& who,
                  const std::shared_ptr<Channel>& channel, const rapidjson::Document& msg,
                  uint64_t owner) {
  namespace cm = custom_metrics;
  const std::string action = StrOf(msg["a"]);
  auto num = [&](const char* k) {
    return msg.HasMember(k) && msg[k].IsNumber() ? msg[k].GetDouble() : 0.0;
  };
  auto id = [&](const char* k) {
    return msg.HasMember(k) && msg[k].IsUint64() ? msg[k].GetUint64() : 0;
  };
  Result<double> answer = 0.0;
  if (owner == 0) {
    answer = Unimplemented("custom metrics are not available here (auto_complete_config)");
  } else if (action == "family") {
    int kind = static_cast<int>(num("k"));
    if (kind < 0 || kind > 2) {
      answer = InvalidArgument("MetricFamily kind must be COUNTER, GAUGE or HISTOGRAM");
    } else {
      auto r = cm::AddFamily(owner, StrOf(msg["n"]), StrOf(msg["d"]), static_cast<cm::Kind>(kind));
      answer = r.ok() ? Result<double>(static_cast<double>(*r)) : Result<double>(r.status());
    }
  } else if (action == "metric") {
    std::map<std::string, std::string> labels;
    if (msg.HasMember("l") && msg["l"].IsObject())
      for (auto it = msg["l"].MemberBegin(); it != msg["l"].MemberEnd(); ++it)
        labels[StrOf(it->name)] = StrOf(it->value);
    std::vector<double> buckets;
    if (msg.HasMember("b") && msg["b"].IsArray())
      for (const auto& b : msg["b"].GetArray())
        if (b.IsNumber()) buckets.push_back(b.GetDouble());
    auto r = cm::AddMetric(owner, id("f"), labels, buckets);
    answer = r.ok() ? Result<double>(static_cast<double>(*r)) : Result<double>(r.status());
  } else if (action == "value") {
    answer = cm::Value(id("m"));
  } else {
    Status st = action == "inc"   ? cm::Increment(id("m"), num("v"))
                : action == "set" ? cm::Set(id("m"), num("v"))
                                  : cm::Observe(id("m"), num("v"));
    if (!st.ok()) FS_LOG_WARNING("{} {}: metric {}: {}", info.label, who, action, st.message());
    return;
  }
  std::string json = JsonOf([&](Writer& w) {
    w.StartObject();
    w.Key("op");
    w.String("bls_response");
    w.Key("id");
    w.Uint64(id("rid"));
    w.Key("error");
    if (answer.ok()) {
      w.Null();
      w.Key("v");
      w.Double(*answer);
    } else {
      WriteString(w, answer.status().message());
    }
    w.EndObject();
  });
  (void)channel->Send(json);
}

// Messages the process may send at any time: log lines, BLS requests, custom metrics.
void HandleSideMessage(const ModelInfo& info, const std::string& who,
                       const std::shared_ptr<Channel>& channel, const std::string& op,
                       const rapidjson::Document& msg, const Frame& frame, uint64_t metrics_owner) {
  if (op == "log") {
    std::string level = StrOf(msg["l"]);
    std::string text = StrOf(msg["m"]);
    if (level == "error") {
      FS_LOG_ERROR("{} {}: {}", info.label, who, text);
    } else if (level == "warn") {
      FS_LOG_WARNING("{} {}: {}", info.label, who, text);
    } else if (level == "verbose") {
      FS_LOG_VERBOSE(1, "{} {}: {}", info.label, who, text);
    } else {
      FS_LOG_INFO("{} {}: {}", info.label, who, text);
    }
  } else if (op == "bls") {
    DispatchBls(info, channel, msg, frame);
  } else if (op == "metric") {
    HandleMetric(info, who, channel, msg, metrics_owner);
  } else {
    FS_LOG_WARNING("{} {}: unexpected message '{}' from the Python process", info.label, who, op);
  }
}

std::string ErrorText(const rapidjson::Document& msg) {
  return msg.HasMember("error") && msg["error"].IsString() ? StrOf(msg["error"]) : "";
}

void LogTraceback(const ModelInfo& info, const std::string& who, const rapidjson::Document& msg) {
  if (msg.HasMember("tb") && msg["tb"].IsString())
    FS_LOG_ERROR("{} {}: {}", info.label, who, StrOf(msg["tb"]));
}

class PythonInstance : public BackendInstance {
 public:
  PythonInstance(std::shared_ptr<const ModelInfo> info, InstanceSpec spec)
      : info_(std::move(info)),
        spec_(std::move(spec)),
        who_("instance " + spec_.name),
        spin_(info_->options.spin) {}

  // Starts the supervisor thread, which spawns the process and runs initialize().
  Status Start() {
    stop_fd_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
    if (stop_fd_.get() < 0) return Internal("eventfd failed");
    std::promise<Status> started;
    auto result = started.get_future();
    supervisor_ = std::thread([this, p = std::move(started)]() mutable { Supervise(p); });
    return result.get();
  }

  ~PythonInstance() override {
    if (supervisor_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stopping_ = true;
      }
      cv_.notify_all();
      uint64_t one = 1;
      (void)!write(stop_fd_.get(), &one, sizeof(one));
      supervisor_.join();
    }
  }

  bool WaitsOnAnotherProcess() const override { return true; }

  void Execute(std::span<InferenceRequest* const> requests,
               std::span<InferenceResponse* const> responses) override {
    // The wait below may last until requests of this thread's turn ran (a BLS call the
    // model makes, a restart): the turn's deferred wake-ups go now.
    WakeBatch::Pause pause;
    std::unique_lock<std::mutex> lock(mu_);
    // Batches another loop's thread started end first (they own the socket's replies).
    cv_.wait(lock, [&] { return on_loop_.empty(); });
    if (!AwaitProcess(lock, responses)) return;
    if (info_->decoupled) {
      for (auto* r : requests) {
        if (!r->response_sender) {
          Fail(responses, Internal(info_->label + ": a decoupled model needs each request's "
                                                  "response sender (warmup cannot run it)"));
          return;
        }
      }
    }
    Flight flight;
    Status st = Send(requests, flight);
    if (st.ok()) {
      if (info_->decoupled) {
        st = AwaitExecuted(flight.tokens, responses);
      } else {
        const Channel& channel = *proc_->channel();
        spin_.Spin([&] { return channel.Readable(); });
        Frame frame;
        rapidjson::Document msg;
        st = Converse(*info_, who_, *proc_, "done", frame, msg, std::nullopt, metrics_owner_);
        if (st.ok()) st = TakeReply(requests, responses, flight, frame, msg);
      }
    }
    if (!st.ok()) Fail(responses, FailureReason(st));
  }

  // On an I/O thread's loop: the batch goes to the process and the thread goes on serving
  // its connections; the reply is read when the socket turns readable (ReadOnLoop). A
  // second batch may follow before the first is answered: the process reads it as soon
  // as it is done with the first, without sleeping in between.
  bool StartExecute(std::span<InferenceRequest* const> requests,
                    std::span<InferenceResponse* const> responses,
                    std::function<void()> done) override {
    ReadinessWatch* watch = ThreadReadinessWatch();
    if (info_->decoupled || watch == nullptr) return false;
    std::unique_lock<std::mutex> lock(mu_);
    // Anything but a live process: Execute waits for the restart or answers the error.
    // (Never with batches on the way: those end first, as the scheduler needs.)
    if (on_loop_.empty() &&
        (stopping_ || !failed_.empty() || !proc_ || proc_dead_ || proc_->Exited()))
      return false;
    auto pending = std::make_shared<OnLoop>();
    if (Status sent = Send(requests, pending->flight); !sent.ok()) {
      if (on_loop_.empty()) return false;  // Execute meets it again
      // Behind others: the process is unusable now. Ended, it closes the socket, and the
      // reader answers every batch on the way, this one included.
      proc_->Kill();
    }
    pending->requests = requests;
    pending->responses = responses;
    pending->done = std::move(done);
    on_loop_.push_back(std::move(pending));
    if (reading_) return true;  // the reader of the batches ahead reads this one too
    reading_ = true;
    const int fd = proc_->channel()->fd();
    lock.unlock();
    watch->WhenReadable(fd, [this] { ReadOnLoop(/*readable=*/true); });
    return true;
  }

  bool StartsWithoutWaiting() const override { return !info_->decoupled; }
  size_t PipelineDepth() const override { return info_->decoupled ? 1 : 2; }

 private:
  static void Fail(std::span<InferenceResponse* const> responses, const Status& st) {
    for (auto* r : responses) {
      r->outputs.clear();
      r->status = st;
    }
  }

  // What a sent batch's reply may point into, kept until the reply is read.
  struct Flight {
    std::shared_ptr<Arena> arena;
    std::map<uint64_t, std::shared_ptr<ShareableBuffer>> regions;  // the batch's, by id
    std::vector<uint64_t> tokens;                                  // decoupled streams
    std::shared_ptr<ArenaHold> hold;  // the inputs in the arena, until the reply is read
  };
  // A batch StartExecute sent, until ReadOnLoop has its reply.
  struct OnLoop {
    Flight flight;
    std::span<InferenceRequest* const> requests;
    std::span<InferenceResponse* const> responses;
    std::function<void()> done;
  };

  // Under mu_: waits while a process that just died is being replaced; false (the
  // responses failed) when there is none to run on.
  bool AwaitProcess(std::unique_lock<std::mutex>& lock,
                    std::span<InferenceResponse* const> responses) {
    // One that died while idle is noticed here too, so no request is sent to it.
    for (;;) {
      cv_.wait(lock, [&] { return stopping_ || !failed_.empty() || (proc_ && !proc_dead_); });
      if (!proc_ || proc_dead_) break;
      if (!proc_->Exited()) {
        // A decoupled model's reader sees the socket close a moment before the process
        // has exited: that process is gone too, wait for its end and then its successor.
        if (!info_->decoupled || !ReaderEnded()) return true;
        proc_->Kill();
        proc_->WaitAndDescribe(/*reap=*/false);
      }
      proc_dead_ = true;
    }
    Fail(responses,
         Unavailable(info_->label + " " + who_ + ": " + (failed_.empty() ? "stopping" : failed_)));
    return false;
  }

  // Under mu_: what a batch whose round trip failed with `st` is answered. Unavailable
  // means the process died under it; the supervisor (woken by its pidfd) restarts it.
  Status FailureReason(Status st) {
    if (st.code() == StatusCode::kUnavailable) {
      proc_dead_ = true;
      // A broken socket to a live process leaves it useless too: end it, so the wait
      // below cannot hang and the supervisor replaces it.
      if (!proc_->Exited()) proc_->Kill();
      std::string how = proc_->WaitAndDescribe(/*reap=*/false);
      st = Unavailable(info_->label + " " + who_ + ": the Python process (pid " +
                       std::to_string(proc_->pid()) + ") " + how +
                       " while executing this request (the server restarts it unless it "
                       "keeps dying)");
    }
    return st;
  }

  bool ReaderEnded() const {
    if (!inbox_) return false;
    std::lock_guard<std::mutex> lock(inbox_->mu);
    return inbox_->ended;
  }

  // Sends one batch to execute(); `flight` keeps what its reply may point into.
  // Unavailable means the process is gone.
  Status Send(std::span<InferenceRequest* const> requests, Flight& flight) {
    const ModelInfo& info = *info_;
    // Inputs are copied once, into the arena the process maps (request bytes live in the
    // server's heap, which the process cannot see), unless they lie in a shareable buffer
    // (a large HTTP body): then the process maps that buffer (once) and reads them there.
    std::vector<std::optional<ShareableSpan>> shared;
    std::map<uint64_t, std::shared_ptr<ShareableBuffer>>& regions = flight.regions;  // by id
    std::vector<const ShareableBuffer*> new_regions;  // the process has not mapped them yet
    size_t need = 0;
    for (auto* r : requests) {
      for (const auto& t : r->inputs) {
        auto& span = shared.emplace_back();
        if (t.byte_size >= kShareMinBytes) span = FindShareable(t.data, t.byte_size);
        if (span) {
          const uint64_t id = span->buffer->id();
          if (regions.count(id) || regions_sent_.count(id)) {
            regions.emplace(id, span->buffer);
          } else if (new_regions.size() < kMaxNewRegions) {
            regions.emplace(id, span->buffer);
            regions_sent_.insert(id);
            new_regions.push_back(span->buffer.get());
          } else {
            span.reset();  // descriptors per message are limited: this one is copied
          }
        }
        if (!span) need = AlignUp(need) + t.byte_size;
      }
    }
    // Buffers the process mapped that are gone now: it unmaps them. Looked up only when
    // the pool freed any since the last look (read first: a free during the look shows
    // next time).
    std::vector<uint64_t> gone_regions;
    const uint64_t freed_now = regions_sent_.empty() ? freed_seen_ : ShareableBuffersFreed();
    const bool look = freed_now != freed_seen_;
    freed_seen_ = freed_now;
    for (auto it = regions_sent_.begin(); look && it != regions_sent_.end();) {
      if (regions.count(*it) || ShareableBufferAlive(*it)) {
        ++it;
      } else {
        gone_regions.push_back(*it);
        it = regions_sent_.erase(it);
      }
    }
    int new_arena_fd = -1;
    UniqueFd arena_fd_guard;
    std::vector<int64_t> dropped_arenas;
    auto arena = PickArena(need, &new_arena_fd, &dropped_arenas);
    if (!arena.ok()) return arena.status();
    arena_fd_guard = UniqueFd(new_arena_fd);
    char* const arena_data = arena.value()->map->data();
    std::vector<int64_t> freed;
    {
      std::lock_guard<std::mutex> lock(segments_->mu);
      freed.swap(segments_->released);
    }
    std::vector<uint64_t>& tokens = flight.tokens;
    std::string json = JsonOf([&](Writer& w) {
      w.StartObject();
      w.Key("op");
      w.String("execute");
      if (new_arena_fd >= 0) {
        w.Key("arena");
        w.StartArray();
        w.Uint(0);
        w.Uint64(arena.value()->map->size());
        w.Int64(arena.value()->id);
        w.EndArray();
      }
      WriteIds(w, "adrop", dropped_arenas);
      w.Key("ai");
      w.Int64(arena.value()->id);
      if (!new_regions.empty()) {
        // [fd index, id, size]: the descriptors follow the arena's, if any.
        w.Key("regions");
        w.StartArray();
        for (size_t k = 0; k < new_regions.size(); ++k) {
          w.StartArray();
          w.Uint64((new_arena_fd >= 0 ? 1 : 0) + k);
          w.Uint64(new_regions[k]->id());
          w.Uint64(new_regions[k]->capacity());
          w.EndArray();
        }
        w.EndArray();
      }
      WriteIds(w, "rdrop", gone_regions);
      std::vector<uint64_t> used;  // outputs may point into these
      for (const auto& [id, _] : regions) used.push_back(id);
      WriteIds(w, "ru", used);
      WriteIds(w, "free", freed);
      // The process polls for the next message only for a lone client, whose next
      // request follows the reply at once. With several, the next batch is formed while
      // the I/O thread writes this one's answers and reads what came meanwhile; a poll
      // over that time takes CPU from that thread and from the clients.
      if (info.options.stub_spin.count() > 0 && LoneClient()) {
        w.Key("sp");
        w.Int64(info.options.stub_spin.count());
        w.Key("lo");
        w.Bool(true);
      }
      w.Key("m");
      WriteString(w, info.model_name);
      w.Key("r");
      w.StartArray();
      size_t off = 0;
      size_t input_index = 0;
      for (auto* r : requests) {
        // [outputs, inputs] and, when any is set, {id, c, q, f, p}: the common request
        // costs the process no dict.
        w.StartArray();
        w.StartArray();
        if (r->outputs.empty()) {
          for (const auto& n : info.output_names) WriteString(w, n);
        } else {
          for (const auto& o : r->outputs) WriteString(w, o.name);
        }
        w.EndArray();
        w.StartArray();
        for (const auto& t : r->inputs) {
          const auto& span = shared[input_index++];
          WriteTensorHead(w, t);
          if (span) {
            w.String("r");
            w.Uint64(span->buffer->id());
            w.Uint64(span->offset);
          } else {
            off = AlignUp(off);
            if (t.byte_size) std::memcpy(arena_data + off, t.data, t.byte_size);
            w.String("a");
            w.Uint64(off);
            off += t.byte_size;
          }
          w.Uint64(t.byte_size);
          w.EndArray();
        }
        w.EndArray();
        const int flags = (r->sequence_start ? 1 : 0) | (r->sequence_end ? 2 : 0);
        if (!r->id.empty() || !r->correlation_id_str.empty() || r->correlation_id != 0 ||
            r->response_sender || flags != 0 || !r->parameters.empty()) {
          w.StartObject();
          if (!r->id.empty()) {
            w.Key("id");
            WriteString(w, r->id);
          }
          if (!r->correlation_id_str.empty()) {
            w.Key("c");
            WriteString(w, r->correlation_id_str);
          } else if (r->correlation_id != 0) {
            w.Key("c");
            w.Uint64(r->correlation_id);
          }
          if (r->response_sender) {
            // Decoupled: the process answers through this token, at any time.
            uint64_t token = next_stream_++;
            {
              std::lock_guard<std::mutex> lock(streams_mu_);
              streams_[token] = r->response_sender;
            }
            tokens.push_back(token);
            w.Key("q");
            w.Uint64(token);
          }
          if (flags) {
            w.Key("f");
            w.Int(flags);
          }
          if (!r->parameters.empty()) {
            w.Key("p");
            WriteString(w, ParametersJson(r->parameters));
          }
          w.EndObject();
        }
        w.EndArray();
      }
      w.EndArray();
      w.EndObject();
    });
    std::vector<int> fds;
    if (new_arena_fd >= 0) fds.push_back(new_arena_fd);
    for (const ShareableBuffer* b : new_regions) fds.push_back(b->fd());
    if (Status sent = proc_->channel()->Send(json, {}, fds); !sent.ok()) {
      for (const ShareableBuffer* b : new_regions) regions_sent_.erase(b->id());
      return sent;
    }

    flight.arena = arena.value();
    flight.hold = std::make_shared<ArenaHold>(arena.value());  // no other batch writes it
    return Status::Ok();
  }

  // The process's "done" for a sent batch: fills the responses (or fails them all with
  // execute()'s exception).
  Status TakeReply(std::span<InferenceRequest* const> requests,
                   std::span<InferenceResponse* const> responses, Flight& flight, Frame& frame,
                   const rapidjson::Document& msg) {
    const ModelInfo& info = *info_;
    FS_RETURN_IF_ERROR(UpdateSegments(msg, frame));
    if (msg.HasMember("error") && msg["error"].IsString()) {
      // execute() raised: every request of the batch gets the exception's text.
      LogTraceback(info, who_, msg);
      Fail(responses, Internal(ErrorText(msg)));
      return Status::Ok();
    }
    auto maps = MapAll(frame);
    if (!maps.ok())
      return maps.status().code() == StatusCode::kUnavailable ? Internal(maps.status().message())
                                                              : maps.status();
    if (!msg.HasMember("r") || !msg["r"].IsArray() || msg["r"].Size() != requests.size())
      return Internal("malformed execute reply from the Python process");
    const auto& items = msg["r"].GetArray();
    SegmentRefs refs{segments_, {}, flight.arena, nullptr, std::move(flight.regions)};
    for (size_t i = 0; i < requests.size(); ++i) {
      // [outputs] or [outputs, parameters]; an error is an object.
      const auto& item = items[i];
      const bool outputs = item.IsArray() && item.Size() > 0;
      FillResponse(*requests[i], *responses[i], item, outputs ? &item[0] : nullptr,
                   outputs && item.Size() > 1 ? &item[1] : nullptr, frame, maps.value(), refs);
    }
    return Status::Ok();
  }

  // The batches StartExecute sent, in order: the frames that are there now. Side messages
  // (log, BLS, metrics) are served as they come; the thread never waits for the next
  // frame (a BLS call may need this very loop), the loop calls again when one arrives.
  void ReadOnLoop(bool readable) {
    for (;;) {
      std::vector<std::shared_ptr<OnLoop>> ended;
      bool more = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        Status st;
        Frame frame;
        rapidjson::Document msg;
        for (;; readable = false) {
          // (No loop: a listener's end runs what still waits, and then this blocks.)
          ReadinessWatch* watch = ThreadReadinessWatch();
          bool none_yet = false;
          st = proc_->channel()->Receive(frame, proc_->pidfd(), std::nullopt,
                                         !readable && watch != nullptr ? &none_yet : nullptr);
          if (st.ok() && none_yet) {
            const int fd = proc_->channel()->fd();
            lock.unlock();
            watch->WhenReadable(fd, [this] { ReadOnLoop(/*readable=*/true); });
            return;
          }
          if (!st.ok()) break;
          msg.Parse(frame.json().data(), frame.json().size());
          if (msg.HasParseError() || !msg.IsObject() || !msg.HasMember("op")) {
            st = Internal("malformed message from the Python process");
            break;
          }
          const std::string op = StrOf(msg["op"]);
          if (op == "done") {
            std::shared_ptr<OnLoop> front = std::move(on_loop_.front());
            on_loop_.pop_front();
            st = TakeReply(front->requests, front->responses, front->flight, frame, msg);
            if (st.code() != StatusCode::kUnavailable) {
              if (!st.ok()) Fail(front->responses, st);
              ended.push_back(std::move(front));
              st = Status::Ok();
            } else {
              on_loop_.push_front(std::move(front));
            }
            break;
          }
          HandleSideMessage(*info_, who_, proc_->channel(), op, msg, frame, metrics_owner_);
        }
        if (!st.ok()) {
          // The process is gone: every batch on the way gets the reason.
          const Status reason = FailureReason(st);
          for (auto& p : on_loop_) {
            Fail(p->responses, reason);
            ended.push_back(std::move(p));
          }
          on_loop_.clear();
        }
        more = !on_loop_.empty();
        if (!more) reading_ = false;
      }
      readable = false;  // the next frame may not be there yet
      // Before the last `done`, which may let the scheduler (and this instance) go.
      if (!more) cv_.notify_all();  // the supervisor may wait for the batches' end
      for (auto& p : ended) {
        std::function<void()> done = std::move(p->done);
        done();
      }
      if (!more) return;
    }
  }

  // The arena the next batch's inputs (`need` bytes) go into: the smallest idle one that
  // fits, else a new one (its descriptor in *new_fd, for the process to map). Idle arenas
  // beyond kIdleArenas go, the smallest first; the process is told (*dropped). Arenas never
  // shrink and idle ones of every size stay: under concurrency batches of different sizes
  // come while others are held, and a fresh arena pays its page faults on both sides.
  Result<std::shared_ptr<Arena>> PickArena(size_t need, int* new_fd,
                                           std::vector<int64_t>* dropped) {
    constexpr size_t kIdleArenas = 4;
    const Options& o = info_->options;
    std::shared_ptr<Arena> best;
    size_t largest = 0;
    for (const auto& a : arenas_) {
      largest = std::max(largest, a->map->size());
      if (a->map->size() >= need && a->Idle() && (!best || a->map->size() < best->map->size()))
        best = a;
    }
    if (best) return best;
    size_t size = std::max(o.shm_default, AlignUp(need, o.shm_growth));
    if (largest > 0 && largest < need) size = std::max(size, largest + o.shm_growth);
    auto created = CreateSegment(size, new_fd);
    if (!created.ok()) return created.status();
    best = std::make_shared<Arena>(next_arena_id_++, created.value());
    std::vector<std::shared_ptr<Arena>*> idle;
    for (auto& a : arenas_)
      if (a->Idle()) idle.push_back(&a);
    if (idle.size() > kIdleArenas) {
      std::sort(idle.begin(), idle.end(),
                [](auto* x, auto* y) { return (*x)->map->size() > (*y)->map->size(); });
      for (size_t k = kIdleArenas; k < idle.size(); ++k) {
        dropped->push_back((*idle[k])->id);
        *idle[k] = nullptr;
      }
      std::erase(arenas_, nullptr);
    }
    arenas_.push_back(best);
    return best;
  }

  // Decoupled: waits for execute() to return. Its responses went (or will go) through
  // the senders; if it raised, each request of the batch not yet finished gets the error.
  Status AwaitExecuted(const std::vector<uint64_t>& tokens,
                       std::span<InferenceResponse* const> responses) {
    Frame frame;
    rapidjson::Document msg;
    FS_RETURN_IF_ERROR(AwaitFrame("done", frame, msg, std::nullopt));
    std::string error = ErrorText(msg);
    if (error.empty()) return Status::Ok();
    LogTraceback(*info_, who_, msg);
    {
      std::lock_guard<std::mutex> lock(streams_mu_);
      for (uint64_t t : tokens) streams_.erase(t);
    }
    Fail(responses, Internal(error));
    return Status::Ok();
  }

  // Decoupled: the next "done"/"finalize_done" frame the reader set aside.
  Status AwaitFrame(std::string_view want, Frame& frame, rapidjson::Document& msg,
                    std::optional<Clock::time_point> deadline) {
    std::unique_lock<std::mutex> lock(inbox_->mu);
    for (;;) {
      auto ready = [&] { return !inbox_->frames.empty() || inbox_->ended; };
      if (deadline) {
        if (!inbox_->cv.wait_until(lock, *deadline, ready))
          return Status(StatusCode::kDeadlineExceeded,
                        "no '" + std::string(want) + "' from the Python process");
      } else {
        inbox_->cv.wait(lock, ready);
      }
      if (inbox_->frames.empty()) return inbox_->end;
      frame = std::move(inbox_->frames.front());
      inbox_->frames.pop_front();
      msg.Parse(frame.json().data(), frame.json().size());
      if (!msg.HasParseError() && msg.IsObject() && StrOf(msg["op"]) == want) return Status::Ok();
    }
  }

  // Decoupled: reads every frame of the process, from init_done until it ends. Responses
  // go straight to their senders; "done" and "finalize_done" to whoever waits in
  // AwaitFrame. When the process is gone, requests still open end with an error.
  void ReadLoop(StubProcess* proc) {
    Status end;
    for (;;) {
      Frame frame;
      end = proc->channel()->Receive(frame, proc->pidfd());
      if (!end.ok()) break;
      rapidjson::Document msg;
      msg.Parse(frame.json().data(), frame.json().size());
      if (msg.HasParseError() || !msg.IsObject() || !msg.HasMember("op")) {
        FS_LOG_WARNING("{} {}: malformed message from the Python process", info_->label, who_);
        continue;
      }
      std::string op = StrOf(msg["op"]);
      if (op == "response") {
        DeliverStreamResponse(msg, frame);
      } else if (op == "done" || op == "finalize_done") {
        std::lock_guard<std::mutex> lock(inbox_->mu);
        inbox_->frames.push_back(std::move(frame));
        inbox_->cv.notify_all();
      } else {
        HandleSideMessage(*info_, who_, proc->channel(), op, msg, frame, metrics_owner_);
      }
    }
    {
      std::lock_guard<std::mutex> lock(inbox_->mu);
      inbox_->ended = true;
      inbox_->end = Unavailable(end.message());
      inbox_->cv.notify_all();
    }
    FailStreams(Unavailable(info_->label + " " + who_ + ": the Python process (pid " +
                            std::to_string(proc->pid()) +
                            ") ended before sending the request's final response"));
  }

  void DeliverStreamResponse(const rapidjson::Document& msg, const Frame& frame) {
    if (!msg.HasMember("q") || !msg["q"].IsUint64()) return;
    const uint64_t token = msg["q"].GetUint64();
    const bool final = !msg.HasMember("final") || !msg["final"].IsBool() || msg["final"].GetBool();
    std::shared_ptr<ResponseSender> sender;
    {
      std::lock_guard<std::mutex> lock(streams_mu_);
      auto it = streams_.find(token);
      if (it == streams_.end()) {
        // execute() raised after handing the sender to a thread: the request already
        // ended with that error.
        FS_LOG_VERBOSE(1, "{} {}: response for a finished request dropped", info_->label, who_);
        return;
      }
      sender = it->second;
      if (final) streams_.erase(it);
    }
    std::unique_ptr<InferenceResponse> resp;
    if (!msg.HasMember("null")) {
      resp = std::make_unique<InferenceResponse>();
      auto maps = MapAll(frame);
      if (!maps.ok()) {
        resp->status = Internal(maps.status().message());
      } else {
        static const InferenceRequest kAllOutputs;  // the sender selects the requested ones
        SegmentRefs refs{segments_, {}, nullptr, nullptr, {}};
        FillResponse(kAllOutputs, *resp, msg, msg.HasMember("o") ? &msg["o"] : nullptr,
                     msg.HasMember("p") ? &msg["p"] : nullptr, frame, maps.value(), refs);
      }
    }
    Status st = sender->Send(std::move(resp), final);
    if (!st.ok()) FS_LOG_WARNING("{} {}: {}", info_->label, who_, st.message());
  }

  void FailStreams(const Status& st) {
    std::map<uint64_t, std::shared_ptr<ResponseSender>> open;
    {
      std::lock_guard<std::mutex> lock(streams_mu_);
      open.swap(streams_);
    }
    for (auto& [_, sender] : open) {
      auto resp = std::make_unique<InferenceResponse>();
      resp->status = st;
      (void)sender->Send(std::move(resp), /*final=*/true);
    }
  }

  void StartReader() {
    inbox_ = std::make_shared<Inbox>();
    reader_ = std::thread([this, proc = proc_.get()] { ReadLoop(proc); });
  }

  // Returns once the reader saw the process end (call after it was told to or did).
  void JoinReader() {
    if (reader_.joinable()) reader_.join();
  }

  // Applies a reply's pool changes: segments the stub unmapped, and new ones (mapped here
  // once; their descriptors came with the frame).
  Status UpdateSegments(const rapidjson::Document& msg, Frame& frame) {
    if (msg.HasMember("drop") && msg["drop"].IsArray()) {
      for (const auto& id : msg["drop"].GetArray())
        if (id.IsInt64()) segments_->maps.erase(id.GetInt64());
    }
    if (msg.HasMember("new") && msg["new"].IsArray()) {
      for (const auto& entry : msg["new"].GetArray()) {
        if (!entry.IsArray() || entry.Size() != 2 || !entry[0].IsInt64() || !entry[1].IsUint() ||
            entry[1].GetUint() >= frame.fds.size())
          return Internal("malformed segment announcement from the Python process");
        auto m = MapSegment(frame.fds[entry[1].GetUint()].get());
        if (!m.ok()) return Internal(m.status().message());
        segments_->maps[entry[0].GetInt64()] = std::move(m.value());
      }
      frame.fds.clear();  // mapped: the descriptors are not needed any more
    }
    return Status::Ok();
  }

  // One response from the process: an error object {"e", "c"} (Triton's error code), or
  // `descs` (the outputs' descriptions) and `params` (JSON text; may be null).
  void FillResponse(const InferenceRequest& req, InferenceResponse& resp,
                    const rapidjson::Value& item, const rapidjson::Value* descs,
                    const rapidjson::Value* params, const Frame& frame,
                    const std::vector<std::shared_ptr<Mapping>>& maps, SegmentRefs& refs) {
    if (item.IsObject() && item.HasMember("e")) {
      int code = item.HasMember("c") && item["c"].IsInt() ? item["c"].GetInt() : 1;
      resp.status = Status(CodeOfTritonError(code), StrOf(item["e"]));
      return;
    }
    if (descs == nullptr || !descs->IsArray()) {
      resp.status = Internal("malformed response from the Python process");
      return;
    }
    if (params != nullptr && params->IsString()) resp.parameters = ParseParameters(StrOf(*params));
    for (const auto& d : descs->GetArray()) {
      auto t = DecodeTensor(d, frame, maps, &refs);
      if (!t.ok()) {
        resp.outputs.clear();
        resp.status = t.status();
        return;
      }
      if (!req.outputs.empty() &&
          std::none_of(req.outputs.begin(), req.outputs.end(),
                       [&](const RequestedOutput& o) { return o.name == t->name; }))
        continue;  // not asked for
      auto it = info_->output_types.find(t->name);
      if (it != info_->output_types.end() && it->second != t->dtype) {
        resp.outputs.clear();
        resp.status =
            Internal("output '" + t->name + "' is " + std::string(DataTypeName(t->dtype)) +
                     " but the config says " + std::string(DataTypeConfigName(it->second)));
        return;
      }
      resp.outputs.push_back(std::move(t.value()));
    }
  }

  // Spawns the process and runs initialize(); called on the supervisor thread with mu_
  // held (or before anyone else can see the instance).
  Status StartProcess() {
    const ModelInfo& info = *info_;
    auto spawned = StubProcess::Spawn(info.options.python, info.stub_path);
    if (!spawned.ok()) return spawned.status();
    std::unique_ptr<StubProcess> proc = std::move(spawned.value());
    const char* kind = spec_.kind == inference::ModelInstanceGroup::KIND_GPU     ? "GPU"
                       : spec_.kind == inference::ModelInstanceGroup::KIND_MODEL ? "MODEL"
                                                                                 : "CPU";
    std::string json = JsonOf([&](Writer& w) {
      w.StartObject();
      w.Key("op");
      w.String("init");
      WriteModelLocation(w, info);
      w.Key("inline_max");
      w.Uint64(info.options.inline_max);
      w.Key("args");
      w.StartObject();
      w.Key("model_config");
      WriteString(w, info.config_json);
      w.Key("model_instance_kind");
      w.String(kind);
      w.Key("model_instance_name");
      WriteString(w, spec_.name);
      w.Key("model_instance_device_id");
      w.String("0");
      w.Key("model_repository");
      WriteString(w, info.model_dir);
      w.Key("model_version");
      WriteString(w, std::to_string(info.version));
      w.Key("model_name");
      WriteString(w, info.model_name);
      w.EndObject();
      w.EndObject();
    });
    FS_RETURN_IF_ERROR(proc->channel()->Send(json));
    Frame frame;
    rapidjson::Document msg;
    metrics_owner_ = custom_metrics::NewOwner();
    Status st = Converse(info, who_, *proc, "init_done", frame, msg, std::nullopt, metrics_owner_);
    if (!st.ok()) {
      ReleaseMetrics();
      std::string how = proc->WaitAndDescribe(/*reap=*/true);
      return Unavailable("the Python process (" + info.options.python + " " + info.stub_path +
                         ") " + how + " before initialize() returned");
    }
    std::string error = ErrorText(msg);
    if (!error.empty()) {
      LogTraceback(info, who_, msg);
      proc->StopWithin(std::chrono::milliseconds(0));
      ReleaseMetrics();
      return InvalidArgument("initialize() failed: " + error);
    }
    FS_LOG_VERBOSE(1, "{} {}: Python process {} ready", info.label, who_, proc->pid());
    proc_ = std::move(proc);
    proc_dead_ = false;
    segments_ = std::make_shared<SegmentCache>();  // the new process has its own pool
    if (info.decoupled) StartReader();
    return Status::Ok();
  }

  // The model's custom metrics leave /metrics with its process.
  void ReleaseMetrics() {
    if (metrics_owner_ != 0) custom_metrics::ReleaseOwner(metrics_owner_);
    metrics_owner_ = 0;
  }

  void Supervise(std::promise<Status>& started) {
    Status st;
    {
      std::lock_guard<std::mutex> lock(mu_);
      st = StartProcess();
    }
    started.set_value(st);
    if (!st.ok()) return;
    std::deque<Clock::time_point> deaths;
    for (;;) {
      int pidfd = -1;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (proc_) pidfd = proc_->pidfd();
      }
      pollfd pfd[2] = {{stop_fd_.get(), POLLIN, 0}, {pidfd, POLLIN, 0}};
      int r = poll(pfd, pidfd >= 0 ? 2 : 1, -1);
      if (r < 0 && errno == EINTR) continue;
      if (pfd[0].revents) break;
      if (pidfd < 0 || !pfd[1].revents) continue;

      // The process died. Execute (if running) sees it too and answers its requests;
      // taking mu_ waits for that. A batch sent from a loop (StartExecute) is answered
      // when its socket reads the end: shut it, in case a grandchild still holds it open.
      std::unique_lock<std::mutex> lock(mu_);
      if (!on_loop_.empty()) {
        proc_->channel()->Shutdown();
        cv_.wait(lock, [&] { return on_loop_.empty(); });
      }
      JoinReader();      // it ends with the process, failing the requests still open
      ReleaseMetrics();  // initialize() of the next process makes them again
      pid_t pid = proc_->pid();
      std::string how = proc_->WaitAndDescribe(/*reap=*/true);
      proc_.reset();
      arenas_.clear();        // the new process maps new arenas
      regions_sent_.clear();  // and regions
      proc_dead_ = true;
      auto now = Clock::now();
      deaths.push_back(now);
      while (!deaths.empty() && now - deaths.front() > info_->options.restart_window)
        deaths.pop_front();
      ++restarts_;
      if (static_cast<int>(deaths.size()) >= info_->options.restart_limit) {
        failed_ = "the Python process died " + std::to_string(deaths.size()) + " times within " +
                  std::to_string(info_->options.restart_window.count()) + " s (last: pid " +
                  std::to_string(pid) + " " + how +
                  "); not restarting it (unload and load the model to start over)";
        FS_LOG_ERROR("{} {}: {}", info_->label, who_, failed_);
        if (info_->set_unavailable) info_->set_unavailable(who_ + ": " + failed_);
        cv_.notify_all();
        continue;  // pidfd is gone: wait for stop only
      }
      FS_LOG_WARNING("{} {}: the Python process (pid {}) {}; restarting it (restart {})",
                     info_->label, who_, pid, how, restarts_);
      Status restarted = StartProcess();
      if (!restarted.ok()) {
        failed_ = "restarting the Python process failed: " + restarted.message();
        FS_LOG_ERROR("{} {}: {}", info_->label, who_, failed_);
        if (info_->set_unavailable) info_->set_unavailable(who_ + ": " + failed_);
      } else {
        FS_LOG_INFO("{} {}: Python process restarted (pid {})", info_->label, who_, proc_->pid());
      }
      cv_.notify_all();
    }
    // Unload: finalize() gets finalize_timeout, then the process is killed. Done on this
    // thread because the process's PR_SET_PDEATHSIG is tied to it.
    std::lock_guard<std::mutex> lock(mu_);
    if (!proc_) return;
    auto deadline = Clock::now() + info_->options.finalize_timeout;
    Status sent = proc_->channel()->Send(R"({"op":"finalize"})");
    if (sent.ok()) {
      Frame frame;
      rapidjson::Document msg;
      // A decoupled model's threads may still be answering while finalize() waits for them.
      Status st2 = info_->decoupled ? AwaitFrame("finalize_done", frame, msg, deadline)
                                    : Converse(*info_, who_, *proc_, "finalize_done", frame, msg,
                                               deadline, metrics_owner_);
      if (st2.code() == StatusCode::kDeadlineExceeded) {
        FS_LOG_WARNING("{} {}: finalize() did not return within {} ms; killing the process",
                       info_->label, who_, info_->options.finalize_timeout.count());
      }
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    proc_->StopWithin(std::max(left, std::chrono::milliseconds(100)));
    JoinReader();
    proc_.reset();
    ReleaseMetrics();
  }

  std::shared_ptr<const ModelInfo> info_;
  InstanceSpec spec_;
  std::string who_;
  AdaptiveSpin spin_;  // used by Execute only
  UniqueFd stop_fd_;
  std::thread supervisor_;

  std::mutex mu_;  // held by Execute for a whole round trip, and while (re)starting
  std::condition_variable cv_;
  std::unique_ptr<StubProcess> proc_;
  bool proc_dead_ = false;
  // Under mu_: batches StartExecute sent, oldest first, and whether a loop reads their
  // replies (a wait is registered, or ReadOnLoop runs).
  std::deque<std::shared_ptr<OnLoop>> on_loop_;
  bool reading_ = false;
  bool stopping_ = false;
  std::string failed_;  // non-empty: not restarted any more, every request fails with it
  int restarts_ = 0;
  std::vector<std::shared_ptr<Arena>> arenas_;  // under mu_; the process maps each
  std::set<uint64_t> regions_sent_;  // under mu_: shareable buffers the process has mapped
  uint64_t freed_seen_ = 0;          // under mu_: ShareableBuffersFreed() at the last look
  int64_t next_arena_id_ = 1;        // under mu_
  std::shared_ptr<SegmentCache> segments_;

  // Decoupled models only.
  struct Inbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Frame> frames;
    bool ended = false;
    Status end;
  };
  std::shared_ptr<Inbox> inbox_;
  std::thread reader_;
  uint64_t next_stream_ = 1;  // under mu_
  // Whose custom metrics the current process made; set before initialize() runs, read
  // by the reader thread while the process lives.
  uint64_t metrics_owner_ = 0;
  std::mutex streams_mu_;
  std::map<uint64_t, std::shared_ptr<ResponseSender>> streams_;  // open requests by token
};

class PythonModel : public BackendModel {
 public:
  explicit PythonModel(std::shared_ptr<const ModelInfo> info) : info_(std::move(info)) {}

  Result<std::unique_ptr<BackendInstance>> CreateInstance(const InstanceSpec& spec) override {
    auto inst = std::make_unique<PythonInstance>(info_, spec);
    Status st = inst->Start();
    if (!st.ok()) return st;
    return std::unique_ptr<BackendInstance>(std::move(inst));
  }

 private:
  std::shared_ptr<const ModelInfo> info_;
};

// Fills the parts of ModelInfo that both loading and auto-complete need.
Status ResolveFiles(const ModelLoadContext& ctx, const inference::ModelConfig& cfg,
                    ModelInfo& info) {
  info.model_name = ctx.model_name;
  info.version = ctx.version;
  info.label = "model '" + ctx.model_name + "' version " + std::to_string(ctx.version);
  info.model_dir = ctx.model_dir;
  info.version_dir = ctx.version_dir;
  std::string file =
      cfg.default_model_filename().empty() ? "model.py" : cfg.default_model_filename();
  info.model_file = ctx.version_dir + "/" + file;
  std::error_code ec;
  if (!fs::is_regular_file(info.model_file, ec))
    return NotFound(info.label + ": no " + file + " in " + ctx.version_dir);
  auto options = ParseOptions(ctx.backend_config);
  if (!options.ok()) return options.status();
  info.options = options.value();
  info.stub_path = ModuleDirectory() + "/stub.py";
  if (!fs::is_regular_file(info.stub_path, ec))
    return NotFound("the Python backend's stub.py is missing next to the module: " +
                    info.stub_path);
  auto env = cfg.parameters().find("EXECUTION_ENV_PATH");
  if (env != cfg.parameters().end() && !env->second.string_value().empty()) {
    std::string path = env->second.string_value();
    const std::string var = "$$TRITON_MODEL_DIRECTORY";
    for (size_t p; (p = path.find(var)) != std::string::npos;)
      path.replace(p, var.size(), ctx.model_dir);
    if (path.ends_with(".tar.gz") || path.ends_with(".tgz")) {
      auto unpacked = UnpackedEnvironment(path);
      if (!unpacked.ok())
        return Status(unpacked.status().code(), info.label + ": " + unpacked.status().message());
      path = unpacked.value();
    } else if (!fs::is_directory(path, ec)) {
      return NotFound(info.label + ": EXECUTION_ENV_PATH '" + path +
                      "' is neither a folder nor a .tar.gz");
    }
    info.env_path = path;
  }
  return Status::Ok();
}

class PythonBackend : public Backend {
 public:
  Result<std::unique_ptr<BackendModel>> LoadModel(const ModelLoadContext& ctx) override {
    const auto& cfg = *ctx.config;
    auto info = std::make_shared<ModelInfo>();
    FS_RETURN_IF_ERROR(ResolveFiles(ctx, cfg, *info));
    info->decoupled = cfg.model_transaction_policy().decoupled();
    info->config_json = ModelConfigToJson(cfg);
    for (const auto& out : cfg.output()) {
      info->output_names.push_back(out.name());
      info->output_types[out.name()] = static_cast<DataType>(out.data_type());
    }
    // A stateful model returns its state outputs too (the sequence batcher keeps them).
    for (const auto& t : SequenceOutputs(cfg)) {
      info->output_names.push_back(t.name);
      info->output_types[t.name] = t.dtype;
    }
    info->dispatch = ctx.dispatch;
    info->set_unavailable = ctx.set_unavailable;
    FS_LOG_INFO("{}: {} runs in {} (one process per instance)", info->label, info->model_file,
                info->options.python);
    return std::unique_ptr<BackendModel>(new PythonModel(std::move(info)));
  }

  // Runs the model's static auto_complete_config(auto_complete_model_config) in a
  // short-lived process, when model.py defines one.
  Status AutoCompleteConfig(const ModelLoadContext& ctx, inference::ModelConfig& cfg) override {
    ModelInfo info;
    if (!ResolveFiles(ctx, cfg, info).ok()) return Status::Ok();  // the load reports it
    {
      std::ifstream in(info.model_file);
      std::stringstream text;
      text << in.rdbuf();
      if (text.str().find("auto_complete_config") == std::string::npos) return Status::Ok();
    }
    auto spawned = StubProcess::Spawn(info.options.python, info.stub_path);
    if (!spawned.ok()) return spawned.status();
    auto& proc = *spawned.value();
    std::string json = JsonOf([&](Writer& w) {
      w.StartObject();
      w.Key("op");
      w.String("autocomplete");
      WriteModelLocation(w, info);
      w.Key("config");
      std::string cj = ModelConfigToJson(cfg);
      w.RawValue(cj.data(), cj.size(), rapidjson::kObjectType);
      w.EndObject();
    });
    FS_RETURN_IF_ERROR(proc.channel()->Send(json));
    Frame frame;
    rapidjson::Document msg;
    Status st = Converse(info, "auto_complete_config", proc, "autocomplete_done", frame, msg,
                         Clock::now() + info.options.autocomplete_timeout);
    proc.StopWithin(std::chrono::milliseconds(0));
    if (!st.ok()) return Internal("auto_complete_config: " + st.message());
    std::string error = ErrorText(msg);
    if (!error.empty()) {
      LogTraceback(info, "auto_complete_config", msg);
      return InvalidArgument("auto_complete_config failed: " + error);
    }
    rapidjson::StringBuffer sb;
    Writer w(sb);
    msg["config"].Accept(w);
    inference::ModelConfig completed;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    auto parsed = google::protobuf::util::JsonStringToMessage(
        std::string(sb.GetString(), sb.GetSize()), &completed, options);
    if (!parsed.ok())
      return InvalidArgument("auto_complete_config returned an invalid config: " +
                             std::string(parsed.message()));
    cfg = std::move(completed);
    return Status::Ok();
  }
};

}  // namespace
}  // namespace python
}  // namespace flowserve

FLOWSERVE_DEFINE_BACKEND_MODULE(flowserve::python::PythonBackend)
