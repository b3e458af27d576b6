# The two set-up commands: `make serve` and `make test`. Everything else is a helper.
BUILD_DIR ?= build
PY := /usr/bin/python3
REPO ?= model_repository
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: deps build models models-resnet50 serve test unit e2e format clean bench

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

format:
	clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tools/*.cc')

clean:
	rm -rf $(BUILD_DIR)
