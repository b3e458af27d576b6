#include "core/model_warmup.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "backends/backend.h"
#include "common/logging.h"
#include "core/model_version.h"
#include "core/request_validator.h"
#include "core/sequence_batcher.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

// Values a model can digest: floats in [0, 1), small integers, booleans. Random bytes
// would give NaNs and huge indices, which test the model rather than warm it.
void FillRandom(DataType dtype, char* data, size_t elements, std::mt19937& rng) {
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  std::uniform_int_distribution<int> small(0, 100);
  auto put = [&](size_t i, auto v) { std::memcpy(data + i * sizeof(v), &v, sizeof(v)); };
  for (size_t i = 0; i < elements; ++i) {
    switch (dtype) {
      case DataType::kBool:
        put(i, static_cast<uint8_t>(small(rng) & 1));
        break;
      case DataType::kUint8:
        put(i, static_cast<uint8_t>(small(rng)));
        break;
      case DataType::kInt8:
        put(i, static_cast<int8_t>(small(rng)));
        break;
      case DataType::kUint16:
        put(i, static_cast<uint16_t>(small(rng)));
        break;
      case DataType::kInt16:
        put(i, static_cast<int16_t>(small(rng)));
        break;
      case DataType::kUint32:
        put(i, static_cast<uint32_t>(small(rng)));
        break;
      case DataType::kInt32:
        put(i, static_cast<int32_t>(small(rng)));
        break;
      case DataType::kUint64:
        put(i, static_cast<uint64_t>(small(rng)));
        break;
      case DataType::kInt64:
        put(i, static_cast<int64_t>(small(rng)));
        break;
      case DataType::kFp32:
        put(i, unit(rng));
        break;
      case DataType::kFp64:
        put(i, static_cast<double>(unit(rng)));
        break;
      case DataType::kBf16: {
        float f = unit(rng);
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        put(i, static_cast<uint16_t>(bits >> 16));
        break;
      }
      case DataType::kFp16:  // exponent 14: a value in [0.5, 1)
        put(i, static_cast<uint16_t>((14u << 10) | (rng() & 0x3ffu)));
        break;
      default:
        break;
    }
  }
}

// One sample's bytes for one batch row: zero_data, random_data or the file under
// <model>/warmup/. A zero-filled BYTES buffer is that many empty strings.
Result<std::string> SampleRow(const ModelVersion& model, const std::string& input,
                              const inference::ModelWarmup::Input& in, std::mt19937& rng) {
  const auto dtype = static_cast<DataType>(in.data_type());
  const int64_t elements = ElementCount({in.dims().begin(), in.dims().end()});
  const bool bytes = dtype == DataType::kBytes;
  const size_t size = elements * (bytes ? 4 : DataTypeSize(dtype));
  if (in.input_data_type_case() == inference::ModelWarmup::Input::kInputDataFile) {
    const auto path = std::filesystem::path(model.model_dir()) / "warmup" / in.input_data_file();
    std::ifstream file(path, std::ios::binary);
    if (!file) return NotFound("input '" + input + "': cannot read " + path.string());
    std::ostringstream data;
    data << file.rdbuf();
    std::string row = data.str();
    const bool fits =
        bytes ? ValidateBytesBuffer(row.data(), row.size(), elements) : row.size() == size;
    if (!fits) {
      return InvalidArgument("input '" + input + "': " + path.string() + " has " +
                             std::to_string(row.size()) + " bytes, which is not " +
                             std::to_string(elements) + " " + std::string(DataTypeName(dtype)) +
                             " elements for dims " +
                             ShapeString({in.dims().begin(), in.dims().end()}));
    }
    return row;
  }
  std::string row(size, '\0');
  if (in.random_data() && !bytes) FillRandom(dtype, row.data(), elements, rng);
  return row;
}

Result<std::unique_ptr<InferenceRequest>> SampleRequest(const ModelVersion& model,
                                                        const inference::ModelWarmup& sample) {
  const bool batched = model.config().max_batch_size() > 0;
  const int64_t batch = std::max<uint32_t>(1, sample.batch_size());
  std::mt19937 rng(0x5eed);
  auto request = std::make_unique<InferenceRequest>();
  request->model_name = model.name();
  request->model_version = model.version();
  request->id = "warmup:" + sample.name();
  for (const auto& [name, in] : sample.inputs()) {
    auto row = SampleRow(model, name, in, rng);
    if (!row.ok()) return row.status();
    Tensor t;
    t.name = name;
    t.dtype = static_cast<DataType>(in.data_type());
    if (batched) t.shape.push_back(batch);
    t.shape.insert(t.shape.end(), in.dims().begin(), in.dims().end());
    char* data = AllocateTensorData(t, row->size() * (batched ? batch : 1));
    for (int64_t b = 0; b < (batched ? batch : 1); ++b) {
      std::memcpy(data + b * row->size(), row->data(), row->size());
    }
    request->inputs.push_back(std::move(t));
  }
  request->arrival_ns = request->enqueue_ns = NowNs();
  return request;
}

}  // namespace

Status RunWarmup(const ModelVersion& model, BackendInstance& instance,
                 const std::string& instance_name) {
  for (const auto& sample : model.config().model_warmup()) {
    const std::string what = "model_warmup sample '" + sample.name() + "'";
    auto request = SampleRequest(model, sample);
    if (!request.ok()) return request.status().WithContext(what + ": ");
    FS_RETURN_IF_ERROR(ValidateRequest(model, **request).WithContext(what + ": "));
    FS_RETURN_IF_ERROR(AddWarmupSequenceInputs(model,
                                               model.config().max_batch_size() > 0
                                                   ? std::max<int64_t>(1, sample.batch_size())
                                                   : 0,
                                               **request)
                           .WithContext(what + ": "));
    const uint32_t runs = std::max<uint32_t>(1, sample.count());
    FS_LOG_VERBOSE(1, "warming up '{}' instance {} with {} ({} run(s))", model.name(),
                   instance_name, what, runs);
    for (uint32_t i = 0; i < runs; ++i) {
      InferenceResponse response;
      response.model_name = model.name();
      response.model_version = model.version();
      response.id = (*request)->id;
      InferenceRequest* reqs[] = {request->get()};
      InferenceResponse* resps[] = {&response};
      instance.Execute(reqs, resps);
      if (!response.status.ok()) {
        return Status(response.status.code(), what + " failed on instance " + instance_name + ": " +
                                                  response.status.message());
      }
    }
  }
  return Status::Ok();
}

}  // namespace flowserve
