# The two set-up commands: `make serve` and `make test`. Everything else is a helper.
BUILD_DIR ?= build
PY := /usr/bin/python3
REPO ?= model_repository
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: deps build models models-resnet50 serve test unit e2e format clean bench \
	fuzz-deps fuzz test-asan test-tsan

deps:
	@scripts/install-deps.sh

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	ninja -C $(BUILD_DIR) -j $(JOBS)

models: deps
	$(PY) examples/build_repository.py --out $(REPO)

models-resnet50: deps
	$(PY) examples/build_repository.py --out $(REPO) --resnet50

serve: build models
	$(BUILD_DIR)/flowserve --model-repository=$(REPO) --http-port=$(HTTP_PORT) \
	  --grpc-port=$(GRPC_PORT) --metrics-port=$(METRICS_PORT)

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

e2e: build
	FLOWSERVE_BIN=$(abspath $(BUILD_DIR))/flowserve $(PY) -m pytest -q -p no:cacheprovider tests/e2e

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	FLOWSERVE_BIN=$(abspath $(BUILD_DIR))/flowserve $(PY) -m pytest -q -p no:cacheprovider tests/e2e

# --- hardening helpers: each in its own build tree, never the default one ---------------
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?= http_request json_infer_request binary_framing model_config grpc_infer_request
ASAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan
# libtorch, onnxruntime, grpc and python are not instrumented. ASan/UBSan see every heap
# access anyway, so the ASan tree keeps the framework backends; TSan cannot see the
# synchronization inside their thread pools, so its tree leaves them out and the tests
# that need them.
TSAN_NO_TORCH := --ignore=tests/e2e/test_pytorch.py --ignore=tests/e2e/test_backend_modules.py \
	--ignore=tests/e2e/test_onnxruntime.py \
	--deselect tests/e2e/test_ensemble.py::test_diamond_matches_steps_called_by_hand \
	--deselect tests/e2e/test_ensemble.py::test_concurrent_ensemble_requests_are_batched_and_correct \
	--deselect tests/e2e/test_ensemble.py::test_digits_pipeline_example \
	--deselect tests/e2e/test_model_features.py::test_warmup_on_a_torchscript_model \
	--deselect tests/e2e/test_python_backend.py::test_bls_to_torchscript_and_ensemble \
	--deselect tests/e2e/test_python_backend.py::test_example_digits_image_ensemble
SAN_SUPP := $(abspath fuzz/sanitizers)

fuzz-deps:
	@scripts/install-deps.sh --fuzz

# Builds every target with clang (libFuzzer + ASan + UBSan), then runs each FUZZ_SECONDS
# on the checked-in seeds plus what earlier runs found; crashes land in $(FUZZ_DIR)/crashes.
fuzz: fuzz-deps
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(FUZZ_DIR) -G Ninja -DFLOWSERVE_FUZZ=ON \
	  -DFLOWSERVE_WITH_PYTORCH=OFF -DFLOWSERVE_WITH_ONNXRUNTIME=OFF -DFLOWSERVE_WITH_TESTS=OFF
	ninja -C $(FUZZ_DIR) -j $(JOBS) fuzz_targets
	@mkdir -p $(FUZZ_DIR)/crashes
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	  echo "== fuzz $$t: $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1 $(FUZZ_DIR)/fuzz/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
	    -artifact_prefix=$(abspath $(FUZZ_DIR))/crashes/$$t- \
	    $(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t || exit 1; \
	done

# The whole suite on a sanitizer build. Reports go to files (the server's stderr is a log
# the tests may not read); any report fails the target.
define sanitizer_suite
	rm -rf $(1)/sanitizer-logs && mkdir -p $(1)/sanitizer-logs
	cd $(1) && ctest --output-on-failure -j $(JOBS)
	FLOWSERVE_BIN=$(abspath $(1))/flowserve $(PY) -m pytest -q -p no:cacheprovider tests/e2e $(2)
	@if ls $(1)/sanitizer-logs/* >/dev/null 2>&1; then \
	  cat $(1)/sanitizer-logs/*; echo "sanitizer reports above ($(1)/sanitizer-logs)"; exit 1; \
	else echo "$(1): no sanitizer reports"; fi
endef

test-asan: export ASAN_OPTIONS = detect_leaks=1:log_path=$(abspath $(ASAN_DIR))/sanitizer-logs/asan:suppressions=$(SAN_SUPP)/asan.supp
test-asan: export LSAN_OPTIONS = suppressions=$(SAN_SUPP)/lsan.supp:print_suppressions=0
test-asan: export UBSAN_OPTIONS = print_stacktrace=1:suppressions=$(SAN_SUPP)/ubsan.supp:log_path=$(abspath $(ASAN_DIR))/sanitizer-logs/ubsan
test-asan: deps
	cmake -S . -B $(ASAN_DIR) -G Ninja -DFLOWSERVE_SANITIZE=address
	ninja -C $(ASAN_DIR) -j $(JOBS)  # the server, its backend modules and the unit tests
	$(call sanitizer_suite,$(ASAN_DIR),)

test-tsan: export TSAN_OPTIONS = log_path=$(abspath $(TSAN_DIR))/sanitizer-logs/tsan:suppressions=$(SAN_SUPP)/tsan.supp:second_deadlock_stack=1
test-tsan: deps
	cmake -S . -B $(TSAN_DIR) -G Ninja -DFLOWSERVE_SANITIZE=thread -DFLOWSERVE_WITH_PYTORCH=OFF \
	  -DFLOWSERVE_WITH_ONNXRUNTIME=OFF
	ninja -C $(TSAN_DIR) -j $(JOBS)
	@echo "test-tsan: skipping the pytorch and onnxruntime tests: this tree has neither backend (see Makefile)"
	$(call sanitizer_suite,$(TSAN_DIR),$(TSAN_NO_TORCH))

format:
	clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tools/*.cc')

clean:
	rm -rf $(BUILD_DIR)
