#include "backends/oneflow/oneflow_stub_backend.h"

#include "backends/backend.h"

namespace flowserve {
namespace {

class OneflowStubBackend : public Backend {
 public:
  Result<std::unique_ptr<BackendModel>> LoadModel(const ModelLoadContext& ctx) override {
    return Unimplemented(
        "backend \"oneflow\": flowserve has no OneFlow runtime. To serve model '" + ctx.model_name +
        "', export it to ONNX (oneflow_onnx's export_onnx_model, or torch.onnx.export) as "
        "<version>/model.onnx with backend: \"onnxruntime\", or to TorchScript "
        "(torch.jit.trace/script, then torch.jit.save to <version>/model.pt, or to "
        "<version>/model as OneFlow Serving lays it out) with backend: \"pytorch\"; "
        "INPUT_<i>/OUTPUT_<i> names keep binding by position");
  }
};

}  // namespace

void RegisterOneflowStubBackend() {
  RegisterBackend("oneflow", [] { return std::make_unique<OneflowStubBackend>(); });
}

}  // namespace flowserve
