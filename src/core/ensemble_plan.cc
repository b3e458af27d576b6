#include "core/ensemble_plan.h"

#include <algorithm>
#include <map>

#include "common/tensor.h"
#include "core/model_version.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

// What a tensor must look like, with the batch dim (-1) prepended when batched.
struct TensorSpec {
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> dims;
  std::string source;  // who declares it, for messages
};

std::vector<int64_t> FullDims(const google::protobuf::RepeatedField<int64_t>& dims, bool batched) {
  std::vector<int64_t> out;
  if (batched) out.push_back(-1);
  out.insert(out.end(), dims.begin(), dims.end());
  return out;
}

bool ShapesCompatible(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i] && a[i] != -1 && b[i] != -1) return false;
  }
  return true;
}

std::string StepName(int i, const std::string& model) {
  return "step " + std::to_string(i) + " (model '" + model + "')";
}

template <typename List>
std::string Names(const List& list) {
  std::string out;
  for (const auto& t : list) out += (out.empty() ? "" : ", ") + t.name();
  return out.empty() ? "none" : out;
}

class PlanBuilder {
 public:
  PlanBuilder(const inference::ModelConfig& cfg, const ModelFinder& find) : c_(cfg), find_(find) {}

  Result<EnsemblePlan> Build() {
    FS_RETURN_IF_ERROR(Wiring());
    FS_RETURN_IF_ERROR(Acyclic());
    FS_RETURN_IF_ERROR(AgainstModels());
    FS_RETURN_IF_ERROR(DecoupledPlacement());
    return std::move(plan_);
  }

 private:
  Status Fail(const std::string& what) const {
    return InvalidArgument("ensemble '" + c_.name() + "': " + what);
  }

  int TensorId(const std::string& name) {
    auto [it, added] = ids_.emplace(name, static_cast<int>(plan_.tensor_names.size()));
    if (added) plan_.tensor_names.push_back(name);
    return it->second;
  }

  // Who writes each tensor and who reads it; no composing model needed yet.
  Status Wiring() {
    const auto& steps = c_.ensemble_scheduling().step();
    if (steps.empty()) return Fail("ensemble_scheduling has no steps");
    for (const auto& in : c_.input()) {
      int id = TensorId(in.name());
      producer_[id] = -1;
      plan_.input_tensors.push_back(id);
    }
    for (int i = 0; i < steps.size(); ++i) {
      const auto& s = steps[i];
      if (s.model_name() == c_.name())
        return Fail(StepName(i, s.model_name()) + " is the ensemble itself");
      if (s.output_map().empty())
        return Fail(StepName(i, s.model_name()) + " has an empty output_map");
      EnsemblePlan::Step step;
      step.model_name = s.model_name();
      step.model_version = s.model_version();
      // Sorted by model tensor name: protobuf maps have no stable order.
      std::map<std::string, std::string> outs(s.output_map().begin(), s.output_map().end());
      for (const auto& [model_tensor, ens_tensor] : outs) {
        int id = TensorId(ens_tensor);
        auto [it, added] = producer_.emplace(id, i);
        if (!added) {
          if (it->second < 0) {
            return Fail(StepName(i, s.model_name()) + " writes tensor '" + ens_tensor +
                        "', which is an ensemble input");
          }
          return Fail("tensor '" + ens_tensor + "' is produced twice: by " +
                      StepName(it->second, steps[it->second].model_name()) + " and by " +
                      StepName(i, s.model_name()));
        }
        step.outputs.push_back({model_tensor, id});
      }
      plan_.steps.push_back(std::move(step));
    }
    plan_.consumers.resize(0);
    for (int i = 0; i < steps.size(); ++i) {
      const auto& s = steps[i];
      std::map<std::string, std::string> ins(s.input_map().begin(), s.input_map().end());
      auto& step = plan_.steps[i];
      for (const auto& [model_tensor, ens_tensor] : ins) {
        auto found = ids_.find(ens_tensor);
        if (found == ids_.end() || !producer_.count(found->second)) {
          return Fail(StepName(i, s.model_name()) + " reads tensor '" + ens_tensor +
                      "', which is neither an ensemble input nor any step's output");
        }
        step.inputs.push_back({model_tensor, found->second});
        if (std::find(step.input_tensors.begin(), step.input_tensors.end(), found->second) ==
            step.input_tensors.end()) {
          step.input_tensors.push_back(found->second);
        }
      }
    }
    plan_.consumers.assign(plan_.tensor_names.size(), {});
    for (int i = 0; i < static_cast<int>(plan_.steps.size()); ++i) {
      for (int t : plan_.steps[i].input_tensors) plan_.consumers[t].push_back(i);
    }
    for (const auto& in : c_.input()) {
      if (plan_.consumers[ids_.at(in.name())].empty()) {
        return Fail("ensemble input '" + in.name() + "' is not read by any step's input_map");
      }
    }
    for (const auto& out : c_.output()) {
      auto it = ids_.find(out.name());
      if (it == ids_.end() || producer_.at(it->second) < 0) {
        return Fail("ensemble output '" + out.name() +
                    "' is not produced by any step's output_map");
      }
      plan_.output_tensors.push_back(it->second);
    }
    return Status::Ok();
  }

