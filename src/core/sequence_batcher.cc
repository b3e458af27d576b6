#include "core/sequence_batcher.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "backends/backend.h"
#include "common/adaptive_spin.h"
#include "common/logging.h"
#include "core/model_version.h"
#include "core/response_finisher.h"
#include "core/sequence_state.h"
#include "core/statistics.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

using Control = inference::ModelSequenceBatching::Control;
constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
// Triton's default max_sequence_idle_microseconds.
constexpr uint64_t kDefaultIdleUs = 1000000;
// New sequences that may wait for a slot; beyond that they are refused (Unavailable).
constexpr size_t kMaxBacklog = 1024;
constexpr std::chrono::microseconds kSpinAfterBatch{100};

// One control input: its tensor's bytes for false and for true (CORRID: the id itself).
struct ControlSpec {
  std::string name;
  Control::Kind kind = Control::CONTROL_SEQUENCE_START;
  DataType dtype = DataType::kInvalid;
  std::string false_value, true_value;
};

template <typename T>
std::string Bytes(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(v));
}

Result<std::vector<ControlSpec>> LoadControls(const inference::ModelConfig& cfg) {
  std::vector<ControlSpec> out;
  for (const auto& ci : cfg.sequence_batching().control_input()) {
    if (ci.control_size() != 1) {
      return InvalidArgument("sequence_batching control_input '" + ci.name() +
                             "' must have exactly one control, has " +
                             std::to_string(ci.control_size()));
    }
    const Control& c = ci.control(0);
    ControlSpec s;
    s.name = ci.name();
    s.kind = c.kind();
    const std::string what = "sequence_batching control_input '" + ci.name() + "' (" +
                             Control::Kind_Name(c.kind()) + ")";
    if (c.kind() == Control::CONTROL_SEQUENCE_CORRID) {
      s.dtype = static_cast<DataType>(c.data_type());
      if (s.dtype != DataType::kUint64 && s.dtype != DataType::kInt64 &&
          s.dtype != DataType::kUint32 && s.dtype != DataType::kInt32 &&
          s.dtype != DataType::kBytes) {
        return InvalidArgument(what +
                               " must have data_type TYPE_UINT64, TYPE_INT64, "
                               "TYPE_UINT32, TYPE_INT32 or TYPE_STRING");
      }
    } else if (c.int32_false_true_size() > 0) {
      if (c.int32_false_true_size() != 2)
        return InvalidArgument(what + ": int32_false_true must hold 2 values");
      s.dtype = DataType::kInt32;
      s.false_value = Bytes<int32_t>(c.int32_false_true(0));
      s.true_value = Bytes<int32_t>(c.int32_false_true(1));
    } else if (c.fp32_false_true_size() > 0) {
      if (c.fp32_false_true_size() != 2)
        return InvalidArgument(what + ": fp32_false_true must hold 2 values");
      s.dtype = DataType::kFp32;
      s.false_value = Bytes<float>(c.fp32_false_true(0));
      s.true_value = Bytes<float>(c.fp32_false_true(1));
    } else if (c.bool_false_true_size() > 0) {
      if (c.bool_false_true_size() != 2)
        return InvalidArgument(what + ": bool_false_true must hold 2 values");
      s.dtype = DataType::kBool;
      s.false_value = Bytes<uint8_t>(c.bool_false_true(0));
      s.true_value = Bytes<uint8_t>(c.bool_false_true(1));
    } else {
      return InvalidArgument(what + " needs int32_false_true, fp32_false_true or bool_false_true");
    }
    out.push_back(std::move(s));
  }
  return out;
}

Tensor MakeTensor(const std::string& name, DataType dtype, bool batched, const std::string& bytes) {
  Tensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = batched ? std::vector<int64_t>{1, 1} : std::vector<int64_t>{1};
  char* dst = AllocateTensorData(t, bytes.size());
  std::memcpy(dst, bytes.data(), bytes.size());
  return t;
}

