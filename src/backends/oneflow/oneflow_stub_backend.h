#pragma once
// OneFlow Serving configs say `backend: "oneflow"`. flowserve has no OneFlow runtime;
// this built-in stub makes such a model fail its load with directions (export to
// TorchScript or ONNX) instead of "unknown backend".
namespace flowserve {
void RegisterOneflowStubBackend();
}
