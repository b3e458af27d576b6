# The web console: web/console is built with the machine's Node.js and npm (npm ci from
# the committed lockfile, then vite) in the build tree, and its output becomes
# console_asset_table.cc, compiled into flowserve_http. npm ci runs again only when the
# lockfile changes, the build only when a source of web/console does.
option(FLOWSERVE_WITH_CONSOLE "Build the web console into the HTTP frontend (needs node, npm)" ON)
set(CONSOLE_WORK ${CMAKE_BINARY_DIR}/console)
set(CONSOLE_TABLE ${CONSOLE_WORK}/console_asset_table.cc)
set(CONSOLE_SRC ${CMAKE_SOURCE_DIR}/web/console)

if(FLOWSERVE_WITH_CONSOLE)
  find_program(NODE_PROGRAM node REQUIRED)
  find_program(NPM_PROGRAM npm REQUIRED)
  file(MAKE_DIRECTORY ${CONSOLE_WORK})
  set(CONSOLE_DEPS_STAMP ${CONSOLE_WORK}/node_modules/.package-lock.json)
  add_custom_command(OUTPUT ${CONSOLE_DEPS_STAMP}
    COMMAND ${CMAKE_COMMAND} -E copy ${CONSOLE_SRC}/package.json ${CONSOLE_SRC}/package-lock.json
            ${CONSOLE_WORK}
    COMMAND ${NPM_PROGRAM} ci --no-audit --no-fund --loglevel=error
    WORKING_DIRECTORY ${CONSOLE_WORK}
    DEPENDS ${CONSOLE_SRC}/package.json ${CONSOLE_SRC}/package-lock.json
    COMMENT "console: npm ci (web/console/package-lock.json)" VERBATIM)
  file(GLOB_RECURSE CONSOLE_SOURCES CONFIGURE_DEPENDS ${CONSOLE_SRC}/src/*)
  set(CONSOLE_TOP_FILES index.html vite.config.js embed.mjs)
  list(TRANSFORM CONSOLE_TOP_FILES PREPEND ${CONSOLE_SRC}/ OUTPUT_VARIABLE CONSOLE_TOP_PATHS)
  add_custom_command(OUTPUT ${CONSOLE_TABLE}
    COMMAND ${CMAKE_COMMAND} -E rm -rf ${CONSOLE_WORK}/src ${CONSOLE_WORK}/dist
    COMMAND ${CMAKE_COMMAND} -E copy_directory ${CONSOLE_SRC}/src ${CONSOLE_WORK}/src
    COMMAND ${CMAKE_COMMAND} -E copy ${CONSOLE_TOP_PATHS} ${CONSOLE_WORK}
    COMMAND ${NODE_PROGRAM} node_modules/vite/bin/vite.js build --logLevel warn
    COMMAND ${NODE_PROGRAM} embed.mjs dist ${CONSOLE_TABLE}
    WORKING_DIRECTORY ${CONSOLE_WORK}
    DEPENDS ${CONSOLE_DEPS_STAMP} ${CONSOLE_SOURCES} ${CONSOLE_TOP_PATHS}
    COMMENT "console: vite build, then embed web/console's output" VERBATIM)
else()
  file(WRITE ${CONSOLE_TABLE}
       "#include \"frontends/http/console_asset_table.h\"\n"
       "namespace flowserve {\n"
       "const ConsoleAsset* ConsoleAssets(size_t* count) { *count = 0; return nullptr; }\n"
       "}  // namespace flowserve\n")
endif()
target_sources(flowserve_http PRIVATE ${CONSOLE_TABLE})

# The browser tests' driver (tests/browser: playwright-core, which drives Debian's
# Chromium and never downloads a browser), installed beside the build for
# tests/e2e/test_console.py.
if(FLOWSERVE_WITH_CONSOLE AND FLOWSERVE_WITH_TESTS)
  set(BROWSER_TESTS_WORK ${CMAKE_BINARY_DIR}/browser-tests)
  set(BROWSER_DEPS_STAMP ${BROWSER_TESTS_WORK}/node_modules/.package-lock.json)
  file(MAKE_DIRECTORY ${BROWSER_TESTS_WORK})
  add_custom_command(OUTPUT ${BROWSER_DEPS_STAMP}
    COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/tests/browser/package.json
            ${CMAKE_SOURCE_DIR}/tests/browser/package-lock.json ${BROWSER_TESTS_WORK}
    COMMAND ${NPM_PROGRAM} ci --no-audit --no-fund --loglevel=error
    WORKING_DIRECTORY ${BROWSER_TESTS_WORK}
    DEPENDS ${CMAKE_SOURCE_DIR}/tests/browser/package.json
            ${CMAKE_SOURCE_DIR}/tests/browser/package-lock.json
    COMMENT "browser tests: npm ci (tests/browser/package-lock.json)" VERBATIM)
  add_custom_target(browser_test_deps ALL DEPENDS ${BROWSER_DEPS_STAMP})
endif()
