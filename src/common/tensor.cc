#include "common/tensor.h"

#include <cstring>

namespace flowserve {

int64_t ElementCount(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > INT64_MAX / d) return -1;
    n *= d;
  }
  return n;
}

int64_t Tensor::ElementCount() const { return flowserve::ElementCount(shape); }

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

char* AllocateTensorData(Tensor& tensor, size_t n) {
  // unique_ptr<char[]> without value-initialisation: outputs are always written fully.
  std::shared_ptr<char[]> buf(new char[n > 0 ? n : 1]);
  tensor.data = buf.get();
  tensor.byte_size = n;
  tensor.owner = std::shared_ptr<const void>(buf, buf.get());
  return buf.get();
}

bool ValidateBytesBuffer(const char* data, size_t size, int64_t count) {
  size_t off = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (size - off < 4) return false;
    uint32_t len;
    std::memcpy(&len, data + off, 4);
    off += 4;
    if (size - off < len) return false;
    off += len;
  }
  return off == size;
}

}  // namespace flowserve
