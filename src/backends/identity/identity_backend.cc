#include "backends/identity/identity_backend.h"

#include <chrono>
#include <thread>

#include "backends/backend.h"
#include "backends/sequence_tensors.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

// Output i echoes input i, where a stateful model's inputs are the config's followed by
// its control and state inputs (so a test config can see what the sequence batcher
// fed). Each state output echoes parameter `identity_state_source` (an input name) when
// set, else the state's own input.
struct EchoPlan {
  std::vector<std::string> inputs;
  std::vector<std::pair<std::string, std::string>> states;  // output <- input
};

EchoPlan MakeEchoPlan(const inference::ModelConfig& config) {
  EchoPlan plan;
  for (const auto& in : config.input()) plan.inputs.push_back(in.name());
  for (const auto& t : SequenceInputs(config)) plan.inputs.push_back(t.name);
  auto source = config.parameters().find("identity_state_source");
  for (const auto& s : config.sequence_batching().state()) {
    plan.states.emplace_back(s.output_name(), source == config.parameters().end()
                                                  ? s.input_name()
                                                  : source->second.string_value());
  }
  return plan;
}

class IdentityInstance : public BackendInstance {
 public:
  IdentityInstance(const inference::ModelConfig* config, int delay_ms)
      : config_(config), delay_ms_(delay_ms), plan_(MakeEchoPlan(*config)) {}

  // Execute reads the config and the echo plan only.
  bool ConcurrentExecute() const override { return true; }

  void Execute(std::span<InferenceRequest* const> requests,
               std::span<InferenceResponse* const> responses) override {
    // One sleep per execution, not per request: the delay models a batch's cost.
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    const int n = std::min(static_cast<int>(plan_.inputs.size()), config_->output_size());
    for (size_t r = 0; r < requests.size(); ++r) {
      InferenceResponse& resp = *responses[r];
      resp.outputs.reserve(n + plan_.states.size());
      for (const auto& [output, input] : plan_.states) {
        const Tensor* in = requests[r]->FindInput(input);
        if (!in) continue;
        Tensor out = *in;
        out.name = output;
        resp.outputs.push_back(std::move(out));
      }
      for (int i = 0; i < n; ++i) {
        const Tensor* in = requests[r]->FindInput(plan_.inputs[i]);
        if (!in) continue;  // an optional input that was not sent
        // Aliasing the input is the whole point: the output shares the request's
        // buffer, so the identity model measures the server, not memcpy.
        Tensor out = *in;
        out.name = config_->output(i).name();
        out.dtype = static_cast<DataType>(config_->output(i).data_type());
        if (out.dtype != in->dtype) {
          resp.status =
              InvalidArgument("identity model '" + config_->name() + "': output '" + out.name +
                              "' is " + std::string(DataTypeName(out.dtype)) + " but input '" +
                              in->name + "' is " + std::string(DataTypeName(in->dtype)));
          resp.outputs.clear();
          break;
        }
        resp.outputs.push_back(std::move(out));
      }
    }
  }

 private:
  const inference::ModelConfig* config_;
  int delay_ms_;
  EchoPlan plan_;
};

class IdentityModel : public BackendModel {
 public:
  IdentityModel(const inference::ModelConfig* config, int delay_ms)
      : config_(config), delay_ms_(delay_ms) {}
  Result<std::unique_ptr<BackendInstance>> CreateInstance(const InstanceSpec&) override {
    return std::unique_ptr<BackendInstance>(new IdentityInstance(config_, delay_ms_));
  }

 private:
  const inference::ModelConfig* config_;
  int delay_ms_;
};

// Reads an integer millisecond parameter from the config; 0 when absent.
Result<int> DelayParameter(const ModelLoadContext& ctx, const std::string& key) {
  auto it = ctx.config->parameters().find(key);
  if (it == ctx.config->parameters().end()) return 0;
  const std::string& v = it->second.string_value();
  char* end = nullptr;
  long d = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || d < 0 || d > 600000) {
    return InvalidArgument("model '" + ctx.model_name + "': parameter " + key +
                           " must be an integer in [0, 600000], got '" + v + "'");
  }
  return static_cast<int>(d);
}

class IdentityBackend : public Backend {
 public:
  Result<std::unique_ptr<BackendModel>> LoadModel(const ModelLoadContext& ctx) override {
    auto delay_ms = DelayParameter(ctx, "execute_delay_ms");
    if (!delay_ms.ok()) return delay_ms.status();
    // A slow load lets tests show that loading never blocks serving.
    auto load_delay_ms = DelayParameter(ctx, "load_delay_ms");
    if (!load_delay_ms.ok()) return load_delay_ms.status();
    if (*load_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(*load_delay_ms));
    return std::unique_ptr<BackendModel>(new IdentityModel(ctx.config, *delay_ms));
  }
};

}  // namespace

void RegisterIdentityBackend() {
  RegisterBackend("identity", [] { return std::make_unique<IdentityBackend>(); });
}

}  // namespace flowserve
