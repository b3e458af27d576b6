#pragma once
// OneFlow Serving configs say `backend: "oneflow"`. This build has no OneFlow runtime;
// the stub makes such a model fail its load with directions instead of "unknown backend".
namespace flowserve::pytorch {
void RegisterOneflowStubBackend();
}