std::string CorrIdBytes(const ControlSpec& c, const InferenceRequest& r) {
  switch (c.dtype) {
    case DataType::kBytes: {
      const std::string& s = r.correlation_id_str;
      return Bytes<uint32_t>(static_cast<uint32_t>(s.size())) + s;
    }
    case DataType::kUint32:
    case DataType::kInt32:
      return Bytes<uint32_t>(static_cast<uint32_t>(r.correlation_id));
    default:
      return Bytes<uint64_t>(r.correlation_id);
  }
}

std::string SequenceName(const InferenceRequest& r) {
  return r.correlation_id_str.empty() ? std::to_string(r.correlation_id)
                                      : "'" + r.correlation_id_str + "'";
}

uint64_t ArrivalNs(const InferenceRequest& r) { return r.arrival_ns ? r.arrival_ns : r.enqueue_ns; }

}  // namespace

struct SequenceBatcher::Impl {
  struct Sequence {
    std::string key;   // in `live`
    std::string name;  // for messages
    std::deque<std::unique_ptr<InferenceRequest>> pending;
    int instance = -1;  // -1: in the backlog
    int slot = -1;
    uint64_t start_ns = 0;  // orders sequences for the oldest strategy
    uint64_t last_ns = 0;   // last activity, for the idle timeout
    bool busy = false;      // a request of it is executing
    bool ended = false;     // its END request was queued: only a START may follow
  };
  struct Slot {
    Sequence* seq = nullptr;
    SlotState state;
  };
  struct Instance {
    BackendInstance* backend = nullptr;
    std::vector<Slot> slots;
  };
  // One row of a batch: a sequence's request, or a null request filling an idle slot.
  struct Row {
    std::unique_ptr<InferenceRequest> request;
    Sequence* seq = nullptr;  // null: a filler row
    int slot = -1;
    size_t added_outputs = 0;  // state outputs appended to request->outputs
  };

  ModelVersion* model = nullptr;
  bool batched = false;
  bool oldest = false;
  int64_t max_batch = 1;
  std::vector<int64_t> preferred;
  uint64_t max_queue_delay_ns = 0;
  float min_slot_utilization = 0;
  uint64_t idle_ns = kDefaultIdleUs * 1000;
  std::vector<ControlSpec> controls;
  const ControlSpec* corrid = nullptr;
  std::vector<StateSpec> states;
  bool state_is_output = false;  // a state output is also a config output

  std::vector<std::unique_ptr<BackendInstance>> owned;
  std::vector<Instance> instances;
  std::vector<std::thread> workers;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, std::unique_ptr<Sequence>> live;  // by "u:<id>" / "s:<id>"
  std::deque<Sequence*> backlog;
  // Written under mu; read without it while a worker spins.
  std::atomic<size_t> queued{0};
  std::atomic<bool> draining{false};

  static std::string Key(const InferenceRequest& r) {
    return r.correlation_id_str.empty() ? "u:" + std::to_string(r.correlation_id)
                                        : "s:" + r.correlation_id_str;
  }

  std::string Where() const { return "model '" + model->name() + "'"; }

  // Binds a backlogged sequence to every free slot, lowest slot index first across the
  // instances (as Triton does), so that sequences spread over the instances before they
  // share one's batch. Called under mu.
  void FillFreeSlots() {
    size_t max_slots = 0;
    for (const auto& inst : instances) max_slots = std::max(max_slots, inst.slots.size());
    for (size_t s = 0; s < max_slots && !backlog.empty(); ++s) {
      for (size_t i = 0; i < instances.size() && !backlog.empty(); ++i) {
        auto& slots = instances[i].slots;
        if (s >= slots.size() || slots[s].seq) continue;
        Sequence* seq = backlog.front();
        backlog.pop_front();
        seq->instance = static_cast<int>(i);
        seq->slot = static_cast<int>(s);
        slots[s].seq = seq;
        slots[s].state.Reset(states);
      }
    }
  }

  void Release(Sequence* seq) {
    if (seq->instance >= 0) {
      Slot& slot = instances[seq->instance].slots[seq->slot];
      slot.seq = nullptr;
      slot.state.Reset({});
    }
    FS_LOG_VERBOSE(1, "{}: sequence {} released its slot", Where(), seq->name);
    const std::string key = seq->key;
    live.erase(key);  // destroys *seq
    FillFreeSlots();
    cv.notify_all();
  }

