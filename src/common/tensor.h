#pragma once
// A tensor is a typed, shaped view of bytes plus a reference that keeps those bytes
// alive. Payloads are never copied to pass a tensor between layers: a frontend points
// inputs into the received body, a backend points outputs into its own buffers.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/datatype.h"

namespace flowserve {

struct Tensor {
  std::string name;
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> shape;
  // For BYTES, the buffer holds each element as a 4-byte little-endian length followed
  // by that many bytes (the binary tensor extension's layout).
  const char* data = nullptr;
  size_t byte_size = 0;
  std::shared_ptr<const void> owner;

  int64_t ElementCount() const;
};

// Product of dims; -1 when a dim is negative or the product overflows int64.
int64_t ElementCount(const std::vector<int64_t>& shape);
std::string ShapeString(const std::vector<int64_t>& shape);

// Allocates an owned, writable buffer of n bytes and points the tensor at it.
char* AllocateTensorData(Tensor& tensor, size_t n);

// Walks a serialized BYTES buffer; false when the framing does not add up to exactly
// `count` elements in `size` bytes.
bool ValidateBytesBuffer(const char* data, size_t size, int64_t count);

}  // namespace flowserve
