#pragma once
// The files of the web console's build (web/console), compiled into the binary: the
// build writes console_asset_table.cc from the front end's output (web/console/embed.mjs).
#include <cstddef>
#include <string_view>

namespace flowserve {

struct ConsoleAsset {
  std::string_view name;  // relative to /console/, e.g. "index.html", "assets/index-1a2b.js"
  std::string_view content_type;
  std::string_view bytes;
};

// Empty when the binary was built without the console (-DFLOWSERVE_WITH_CONSOLE=OFF).
const ConsoleAsset* ConsoleAssets(size_t* count);

}  // namespace flowserve