  Status Enqueue(std::unique_ptr<InferenceRequest>& request) {
    InferenceRequest& r = *request;
    if (r.correlation_id == 0 && r.correlation_id_str.empty()) {
      return InvalidArgument("inference request to " + Where() +
                             " must specify a non-zero or non-empty correlation ID (the "
                             "sequence_id parameter): it is a stateful model");
    }
    if (corrid) {
      const bool want_string = corrid->dtype == DataType::kBytes;
      if (want_string && r.correlation_id_str.empty()) {
        return InvalidArgument("sequence_id " + std::to_string(r.correlation_id) + " for " +
                               Where() + " is an integer, but its CORRID control input '" +
                               corrid->name + "' is TYPE_STRING: send a string sequence_id");
      }
      if (!want_string && !r.correlation_id_str.empty()) {
        return InvalidArgument("sequence_id '" + r.correlation_id_str + "' for " + Where() +
                               " is a string, but its CORRID control input '" + corrid->name +
                               "' is " + std::string(DataTypeConfigName(corrid->dtype)) +
                               ": send an unsigned integer sequence_id");
      }
    }
    if (batched && r.batch_size != 1) {
      return InvalidArgument("inference request to " + Where() +
                             " must specify batch-size 1 due to requirements of sequence "
                             "batcher, got " +
                             std::to_string(r.batch_size));
    }
    r.enqueue_ns = NowNs();
    std::lock_guard<std::mutex> lock(mu);
    if (draining) {
      return Unavailable(Where() + " version " + std::to_string(model->version()) +
                         " is unloading");
    }
    const std::string key = Key(r);
    auto it = live.find(key);
    Sequence* seq = it == live.end() ? nullptr : it->second.get();
    if (!r.sequence_start && (!seq || seq->ended)) {
      return InvalidArgument("inference request for sequence " + SequenceName(r) + " to " +
                             Where() +
                             " must specify the START flag on the first request of the "
                             "sequence (the sequence is not live: never started, ended, or "
                             "idle for longer than max_sequence_idle_microseconds)");
    }
    if (!seq) {
      if (backlog.size() >= kMaxBacklog) {
        return Unavailable("sequence " + SequenceName(r) + " for " + Where() +
                           " cannot start: every sequence slot is taken and " +
                           std::to_string(kMaxBacklog) + " new sequences already wait for one");
      }
      auto owned_seq = std::make_unique<Sequence>();
      seq = owned_seq.get();
      seq->key = key;
      seq->name = SequenceName(r);
      seq->start_ns = r.enqueue_ns;
      live.emplace(key, std::move(owned_seq));
      backlog.push_back(seq);
      FillFreeSlots();
    }
    seq->ended = r.sequence_end;
    seq->last_ns = r.enqueue_ns;
    seq->pending.push_back(std::move(request));
    ++queued;
    model->stats().pending_requests.fetch_add(1, std::memory_order_relaxed);
    cv.notify_all();
    return Status::Ok();
  }

  // Frees slots whose sequence has had nothing to run for the idle time (at once when
  // draining); returns the earliest time another may go idle.
  uint64_t ReleaseIdle(uint64_t now) {
    uint64_t next = kNever;
    for (auto& inst : instances) {
      for (auto& slot : inst.slots) {
        Sequence* seq = slot.seq;
        if (!seq || seq->busy || !seq->pending.empty()) continue;
        if (draining || now >= seq->last_ns + idle_ns) {
          if (!draining) {
            FS_LOG_VERBOSE(1, "{}: sequence {} idle for {} us: slot freed", Where(), seq->name,
                           idle_ns / 1000);
          }
          Release(seq);
        } else {
          next = std::min(next, seq->last_ns + idle_ns);
        }
      }
    }
    return next;
  }

