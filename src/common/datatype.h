#pragma once
// Tensor element types. The numeric values equal Triton's ModelConfig DataType enum
// (TYPE_BOOL = 1 ...), so converting to and from the config proto is a cast.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace flowserve {

enum class DataType : int {
  kInvalid = 0,
  kBool = 1,
  kUint8 = 2,
  kUint16 = 3,
  kUint32 = 4,
  kUint64 = 5,
  kInt8 = 6,
  kInt16 = 7,
  kInt32 = 8,
  kInt64 = 9,
  kFp16 = 10,
  kFp32 = 11,
  kFp64 = 12,
  kBytes = 13,  // TYPE_STRING in the config
  kBf16 = 14,
};

// KServe v2 wire name: "FP32", "BYTES", ...; "" for kInvalid.
std::string_view DataTypeName(DataType dtype);
// Parses a KServe v2 wire name; kInvalid when unknown.
DataType DataTypeFromName(std::string_view name);
// Config name: "TYPE_FP32", "TYPE_STRING", ...
std::string_view DataTypeConfigName(DataType dtype);
// Size of one element in bytes; 0 for BYTES (variable) and kInvalid.
size_t DataTypeSize(DataType dtype);

}  // namespace flowserve
