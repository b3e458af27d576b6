#pragma once
// EXECUTION_ENV_PATH may name a packed environment (conda-pack's .tar.gz, as Triton's
// guide makes them); the stub needs a folder it can put on sys.path.
#include <string>

#include "common/status.h"

namespace flowserve::python {

// The folder the archive was unpacked into: one per archive path, size and modification
// time, under $TMPDIR/flowserve-python-envs, unpacked on first use and shared by every
// model, instance and reload after that.
Result<std::string> UnpackedEnvironment(const std::string& archive);

}  // namespace flowserve::python
