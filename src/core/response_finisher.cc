#include "core/response_finisher.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/model_version.h"
#include "core/tensor_reshape.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

// Reads element i of a numeric tensor as double; FP16/BF16 decoded by hand since the
// core has no half type.
double ElementAsDouble(const Tensor& t, size_t i) {
  const char* p = t.data + i * DataTypeSize(t.dtype);
  auto rd = [p](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return static_cast<double>(v);
  };
  switch (t.dtype) {
    case DataType::kBool:
      return rd(uint8_t{});
    case DataType::kUint8:
      return rd(uint8_t{});
    case DataType::kUint16:
      return rd(uint16_t{});
    case DataType::kUint32:
      return rd(uint32_t{});
    case DataType::kUint64:
      return rd(uint64_t{});
    case DataType::kInt8:
      return rd(int8_t{});
    case DataType::kInt16:
      return rd(int16_t{});
    case DataType::kInt32:
      return rd(int32_t{});
    case DataType::kInt64:
      return rd(int64_t{});
    case DataType::kFp32:
      return rd(float{});
    case DataType::kFp64:
      return rd(double{});
    case DataType::kBf16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      uint32_t bits = static_cast<uint32_t>(h) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    case DataType::kFp16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
      double v;
      if (exp == 0) {
        v = std::ldexp(static_cast<double>(mant), -24);
      } else if (exp == 31) {
        v = mant ? NAN : INFINITY;
      } else {
        v = std::ldexp(static_cast<double>(mant | 0x400), static_cast<int>(exp) - 25);
      }
      return sign ? -v : v;
    }
    default:
      return 0;
  }
}

// The client sees the output's dims where the model produced its reshape.shape.
Status ReshapeOutput(const inference::ModelConfig& cfg, Tensor& t) {
  for (const auto& co : cfg.output()) {
    if (co.name() != t.name || !co.has_reshape()) continue;
    const auto& model_shape = co.reshape().shape();
    auto shape = ReshapeShape(t.shape, cfg.max_batch_size() > 0,
                              {model_shape.data(), size_t(model_shape.size())},
                              {co.dims().data(), size_t(co.dims_size())});
    if (!shape.ok()) return shape.status().WithContext("output '" + t.name + "': ");
    t.shape = std::move(shape).value();
  }
  return Status::Ok();
}

}  // namespace

Result<Tensor> Classify(const Tensor& t, uint32_t k, bool batched,
                        const std::vector<std::string>* labels) {
  if (t.dtype == DataType::kBytes || t.dtype == DataType::kInvalid) {
    return InvalidArgument("classification requested for output '" + t.name +
                           "' of non-numeric type " + std::string(DataTypeName(t.dtype)));
  }
  int64_t total = t.ElementCount();
  int64_t rows = batched && !t.shape.empty() ? t.shape[0] : 1;
  if (rows <= 0 || total < 0) {
    return InvalidArgument("classification: output '" + t.name + "' has shape " +
                           ShapeString(t.shape));
  }
  int64_t classes = total / rows;
  int64_t kk = std::min<int64_t>(k, classes);
  std::string out;
  std::vector<int64_t> idx(classes);
  std::vector<double> score(classes);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < classes; ++c) score[c] = ElementAsDouble(t, r * classes + c);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [&](int64_t a, int64_t b) {
      return score[a] > score[b] || (score[a] == score[b] && a < b);
    });
    for (int64_t j = 0; j < kk; ++j) {
      int64_t c = idx[j];
      std::string e = std::to_string(static_cast<float>(score[c])) + ":" + std::to_string(c);
      if (labels && c < static_cast<int64_t>(labels->size())) e += ":" + (*labels)[c];
      uint32_t len = static_cast<uint32_t>(e.size());
      out.append(reinterpret_cast<const char*>(&len), 4);
      out += e;
    }
  }
  Tensor res;
  res.name = t.name;
  res.dtype = DataType::kBytes;
  res.shape = batched ? std::vector<int64_t>{rows, kk} : std::vector<int64_t>{kk};
  std::memcpy(AllocateTensorData(res, out.size()), out.data(), out.size());
  return res;
}

FailureReason FinishResponse(const ModelVersion& model, const InferenceRequest& request,
                             InferenceResponse& response) {
  if (!response.status.ok()) {
    response.outputs.clear();
    return FailureReason::kBackend;
  }
  const auto& cfg = model.config();
  if (model.has_reshape()) {
    for (auto& t : response.outputs) {
      Status st = ReshapeOutput(cfg, t);
      if (!st.ok()) {
        response.status = Internal("model '" + model.name() + "': " + st.message());
        response.outputs.clear();
        return FailureReason::kBackend;
      }
    }
  }
  if (request.outputs.empty()) return FailureReason::kOther;
  std::vector<Tensor> selected;
  selected.reserve(request.outputs.size());
  for (const auto& want : request.outputs) {
    Tensor* t = response.FindOutput(want.name);
    if (!t) {
      response.status =
          Internal("model '" + model.name() + "' did not produce output '" + want.name + "'");
      response.outputs.clear();
      return FailureReason::kBackend;
    }

    if (want.classification > 0) {
      auto c = Classify(*t, want.classification, cfg.max_batch_size() > 0, model.Labels(want.name));
      if (!c.ok()) {
        response.status = c.status();
        response.outputs.clear();
        return FailureReason::kOther;
      }
      selected.push_back(std::move(c.value()));
    } else {
      selected.push_back(*t);  // a view: cheap, and the same output may be asked twice
    }
  }
  response.outputs = std::move(selected);
  return FailureReason::kOther;
}

}  // namespace flowserve