  // Kahn's algorithm; what is left over sits on or behind a cycle.
  Status Acyclic() const {
    const size_t n = plan_.steps.size();
    std::vector<int> waiting(n);
    std::vector<int> ready;
    for (size_t i = 0; i < n; ++i) {
      for (int t : plan_.steps[i].input_tensors) waiting[i] += producer_.at(t) >= 0 ? 1 : 0;
      if (waiting[i] == 0) ready.push_back(static_cast<int>(i));
    }
    size_t done = 0;
    while (!ready.empty()) {
      int s = ready.back();
      ready.pop_back();
      ++done;
      for (const auto& out : plan_.steps[s].outputs) {
        for (int c : plan_.consumers[out.tensor]) {
          if (--waiting[c] == 0) ready.push_back(c);
        }
      }
    }
    if (done == n) return Status::Ok();
    std::string steps, tensors;
    for (size_t i = 0; i < n; ++i) {
      if (waiting[i] == 0) continue;
      steps +=
          (steps.empty() ? "" : ", ") + StepName(static_cast<int>(i), plan_.steps[i].model_name);
      for (int t : plan_.steps[i].input_tensors) {
        int p = producer_.at(t);
        if (p >= 0 && waiting[p] > 0)
          tensors += (tensors.empty() ? "'" : ", '") + plan_.tensor_names[t] + "'";
      }
    }
    return Fail("the steps form a cycle: " + steps + " wait on each other through tensor(s) " +
                tensors);
  }

  // Each step against its composing model's config, and the tensors between them.
  Status AgainstModels() {
    std::vector<TensorSpec> spec(plan_.tensor_names.size());
    const bool ens_batched = c_.max_batch_size() > 0;
    for (const auto& in : c_.input()) {
      spec[ids_.at(in.name())] = {static_cast<DataType>(in.data_type()),
                                  FullDims(in.dims(), ens_batched), "the ensemble's input"};
    }
    std::vector<std::shared_ptr<ModelVersion>> models;
    for (int i = 0; i < static_cast<int>(plan_.steps.size()); ++i) {
      const auto& step = plan_.steps[i];
      auto model = find_(step.model_name, step.model_version);
      if (!model.ok()) {
        return Fail(StepName(i, step.model_name) +
                    ": composing model is not available: " + model.status().message());
      }
      const auto& mc = (*model)->config();
      if (ens_batched && mc.max_batch_size() < c_.max_batch_size()) {
        return Fail(StepName(i, step.model_name) + ": max_batch_size " +
                    std::to_string(mc.max_batch_size()) + " is smaller than the ensemble's " +
                    std::to_string(c_.max_batch_size()));
      }
      for (const auto& b : step.outputs) {
        auto it = std::find_if(mc.output().begin(), mc.output().end(),
                               [&](const auto& o) { return o.name() == b.model_tensor; });
        if (it == mc.output().end()) {
          return Fail(StepName(i, step.model_name) + ": output_map names '" + b.model_tensor +
                      "', which is not an output of the model (outputs: " + Names(mc.output()) +
                      ")");
        }
        spec[b.tensor] = {static_cast<DataType>(it->data_type()),
                          FullDims(it->dims(), mc.max_batch_size() > 0),
                          "output '" + b.model_tensor + "' of " + StepName(i, step.model_name)};
      }
      plan_.steps[i].decoupled = (*model)->decoupled();
      plan_.decoupled = plan_.decoupled || plan_.steps[i].decoupled;
      models.push_back(std::move(model.value()));
    }
    for (int i = 0; i < static_cast<int>(plan_.steps.size()); ++i) {
      const auto& step = plan_.steps[i];
      const auto& mc = models[i]->config();
      for (const auto& b : step.inputs) {
        auto it = std::find_if(mc.input().begin(), mc.input().end(),
                               [&](const auto& x) { return x.name() == b.model_tensor; });
        if (it == mc.input().end()) {
          return Fail(StepName(i, step.model_name) + ": input_map names '" + b.model_tensor +
                      "', which is not an input of the model (inputs: " + Names(mc.input()) + ")");
        }
        FS_RETURN_IF_ERROR(
            Match(spec[b.tensor], static_cast<DataType>(it->data_type()),
                  FullDims(it->dims(), mc.max_batch_size() > 0),
                  "input '" + b.model_tensor + "' of " + StepName(i, step.model_name),
                  plan_.tensor_names[b.tensor]));
      }
      for (const auto& in : mc.input()) {
        bool mapped = std::any_of(step.inputs.begin(), step.inputs.end(),
                                  [&](const auto& b) { return b.model_tensor == in.name(); });
        if (!mapped && !in.optional()) {
          return Fail(StepName(i, step.model_name) + ": the model's input '" + in.name() +
                      "' is not in the step's input_map");
        }
      }
    }
    for (const auto& out : c_.output()) {
      FS_RETURN_IF_ERROR(Match(spec[ids_.at(out.name())], static_cast<DataType>(out.data_type()),
                               FullDims(out.dims(), ens_batched), "the ensemble's output",
                               out.name()));
    }
    return Status::Ok();
  }

