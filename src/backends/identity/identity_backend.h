#pragma once

namespace flowserve {
// backend "identity": output i is input i (config order), dtype and shape preserved.
void RegisterIdentityBackend();
}  // namespace flowserve
