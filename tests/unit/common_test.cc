// DataType tables, tensor shape helpers, BYTES framing and Status -> HTTP/gRPC codes.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "common/datatype.h"
#include "common/status.h"
#include "common/tensor.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

TEST(DataType, WireNamesRoundTrip) {
  const char* names[] = {"BOOL",  "UINT8", "UINT16", "UINT32", "UINT64", "INT8",  "INT16",
                         "INT32", "INT64", "FP16",   "FP32",   "FP64",   "BYTES", "BF16"};
  for (const char* name : names) {
    DataType t = DataTypeFromName(name);
    EXPECT_NE(t, DataType::kInvalid) << name;
    EXPECT_EQ(DataTypeName(t), name);
  }
  EXPECT_EQ(DataTypeFromName("fp32"), DataType::kInvalid);  // wire names are case-sensitive
  EXPECT_EQ(DataTypeFromName(""), DataType::kInvalid);
  EXPECT_EQ(DataTypeFromName("STRING"), DataType::kInvalid);
  EXPECT_EQ(DataTypeName(DataType::kInvalid), "");
  EXPECT_EQ(DataTypeName(static_cast<DataType>(99)), "");
}

// DataType is cast to and from the config enum, so the numbers and names must agree.
TEST(DataType, MatchesConfigEnum) {
  for (int v = 0; v <= 14; ++v) {
    ASSERT_TRUE(inference::DataType_IsValid(v));
    EXPECT_EQ(DataTypeConfigName(static_cast<DataType>(v)),
              inference::DataType_Name(static_cast<inference::DataType>(v)));
  }
  EXPECT_FALSE(inference::DataType_IsValid(15));
  EXPECT_EQ(DataTypeConfigName(DataType::kBytes), "TYPE_STRING");
}

TEST(DataType, Sizes) {
  EXPECT_EQ(DataTypeSize(DataType::kBool), 1u);
  EXPECT_EQ(DataTypeSize(DataType::kUint16), 2u);
  EXPECT_EQ(DataTypeSize(DataType::kInt32), 4u);
  EXPECT_EQ(DataTypeSize(DataType::kUint64), 8u);
  EXPECT_EQ(DataTypeSize(DataType::kFp16), 2u);
  EXPECT_EQ(DataTypeSize(DataType::kBf16), 2u);
  EXPECT_EQ(DataTypeSize(DataType::kFp32), 4u);
  EXPECT_EQ(DataTypeSize(DataType::kFp64), 8u);
  EXPECT_EQ(DataTypeSize(DataType::kBytes), 0u);
  EXPECT_EQ(DataTypeSize(DataType::kInvalid), 0u);
}

TEST(Tensor, ElementCount) {
  EXPECT_EQ(ElementCount({}), 1);  // a scalar
  EXPECT_EQ(ElementCount({2, 3, 4}), 24);
  EXPECT_EQ(ElementCount({5, 0, 7}), 0);
  EXPECT_EQ(ElementCount({2, -1}), -1);
  EXPECT_EQ(ElementCount({INT64_MAX, 2}), -1);  // overflow is not a size
  EXPECT_EQ(ElementCount({1LL << 32, 1LL << 31}), -1);
  EXPECT_EQ(ElementCount({1LL << 31, 1LL << 31}), 1LL << 62);
  Tensor t;
  t.shape = {4, 4};
  EXPECT_EQ(t.ElementCount(), 16);
}

TEST(Tensor, ShapeString) {
  EXPECT_EQ(ShapeString({}), "[]");
  EXPECT_EQ(ShapeString({1}), "[1]");
  EXPECT_EQ(ShapeString({-1, 16}), "[-1,16]");
}

TEST(Tensor, AllocateKeepsBufferAlive) {
  Tensor t;
  char* p = AllocateTensorData(t, 8);
  std::memcpy(p, "abcdefgh", 8);
  EXPECT_EQ(t.data, p);
  EXPECT_EQ(t.byte_size, 8u);
  Tensor copy = t;
  t = Tensor();
  EXPECT_EQ(std::string(copy.data, copy.byte_size), "abcdefgh");
  Tensor empty;
  AllocateTensorData(empty, 0);
  EXPECT_NE(empty.data, nullptr);
  EXPECT_EQ(empty.byte_size, 0u);
}

