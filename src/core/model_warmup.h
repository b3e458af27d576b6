#pragma once
// Triton's model_warmup: each sample of the config runs on every instance before the
// model is marked ready, so the first client request does not pay for lazy
// initialization. A failing sample fails the load with the sample's name.
#include <string>

#include "common/status.h"

namespace flowserve {

class BackendInstance;
class ModelVersion;

Status RunWarmup(const ModelVersion& model, BackendInstance& instance,
                 const std::string& instance_name);

}  // namespace flowserve