  // Picks the rows of instance i's next batch under mu; empty when it must wait (then
  // `wake` says until when).
  std::vector<Row> NextBatch(Instance& inst, uint64_t now, uint64_t& wake) {
    std::vector<Row> rows;
    std::vector<int> ready;
    uint64_t oldest_request = kNever;
    for (size_t s = 0; s < inst.slots.size(); ++s) {
      Sequence* seq = inst.slots[s].seq;
      if (seq && !seq->pending.empty()) {
        ready.push_back(static_cast<int>(s));
        oldest_request = std::min(oldest_request, seq->pending.front()->enqueue_ns);
      }
    }
    if (ready.empty()) return rows;
    const bool delay_over =
        max_queue_delay_ns == 0 || draining || now >= oldest_request + max_queue_delay_ns;
    if (oldest) {
      std::sort(ready.begin(), ready.end(), [&](int a, int b) {
        return inst.slots[a].seq->start_ns < inst.slots[b].seq->start_ns;
      });
      if (static_cast<int64_t>(ready.size()) > max_batch) ready.resize(max_batch);
      const int64_t n = static_cast<int64_t>(ready.size());
      const int64_t enough = preferred.empty() ? max_batch : preferred.back();
      if (n < enough && !delay_over && !std::binary_search(preferred.begin(), preferred.end(), n)) {
        wake = oldest_request + max_queue_delay_ns;
        return rows;
      }
    } else {
      const size_t wanted = static_cast<size_t>(
          std::ceil(min_slot_utilization * static_cast<float>(inst.slots.size())));
      if (ready.size() < wanted && !delay_over) {
        wake = oldest_request + max_queue_delay_ns;
        return rows;
      }
    }
    int next_ready = 0;
    const int last = oldest ? -1 : ready.back();
    auto take = [&](int s) {
      Sequence* seq = inst.slots[s].seq;
      Row row;
      row.request = std::move(seq->pending.front());
      seq->pending.pop_front();
      seq->busy = true;
      row.seq = seq;
      row.slot = s;
      --queued;
      rows.push_back(std::move(row));
    };
    if (oldest) {
      for (int s : ready) take(s);
    } else {
      // Direct: row i is slot i, up to the last slot with a request.
      for (int s = 0; s <= last; ++s) {
        if (next_ready < static_cast<int>(ready.size()) && ready[next_ready] == s) {
          take(s);
          ++next_ready;
        } else {
          Row row;
          row.slot = s;
          rows.push_back(std::move(row));
        }
      }
    }
    model->stats().pending_requests.fetch_sub(static_cast<int64_t>(ready.size()),
                                              std::memory_order_relaxed);
    return rows;
  }

  // Gives every row its control inputs and state; filler rows get zero inputs shaped
  // like a real row's, so the batch stays one tensor per input.
  void Prepare(Instance& inst, std::vector<Row>& rows) {
    const InferenceRequest* model_row = nullptr;
    for (auto& row : rows) {
      if (row.seq) model_row = row.request.get();
    }
    for (auto& row : rows) {
      if (!row.seq) {
        auto filler = std::make_unique<InferenceRequest>();
        filler->model_name = model->name();
        filler->model_version = model->version();
        filler->batch_size = 1;
        for (const auto& in : model_row->inputs) {
          Tensor t;
          t.name = in.name;
          t.dtype = in.dtype;
          t.shape = in.shape;
          const int64_t elems = std::max<int64_t>(0, t.ElementCount());
          const size_t size = in.dtype == DataType::kBytes
                                  ? static_cast<size_t>(elems) * 4  // empty strings
                                  : static_cast<size_t>(elems) * DataTypeSize(in.dtype);
          std::memset(AllocateTensorData(t, size), 0, size);
          filler->inputs.push_back(std::move(t));
        }
        row.request = std::move(filler);
      }
      InferenceRequest& r = *row.request;
      const bool real = row.seq != nullptr;
      Slot& slot = inst.slots[row.slot];
      if (real && r.sequence_start) slot.state.Reset(states);
      for (const auto& c : controls) {
        std::string bytes;
        switch (c.kind) {
          case Control::CONTROL_SEQUENCE_START:
            bytes = real && r.sequence_start ? c.true_value : c.false_value;
            break;
          case Control::CONTROL_SEQUENCE_END:
            bytes = real && r.sequence_end ? c.true_value : c.false_value;
            break;
          case Control::CONTROL_SEQUENCE_READY:
            bytes = real ? c.true_value : c.false_value;
            break;
          default:
            bytes = CorrIdBytes(c, r);
            break;
        }
        r.inputs.push_back(MakeTensor(c.name, c.dtype, batched, bytes));
      }
      if (!states.empty()) {
        if (real) {
          slot.state.Feed(r, batched);
        } else {
          SlotState initial;
          initial.Reset(states);
          initial.Feed(r, batched);
        }
        // Backends produce only what a request asks for when it asks for something.
        if (!r.outputs.empty()) {
          for (const auto& s : states) {
            bool asked = false;
            for (const auto& o : r.outputs) asked = asked || o.name == s.output_name;
            if (!asked) {
              r.outputs.push_back(RequestedOutput{s.output_name, 0});
              ++row.added_outputs;
            }
          }
        }
      }
    }
  }