std::string Frame(std::initializer_list<std::string> elements) {
  std::string out;
  for (const auto& e : elements) {
    uint32_t n = static_cast<uint32_t>(e.size());
    char len[4] = {char(n & 0xff), char((n >> 8) & 0xff), char((n >> 16) & 0xff),
                   char((n >> 24) & 0xff)};
    out.append(len, 4);
    out += e;
  }
  return out;
}

TEST(Tensor, BytesFraming) {
  std::string buf = Frame({"hello", "", "w"});
  EXPECT_EQ(buf.size(), 4u + 5 + 4 + 0 + 4 + 1);
  EXPECT_TRUE(ValidateBytesBuffer(buf.data(), buf.size(), 3));
  EXPECT_FALSE(ValidateBytesBuffer(buf.data(), buf.size(), 2));  // bytes left over
  EXPECT_FALSE(ValidateBytesBuffer(buf.data(), buf.size(), 4));  // runs out
  EXPECT_FALSE(ValidateBytesBuffer(buf.data(), buf.size() - 1, 3));
  EXPECT_TRUE(ValidateBytesBuffer(nullptr, 0, 0));
  // A length prefix that claims more than the buffer holds must not read past it.
  std::string lying = Frame({"ab"});
  lying[0] = char(0xff);
  lying[3] = char(0x7f);
  EXPECT_FALSE(ValidateBytesBuffer(lying.data(), lying.size(), 1));
  std::string truncated_prefix = Frame({"ab"}).substr(0, 3);
  EXPECT_FALSE(ValidateBytesBuffer(truncated_prefix.data(), truncated_prefix.size(), 1));
}

TEST(Status, HttpAndGrpcCodes) {
  struct Case {
    StatusCode code;
    int http;
    int grpc;
    const char* name;
  };
  const Case cases[] = {
      {StatusCode::kOk, 200, 0, "OK"},
      {StatusCode::kInvalidArgument, 400, 3, "INVALID_ARGUMENT"},
      {StatusCode::kNotFound, 404, 5, "NOT_FOUND"},
      {StatusCode::kUnavailable, 503, 14, "UNAVAILABLE"},
      {StatusCode::kInternal, 500, 13, "INTERNAL"},
      {StatusCode::kUnimplemented, 501, 12, "UNIMPLEMENTED"},
      {StatusCode::kAlreadyExists, 409, 6, "ALREADY_EXISTS"},
      {StatusCode::kDeadlineExceeded, 504, 4, "DEADLINE_EXCEEDED"},
      {StatusCode::kResourceExhausted, 429, 8, "RESOURCE_EXHAUSTED"},
      {StatusCode::kPayloadTooLarge, 413, 8, "PAYLOAD_TOO_LARGE"},
      {StatusCode::kFailedPrecondition, 400, 9, "FAILED_PRECONDITION"},
      {StatusCode::kUnknown, 500, 2, "UNKNOWN"},
  };
  for (const auto& c : cases) {
    Status s(c.code, "x");
    EXPECT_EQ(s.HttpStatus(), c.http) << c.name;
    EXPECT_EQ(s.GrpcCode(), c.grpc) << c.name;
    EXPECT_STREQ(s.CodeName(), c.name);
  }
}

TEST(Status, ContextAndResult) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_TRUE(ok.WithContext("model 'm': ").ok());
  Status e = NotFound("no such tensor").WithContext("model 'm': ");
  EXPECT_EQ(e.code(), StatusCode::kNotFound);
  EXPECT_EQ(e.message(), "model 'm': no such tensor");

  Result<int> good(7);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  EXPECT_TRUE(good.status().ok());
  Result<int> bad(InvalidArgument("nope"));
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "nope");

  auto chained = [](bool fail) -> Status {
    FS_RETURN_IF_ERROR(fail ? Unavailable("down") : Status::Ok());
    return Internal("reached");
  };
  EXPECT_EQ(chained(true).code(), StatusCode::kUnavailable);
  EXPECT_EQ(chained(false).code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace flowserve
