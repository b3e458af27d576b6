#pragma once
// The LibTorch (TorchScript) backend. Kept free of torch headers: only main.cc includes it.
namespace flowserve {
// Registers "pytorch" (config platform "pytorch_libtorch" resolves to it) and a "oneflow"
// backend whose loads fail with directions to export to TorchScript.
void RegisterPytorchBackend();
}  // namespace flowserve