  // Each response of a decoupled step continues with a copy of the tensors that existed
  // when the step started. A step running beside it (neither before nor after it) would
  // produce its tensor into only one of those copies, so such a graph is refused.
  Status DecoupledPlacement() const {
    const size_t n = plan_.steps.size();
    std::vector<std::vector<bool>> after(n,
                                         std::vector<bool>(n, false));  // after[a][b]: b follows a
    for (size_t a = 0; a < n; ++a) {
      std::vector<int> stack{static_cast<int>(a)};
      while (!stack.empty()) {
        int s = stack.back();
        stack.pop_back();
        for (const auto& out : plan_.steps[s].outputs) {
          for (int c : plan_.consumers[out.tensor]) {
            if (!after[a][c]) {
              after[a][c] = true;
              stack.push_back(c);
            }
          }
        }
      }
    }
    for (size_t d = 0; d < n; ++d) {
      if (!plan_.steps[d].decoupled) continue;
      for (size_t s = 0; s < n; ++s) {
        if (s == d || after[d][s] || after[s][d]) continue;
        return Fail(StepName(static_cast<int>(s), plan_.steps[s].model_name) +
                    " runs beside decoupled " +
                    StepName(static_cast<int>(d), plan_.steps[d].model_name) +
                    ": with a decoupled step, every other step must run before it (feed it) "
                    "or after it (read what it produced)");
      }
    }
    return Status::Ok();
  }

  Status Match(const TensorSpec& have, DataType dtype, const std::vector<int64_t>& dims,
               const std::string& who, const std::string& tensor) const {
    if (have.dtype != dtype) {
      return Fail("tensor '" + tensor + "': " + have.source + " is " +
                  std::string(DataTypeName(have.dtype)) + " but " + who + " is " +
                  std::string(DataTypeName(dtype)));
    }
    if (!ShapesCompatible(have.dims, dims)) {
      return Fail("tensor '" + tensor + "': " + have.source + " has shape " +
                  ShapeString(have.dims) + " but " + who + " has shape " + ShapeString(dims));
    }
    return Status::Ok();
  }

  const inference::ModelConfig& c_;
  const ModelFinder& find_;
  EnsemblePlan plan_;
  std::map<std::string, int> ids_;
  std::map<int, int> producer_;  // tensor -> step index, -1 for an ensemble input
};

}  // namespace

Result<EnsemblePlan> BuildEnsemblePlan(const inference::ModelConfig& ensemble,
                                       const ModelFinder& find) {
  return PlanBuilder(ensemble, find).Build();
}

std::set<std::string> ComposingModelNames(const inference::ModelConfig& ensemble) {
  std::set<std::string> out;
  for (const auto& s : ensemble.ensemble_scheduling().step()) out.insert(s.model_name());
  return out;
}

}  // namespace flowserve
