#include "backends/pytorch/oneflow_backend.h"

#include "backends/backend.h"

namespace flowserve::pytorch {
namespace {

class OneflowStubBackend : public Backend {
 public:
  Result<std::unique_ptr<BackendModel>> LoadModel(const ModelLoadContext& ctx) override {
    return Unimplemented(
        "backend \"oneflow\": this flowserve build has no OneFlow runtime. To serve model '" +
        ctx.model_name +
        "', export it to TorchScript (torch.jit.trace or torch.jit.script, then "
        "torch.jit.save to <version>/model.pt, or to <version>/model as OneFlow Serving lays "
        "it out) and set backend: \"pytorch\" in config.pbtxt; INPUT_<i>/OUTPUT_<i> names "
        "keep binding by position");
  }
};

}  // namespace

void RegisterOneflowStubBackend() {
  RegisterBackend("oneflow", [] { return std::make_unique<OneflowStubBackend>(); });
}

}  // namespace flowserve::pytorch