  // Keeps each sequence's new state and hides it from the client unless asked for.
  void TakeStates(Instance& inst, Row& row, InferenceResponse& resp) {
    if (states.empty() || !resp.status.ok()) return;
    Status st = inst.slots[row.slot].state.Capture(states, resp, batched);
    if (!st.ok()) {
      resp.status = Internal(Where() + ": " + st.message());
      resp.outputs.clear();
      return;
    }
    InferenceRequest& r = *row.request;
    r.outputs.resize(r.outputs.size() - row.added_outputs);
    auto hidden = [&](const Tensor& t) {
      bool is_state = false;
      for (const auto& s : states) is_state = is_state || s.output_name == t.name;
      if (!is_state) return false;
      if (r.outputs.empty()) {
        if (!state_is_output) return true;
        for (const auto& co : model->config().output())
          if (co.name() == t.name) return false;
        return true;
      }
      for (const auto& o : r.outputs)
        if (o.name == t.name) return false;
      return true;
    };
    resp.outputs.erase(std::remove_if(resp.outputs.begin(), resp.outputs.end(), hidden),
                       resp.outputs.end());
  }

  using Answer = std::pair<ResponseCallback, std::unique_ptr<InferenceResponse>>;

  // Runs the batch and finishes the real rows' responses; the caller delivers them.
  std::vector<Answer> Execute(Instance& inst, std::vector<Row>& rows, uint64_t dequeue_ns) {
    const size_t n = rows.size();
    std::vector<InferenceRequest*> reqs;
    std::vector<std::unique_ptr<InferenceResponse>> owned_resps;
    std::vector<InferenceResponse*> resps;
    int64_t real_rows = 0;
    for (auto& row : rows) {
      reqs.push_back(row.request.get());
      auto resp = std::make_unique<InferenceResponse>();
      resp->model_name = model->name();
      resp->model_version = model->version();
      resp->id = row.request->id;
      resps.push_back(resp.get());
      owned_resps.push_back(std::move(resp));
      if (row.seq) ++real_rows;
    }
    const uint64_t infer_start = NowNs();
    inst.backend->Execute(reqs, resps);
    const uint64_t infer_end = NowNs();
    std::vector<FailureReason> reasons(n);
    for (size_t i = 0; i < n; ++i) {
      if (!rows[i].seq) continue;
      TakeStates(inst, rows[i], *owned_resps[i]);
      reasons[i] = FinishResponse(*model, *rows[i].request, *owned_resps[i]);
    }
    const uint64_t end = NowNs();

    // As the dynamic batcher: filler rows are the model's work but no one's inference.
    auto& stats = model->stats();
    stats.execution_count.fetch_add(1, std::memory_order_relaxed);
    stats.last_inference_ms.store(WallClockMs(), std::memory_order_relaxed);
    RequestTimes t;
    t.compute_input_ns = infer_start - dequeue_ns;
    t.compute_infer_ns = infer_end - infer_start;
    t.compute_output_ns = end - infer_end;
    stats.RecordBatch(static_cast<uint64_t>(real_rows), t.compute_input_ns, t.compute_infer_ns,
                      t.compute_output_ns);
    std::vector<Answer> answers;
    answers.reserve(static_cast<size_t>(real_rows));
    for (size_t i = 0; i < n; ++i) {
      if (!rows[i].seq) continue;
      InferenceRequest& r = *rows[i].request;
      t.total_ns = end - ArrivalNs(r);
      t.queue_ns = dequeue_ns - r.enqueue_ns;
      if (owned_resps[i]->status.ok()) {
        stats.RecordSuccess(t, 1);
      } else {
        stats.RecordFailure(reasons[i], t.total_ns);
      }
      answers.emplace_back(std::move(r.on_complete), std::move(owned_resps[i]));
    }
    return answers;
  }

