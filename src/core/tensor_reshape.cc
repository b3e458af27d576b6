#include "core/tensor_reshape.h"

#include <algorithm>

#include "common/tensor.h"

namespace flowserve {

Result<std::vector<int64_t>> ReshapeShape(const std::vector<int64_t>& actual, bool batched,
                                          std::span<const int64_t> from,
                                          std::span<const int64_t> to) {
  const size_t offset = batched ? 1 : 0;
  auto mismatch = [&] {
    return InvalidArgument("shape " + ShapeString(actual) + " cannot be reshaped from " +
                           ShapeString({from.begin(), from.end()}) + " to " +
                           ShapeString({to.begin(), to.end()}));
  };
  if (actual.size() != offset + from.size()) return mismatch();
  std::vector<int64_t> variable;  // the values `actual` has where `from` says -1
  int64_t elements = 1;
  for (size_t i = 0; i < from.size(); ++i) {
    const int64_t d = actual[offset + i];
    if (from[i] < 0) variable.push_back(d);
    elements *= d;
  }
  const auto unknown = std::count(to.begin(), to.end(), int64_t{-1});
  std::vector<int64_t> shape(actual.begin(), actual.begin() + offset);
  if (unknown == 1) {
    int64_t known = 1;
    for (int64_t d : to) known *= d < 0 ? 1 : d;
    if (known == 0 || elements % known != 0) return mismatch();
    for (int64_t d : to) shape.push_back(d < 0 ? elements / known : d);
    return shape;
  }
  if (unknown != static_cast<int64_t>(variable.size())) return mismatch();
  size_t next = 0;
  int64_t reshaped = 1;
  for (int64_t d : to) {
    shape.push_back(d < 0 ? variable[next++] : d);
    reshaped *= shape.back();
  }
  if (reshaped != elements) return mismatch();
  return shape;
}

}  // namespace flowserve