  void WorkerLoop(Instance& inst) {
    // As the dynamic batcher's workers: poll briefly after a batch before sleeping, since
    // a sequence's next request is often on its way and a wake-up costs more than it.
    AdaptiveSpin spin(kSpinAfterBatch);
    bool hot = false;
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      const uint64_t now = NowNs();
      uint64_t wake = ReleaseIdle(now);
      uint64_t batch_wake = kNever;
      std::vector<Row> rows = NextBatch(inst, now, batch_wake);
      if (rows.empty()) {
        bool mine_busy = false;
        for (const auto& s : inst.slots) mine_busy = mine_busy || s.seq;
        if (draining && !mine_busy && backlog.empty()) return;
        if (hot && batch_wake == kNever) {
          hot = false;
          lock.unlock();
          spin.Spin([this] {
            return queued.load(std::memory_order_relaxed) > 0 ||
                   draining.load(std::memory_order_relaxed);
          });
          lock.lock();
          continue;  // look again under the lock whatever the spin saw
        }
        hot = false;
        wake = std::min(wake, batch_wake);
        if (wake == kNever) {
          cv.wait(lock);
        } else if (wake > now) {
          cv.wait_for(lock, std::chrono::nanoseconds(wake - now));
        }
        continue;
      }
      lock.unlock();
      const uint64_t dequeue_ns = NowNs();
      Prepare(inst, rows);
      std::vector<Answer> answers = Execute(inst, rows, dequeue_ns);
      std::vector<bool> ends(rows.size());
      for (size_t i = 0; i < rows.size(); ++i) {
        ends[i] = rows[i].seq && rows[i].request->sequence_end;
        rows[i].request.reset();  // release input buffers before the frontend writes
      }
      lock.lock();
      const uint64_t done = NowNs();
      for (size_t i = 0; i < rows.size(); ++i) {
        Sequence* seq = rows[i].seq;
        if (!seq) continue;
        seq->busy = false;
        seq->last_ns = done;
        // A START queued behind the END keeps the slot for the next sequence.
        if (ends[i] && seq->pending.empty()) Release(seq);
      }
      lock.unlock();
      for (auto& [callback, response] : answers) callback(std::move(response));
      hot = true;
      lock.lock();
    }
  }
};

Status AddWarmupSequenceInputs(const ModelVersion& model, int64_t batch,
                               InferenceRequest& request) {
  const auto& cfg = model.config();
  if (!cfg.has_sequence_batching()) return Status::Ok();
  auto controls = LoadControls(cfg);
  if (!controls.ok()) return controls.status();
  auto states = LoadStateSpecs(cfg, model.model_dir());
  if (!states.ok()) return states.status();
  const int64_t rows = std::max<int64_t>(1, batch);
  auto add = [&](const std::string& name, DataType dtype, std::vector<int64_t> dims,
                 const std::string& row) {
    Tensor t;
    t.name = name;
    t.dtype = dtype;
    t.shape = std::move(dims);
    if (batch > 0) t.shape.insert(t.shape.begin(), batch);
    char* dst = AllocateTensorData(t, row.size() * rows);
    for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * row.size(), row.data(), row.size());
    request.inputs.push_back(std::move(t));
  };
  for (const auto& c : *controls) {
    const std::string row = c.kind == Control::CONTROL_SEQUENCE_CORRID
                                ? CorrIdBytes(c, request)  // the sample has no id: 0 / ""
                                : c.true_value;
    add(c.name, c.dtype, {1}, row);
  }
  for (const auto& s : *states) {
    add(s.input_name, s.dtype, s.initial.shape, std::string(s.initial.data, s.initial.byte_size));
  }
  return Status::Ok();
}

SequenceBatcher::SequenceBatcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SequenceBatcher::~SequenceBatcher() { Drain(); }

Result<std::unique_ptr<SequenceBatcher>> SequenceBatcher::Create(
    ModelVersion* model, std::vector<std::unique_ptr<BackendInstance>> instances) {
  const auto& cfg = model->config();
  const auto& sb = cfg.sequence_batching();
  auto impl = std::make_unique<Impl>();
  impl->model = model;
  impl->batched = cfg.max_batch_size() > 0;
  impl->max_batch = std::max<int64_t>(1, cfg.max_batch_size());
  if (sb.max_sequence_idle_microseconds() > 0) {
    impl->idle_ns = sb.max_sequence_idle_microseconds() * 1000;
  }
  int64_t slots = impl->max_batch;
  if (sb.has_oldest()) {
    impl->oldest = true;
    const auto& o = sb.oldest();
    if (o.max_candidate_sequences() > 0) slots = o.max_candidate_sequences();
    for (int p : o.preferred_batch_size()) {
      if (p > 0 && p <= impl->max_batch) impl->preferred.push_back(p);
    }
    std::sort(impl->preferred.begin(), impl->preferred.end());
    impl->max_queue_delay_ns = o.max_queue_delay_microseconds() * 1000;
  } else {
    impl->max_queue_delay_ns = sb.direct().max_queue_delay_microseconds() * 1000;
    impl->min_slot_utilization = std::clamp(sb.direct().minimum_slot_utilization(), 0.0f, 1.0f);
  }
  if (sb.iterative_sequence()) {
    return InvalidArgument("sequence_batching iterative_sequence is not supported");
  }
  // The server feeds these: a client input of the same name would be ambiguous.
  for (const auto& ci : cfg.input()) {
    for (const auto& c : sb.control_input()) {
      if (c.name() == ci.name()) {
        return InvalidArgument("sequence_batching control_input '" + c.name() +
                               "' is also a model input: the server feeds control inputs, "
                               "remove it from `input`");
      }
    }
    for (const auto& st : sb.state()) {
      if (st.input_name() == ci.name()) {
        return InvalidArgument("sequence_batching state input_name '" + st.input_name() +
                               "' is also a model input: the server feeds state, remove it "
                               "from `input`");
      }
    }
  }
  auto controls = LoadControls(cfg);
  if (!controls.ok()) return controls.status();
  impl->controls = std::move(controls).value();
  for (const auto& c : impl->controls) {
    if (c.kind == Control::CONTROL_SEQUENCE_CORRID) impl->corrid = &c;
  }
  auto states = LoadStateSpecs(cfg, model->model_dir());
  if (!states.ok()) return states.status();
  impl->states = std::move(states).value();
  for (const auto& s : impl->states) {
    for (const auto& co : cfg.output()) {
      impl->state_is_output = impl->state_is_output || co.name() == s.output_name;
    }
  }
  impl->owned = std::move(instances);
  for (auto& b : impl->owned) {
    Impl::Instance inst;
    inst.backend = b.get();
    inst.slots.resize(static_cast<size_t>(slots));
    impl->instances.push_back(std::move(inst));
  }
  FS_LOG_INFO("model '{}' version {}: sequence batcher ({}), {} slot(s) on each of {} instance(s)",
              model->name(), model->version(), impl->oldest ? "oldest" : "direct", slots,
              impl->instances.size());
  Impl* raw = impl.get();
  for (auto& inst : impl->instances) {
    impl->workers.emplace_back([raw, i = &inst] { raw->WorkerLoop(*i); });
  }
  return std::unique_ptr<SequenceBatcher>(new SequenceBatcher(std::move(impl)));
}

Status SequenceBatcher::Enqueue(std::unique_ptr<InferenceRequest>& request) {
  return impl_->Enqueue(request);
}

void SequenceBatcher::Drain() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->draining = true;
  }
  impl_->cv.notify_all();
  for (auto& w : impl_->workers) {
    if (w.joinable()) w.join();
  }
  impl_->workers.clear();
}

size_t SequenceBatcher::QueueSize() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->queued;
}

}  // namespace flowserve
