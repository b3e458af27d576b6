#include "frontends/http/infer_codec.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>

#include "core/request_limits.h"
#include "frontends/http/json_util.h"

namespace flowserve {

using http_detail::JsonWriter;
using http_detail::StringOut;
using http_detail::WriteKey;
using http_detail::WriteString;

namespace {

// The request document lives in stack memory while small: most headers are a few hundred
// bytes and need no heap allocation to parse.
using Allocator = rapidjson::MemoryPoolAllocator<>;
using Document = rapidjson::GenericDocument<rapidjson::UTF8<>, Allocator, Allocator>;
using Value = rapidjson::GenericValue<rapidjson::UTF8<>, Allocator>;

constexpr int kMaxNesting = 64;

const char* JsonTypeName(const Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType:
      return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType:
      return "bool";
    case rapidjson::kObjectType:
      return "object";
    case rapidjson::kArrayType:
      return "array";
    case rapidjson::kStringType:
      return "string";
    case rapidjson::kNumberType:
      return "number";
  }
  return "value";
}

std::string_view Str(const Value& v) { return {v.GetString(), v.GetStringLength()}; }

Status Bad(std::string message) { return InvalidArgument(std::move(message)); }

// ---- JSON tensor data -> flat binary buffer -------------------------------------------

template <typename T>
bool ConvertElement(const Value& v, T* out) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.IsBool()) return false;
    *out = v.GetBool();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.IsNumber()) return false;
    *out = static_cast<T>(v.GetDouble());
  } else if constexpr (std::is_signed_v<T>) {
    if (!v.IsInt64()) return false;
    int64_t x = v.GetInt64();
    if (x < std::numeric_limits<T>::min() || x > std::numeric_limits<T>::max()) return false;
    *out = static_cast<T>(x);
  } else {
    if (!v.IsUint64()) return false;
    uint64_t x = v.GetUint64();
    if (x > std::numeric_limits<T>::max()) return false;
    *out = static_cast<T>(x);
  }
  return true;
}

// Walks nested or flat arrays in row-major order, calling `emit` on each leaf.
template <typename Emit>
Status Flatten(const Value& v, int depth, const std::string& tensor, Emit&& emit) {
  if (depth > kMaxNesting) {
    return Bad("input '" + tensor + "': 'data' is nested more than " + std::to_string(kMaxNesting) +
               " levels deep");
  }
  if (v.IsArray()) {
    for (const auto& e : v.GetArray()) FS_RETURN_IF_ERROR(Flatten(e, depth + 1, tensor, emit));
    return Status::Ok();
  }
  return emit(v);
}

template <typename T>
Status FillFixed(const Value& data, Tensor& tensor, int64_t count) {
  T* out = reinterpret_cast<T*>(AllocateTensorData(tensor, count * sizeof(T)));
  int64_t n = 0;
  Status st = Flatten(data, 0, tensor.name, [&](const Value& e) -> Status {
    if (n >= count) return Status(StatusCode::kOutOfRange, "");
    T x;
    if (!ConvertElement<T>(e, &x)) {
      std::string got = e.IsNumber() ? "the number " + std::to_string(e.GetDouble()) +
                                           " (out of range or not an integer)"
                                     : std::string("a JSON ") + JsonTypeName(e);
      return Bad("input '" + tensor.name + "': element " + std::to_string(n) + ": expected a " +
                 std::string(DataTypeName(tensor.dtype)) + " value, got " + got);
    }
    std::memcpy(out + n, &x, sizeof(T));
    ++n;
    return Status::Ok();
  });
  if (st.code() == StatusCode::kOutOfRange || (st.ok() && n != count)) {
    // Count every leaf for the message: the client wants to know how many it sent.
    int64_t total = 0;
    Flatten(data, 0, tensor.name, [&](const Value&) {
      ++total;
      return Status::Ok();
    });
    return Bad("input '" + tensor.name + "': shape " + ShapeString(tensor.shape) + " expects " +
               std::to_string(count) + " elements, but 'data' has " + std::to_string(total));
  }
  return st;
}

Status FillBytes(const Value& data, Tensor& tensor, int64_t count) {
  auto buf = std::make_shared<std::string>();
  int64_t n = 0;
  FS_RETURN_IF_ERROR(Flatten(data, 0, tensor.name, [&](const Value& e) -> Status {
    if (!e.IsString()) {
      return Bad("input '" + tensor.name + "': element " + std::to_string(n) +
                 ": expected a string for BYTES, got a JSON " + JsonTypeName(e));
    }
    uint32_t len = e.GetStringLength();
    char le[4] = {static_cast<char>(len & 0xff), static_cast<char>((len >> 8) & 0xff),
                  static_cast<char>((len >> 16) & 0xff), static_cast<char>((len >> 24) & 0xff)};
    buf->append(le, 4);
    buf->append(e.GetString(), len);
    ++n;
    return Status::Ok();
  }));
  if (n != count) {
    return Bad("input '" + tensor.name + "': shape " + ShapeString(tensor.shape) + " expects " +
               std::to_string(count) + " elements, but 'data' has " + std::to_string(n));
  }
  tensor.data = buf->data();
  tensor.byte_size = buf->size();
  tensor.owner = std::shared_ptr<const void>(buf, buf->data());
  return Status::Ok();
}

Status FillFromJson(const Value& data, Tensor& tensor, int64_t count) {
  switch (tensor.dtype) {
    case DataType::kBool:
      return FillFixed<bool>(data, tensor, count);
    case DataType::kUint8:
      return FillFixed<uint8_t>(data, tensor, count);
    case DataType::kUint16:
      return FillFixed<uint16_t>(data, tensor, count);
    case DataType::kUint32:
      return FillFixed<uint32_t>(data, tensor, count);
    case DataType::kUint64:
      return FillFixed<uint64_t>(data, tensor, count);
    case DataType::kInt8:
      return FillFixed<int8_t>(data, tensor, count);
    case DataType::kInt16:
      return FillFixed<int16_t>(data, tensor, count);
    case DataType::kInt32:
      return FillFixed<int32_t>(data, tensor, count);
    case DataType::kInt64:
      return FillFixed<int64_t>(data, tensor, count);
    case DataType::kFp32:
      return FillFixed<float>(data, tensor, count);
    case DataType::kFp64:
      return FillFixed<double>(data, tensor, count);
    case DataType::kBytes:
      return FillBytes(data, tensor, count);
    default:
      return Bad("input '" + tensor.name + "': datatype " +
                 std::string(DataTypeName(tensor.dtype)) +
                 " can only be sent as binary data (parameters.binary_data_size), not in JSON");
  }
}

// ---- request pieces ------------------------------------------------------------------

Result<uint64_t> ParseLength(std::string_view text) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size()) {
    return Bad("Inference-Header-Content-Length must be a non-negative integer, got '" +
               std::string(text) + "'");
  }
  return v;
}

Status ParseRequestParameters(const Value& params, InferenceRequest& request,
                              InferReplyFormat& format) {
  if (!params.IsObject()) {
    return Bad(std::string("request 'parameters' must be an object, got a JSON ") +
               JsonTypeName(params));
  }
  for (const auto& m : params.GetObject()) {
    std::string key(Str(m.name));
    const Value& v = m.value;
    auto need_uint = [&](uint64_t* out) -> Status {
      if (!v.IsUint64()) {
        return Bad("request parameter '" + key + "' must be a non-negative integer, got a JSON " +
                   JsonTypeName(v));
      }
      *out = v.GetUint64();
      return Status::Ok();
    };
    auto need_bool = [&](bool* out) -> Status {
      if (!v.IsBool()) {
        return Bad("request parameter '" + key + "' must be a bool, got a JSON " + JsonTypeName(v));
      }
      *out = v.GetBool();
      return Status::Ok();
    };
    if (key == "priority") {
      FS_RETURN_IF_ERROR(need_uint(&request.priority));
    } else if (key == "timeout") {
      FS_RETURN_IF_ERROR(need_uint(&request.timeout_us));
    } else if (key == "sequence_id") {
      if (v.IsString()) {
        request.correlation_id_str = std::string(Str(v));
      } else {
        FS_RETURN_IF_ERROR(need_uint(&request.correlation_id));
      }
    } else if (key == "sequence_start") {
      FS_RETURN_IF_ERROR(need_bool(&request.sequence_start));
    } else if (key == "sequence_end") {
      FS_RETURN_IF_ERROR(need_bool(&request.sequence_end));
    } else if (key == "binary_data_output") {
      FS_RETURN_IF_ERROR(need_bool(&format.binary_data_output));
    } else if (v.IsBool()) {
      request.parameters[key] = v.GetBool();
    } else if (v.IsInt64()) {
      request.parameters[key] = v.GetInt64();
    } else if (v.IsNumber()) {
      request.parameters[key] = v.GetDouble();
    } else if (v.IsString()) {
      request.parameters[key] = std::string(Str(v));
    } else {
      return Bad("request parameter '" + key + "' must be a bool, number or string, got a JSON " +
                 JsonTypeName(v));
    }
  }
  return Status::Ok();
}

Status ParseShape(const Value& input, Tensor& tensor) {
  auto it = input.FindMember("shape");
  if (it == input.MemberEnd()) return Bad("input '" + tensor.name + "': missing 'shape'");
  if (!it->value.IsArray()) {
    return Bad("input '" + tensor.name + "': 'shape' must be an array of integers, got a JSON " +
               JsonTypeName(it->value));
  }
  if (it->value.Size() > kMaxTensorRank) {
    return Bad("input '" + tensor.name + "': 'shape' has " + std::to_string(it->value.Size()) +
               " dimensions; at most " + std::to_string(kMaxTensorRank) + " are supported");
  }
  for (const auto& d : it->value.GetArray()) {
    if (!d.IsInt64()) {
      return Bad("input '" + tensor.name + "': 'shape' must hold integers, got a JSON " +
                 std::string(d.IsNumber() ? "number that is not an int64" : JsonTypeName(d)));
    }
    tensor.shape.push_back(d.GetInt64());
  }
  for (int64_t d : tensor.shape) {
    if (d < 0) {
      return Bad("input '" + tensor.name + "': shape " + ShapeString(tensor.shape) +
                 " has a negative dimension");
    }
  }
  return Status::Ok();
}

// Reads Triton's shared memory tensor parameters; false when the tensor names no region.
Result<bool> ParseSharedMemoryRef(const Value& params, const std::string& what,
                                  SharedMemoryRef* ref) {
  auto region = params.FindMember("shared_memory_region");
  auto offset = params.FindMember("shared_memory_offset");
  auto size = params.FindMember("shared_memory_byte_size");
  if (region == params.MemberEnd()) {
    if (offset != params.MemberEnd() || size != params.MemberEnd()) {
      return Bad(what +
                 ": shared_memory_offset or shared_memory_byte_size given without "
                 "shared_memory_region");
    }
    return false;
  }
  if (!region->value.IsString()) {
    return Bad(what + ": parameters.shared_memory_region must be a string, got a JSON " +
               JsonTypeName(region->value));
  }
  ref->region = std::string(Str(region->value));
  if (size == params.MemberEnd()) {
    return Bad(what + ": parameters.shared_memory_byte_size is required with shared_memory_region");
  }
  if (!size->value.IsUint64()) {
    return Bad(what + ": parameters.shared_memory_byte_size must be a non-negative integer");
  }
  ref->byte_size = size->value.GetUint64();
  if (offset != params.MemberEnd()) {
    if (!offset->value.IsUint64()) {
      return Bad(what + ": parameters.shared_memory_offset must be a non-negative integer");
    }
    ref->offset = offset->value.GetUint64();
  }
  return true;
}

Status NoSharedMemory(const std::string& what) {
  return Unavailable(what + ": system shared memory is not available on this endpoint");
}

}  // namespace

bool InferReplyFormat::IsBinary(const std::string& output) const {
  for (const auto& [name, binary] : binary_override)
    if (name == output) return binary;
  return binary_data_output;
}

namespace {

// RapidJSON 1.1.0's full-precision number parsing (kept: FP64 values must round-trip
// exactly) reads outside its table of powers of ten for literals far below the double
// range, e.g. 0.<21 zeros>123e-327 or 0.<350 zeros> (a server crash found by fuzzing).
// Such literals denote 0 as a double anyway; they are refused before parsing. A literal
// whose first significant digit is at 10^-324 or above is parsed safely.
// The same pass measures nesting (JsonNestedDeeperThan's rule): one scan of the header
// instead of two.
struct HeaderScan {
  bool number_below_double_range = false;
  bool nested_too_deep = false;
};

HeaderScan ScanRequestJson(std::string_view text, int depth_limit) {
  HeaderScan scan;
  int depth = 0;
  const size_t n = text.size();
  auto digit = [&](size_t i) { return i < n && text[i] >= '0' && text[i] <= '9'; };
  for (size_t i = 0; i < n;) {
    const char c = text[i];
    if (c == '"') {
      for (++i; i < n && text[i] != '"'; ++i) {
        if (text[i] == '\\') ++i;
      }
      ++i;
      continue;
    }
    if (c == '[' || c == '{') {
      if (++depth > depth_limit) scan.nested_too_deep = true;
      ++i;
      continue;
    }
    if (c == ']' || c == '}') {
      --depth;
      ++i;
      continue;
    }
    if (c != '-' && !digit(i)) {
      ++i;
      continue;
    }
    if (c == '-') ++i;
    // The decimal exponent of the first significant digit, or of the last digit when
    // every digit is 0.
    bool significant = false;
    int64_t first = 0, last = 0, int_digits = 0;
    for (; digit(i); ++i, ++int_digits) {
      if (!significant && text[i] != '0') significant = true, first = -int_digits;
    }
    first += int_digits - 1;
    if (i < n && text[i] == '.') {
      int64_t frac = 0;
      for (++i; digit(i); ++i) {
        ++frac;
        if (!significant && text[i] != '0') significant = true, first = -frac;
      }
      last = -frac;
    }
    int64_t exp = 0;
    if (i < n && (text[i] == 'e' || text[i] == 'E')) {
      ++i;
      bool negative = false;
      if (i < n && (text[i] == '+' || text[i] == '-')) negative = text[i++] == '-';
      for (; digit(i); ++i) exp = std::min<int64_t>(exp * 10 + (text[i] - '0'), 1'000'000);
      if (negative) exp = -exp;
    }
    if ((significant ? first : last) + exp < -324) {
      scan.number_below_double_range = true;
      return scan;  // refused whatever else the text holds
    }
  }
  return scan;
}

}  // namespace

Result<std::unique_ptr<InferenceRequest>> ParseInferRequest(
    char* data, size_t size, std::shared_ptr<const void> owner,
    std::string_view header_length_field, const std::string& model_name, int64_t model_version,
    InferReplyFormat* format, const SharedMemoryRegistry* shared_memory) {
  const std::span<char> buf(data, size);
  size_t header_length = buf.size();
  if (!header_length_field.empty()) {
    auto len = ParseLength(header_length_field);
    if (!len.ok()) return len.status();
    if (*len > buf.size()) {
      return Bad("Inference-Header-Content-Length " + std::to_string(*len) +
                 " is larger than the request body (" + std::to_string(buf.size()) + " bytes)");
    }
    header_length = static_cast<size_t>(*len);
  }

  const HeaderScan scan =
      ScanRequestJson(std::string_view(buf.data(), header_length), kMaxJsonDepth);
  if (scan.number_below_double_range) {
    return Bad("the request JSON has a number below the smallest double (1e-324); send 0");
  }
  if (scan.nested_too_deep) {
    return Bad("the request JSON is nested more than " + std::to_string(kMaxJsonDepth) +
               " levels deep");
  }
  // A usual request header parses without touching the heap: the parser's stacks (the
  // reader's 256 bytes, then the document's) come from parse_buffer, the values from
  // value_buffer. The document's stack must start smaller than parse_buffer less the
  // pool's chunk header and the reader's stack: starting at the buffer's whole size, it
  // never fit and cost a 64 KB chunk (malloc and free) per request. Larger headers grow
  // into heap chunks as before.
  char value_buffer[8192];
  char parse_buffer[4096];
  Allocator value_allocator(value_buffer, sizeof(value_buffer));
  Allocator parse_allocator(parse_buffer, sizeof(parse_buffer));
  Document doc(&value_allocator, /*stackCapacity=*/1024, &parse_allocator);
  {
    // Terminate the JSON part in place for the in-situ parser, then put the byte back:
    // it is the first byte of the binary section.
    char saved = buf.data()[header_length];
    buf.data()[header_length] = '\0';
    // Iterative parsing: a hostile "[[[[..." cannot exhaust the I/O thread's stack.
    doc.ParseInsitu<rapidjson::kParseInsituFlag | rapidjson::kParseIterativeFlag |
                    rapidjson::kParseFullPrecisionFlag>(buf.data());
    buf.data()[header_length] = saved;
  }
  if (doc.HasParseError()) {
    return Bad(std::string("failed to parse the request JSON: ") +
               rapidjson::GetParseError_En(doc.GetParseError()) + " at offset " +
               std::to_string(doc.GetErrorOffset()));
  }
  if (!doc.IsObject()) {
    return Bad(std::string("the request JSON must be an object, got a JSON ") + JsonTypeName(doc));
  }

  auto request = std::make_unique<InferenceRequest>();
  request->model_name = model_name;
  request->model_version = model_version;
  format->model_name = model_name;

  if (auto it = doc.FindMember("id"); it != doc.MemberEnd()) {
    if (!it->value.IsString()) {
      return Bad(std::string("request 'id' must be a string, got a JSON ") +
                 JsonTypeName(it->value));
    }
    request->id = std::string(Str(it->value));
    format->id = request->id;
  }
  if (auto it = doc.FindMember("parameters"); it != doc.MemberEnd()) {
    FS_RETURN_IF_ERROR(ParseRequestParameters(it->value, *request, *format));
  }

  auto inputs_it = doc.FindMember("inputs");
  if (inputs_it == doc.MemberEnd()) return Bad("the request has no 'inputs'");
  if (!inputs_it->value.IsArray()) {
    return Bad(std::string("request 'inputs' must be an array, got a JSON ") +
               JsonTypeName(inputs_it->value));
  }
  if (inputs_it->value.Size() > kMaxRequestInputs) {
    return Bad("the request has " + std::to_string(inputs_it->value.Size()) + " inputs; at most " +
               std::to_string(kMaxRequestInputs) + " are accepted");
  }
  size_t offset = header_length;  // next unread byte of the binary section
  request->inputs.reserve(inputs_it->value.Size());
  for (const auto& input : inputs_it->value.GetArray()) {
    if (!input.IsObject()) {
      return Bad(std::string("each of 'inputs' must be an object, got a JSON ") +
                 JsonTypeName(input));
    }
    Tensor tensor;
    auto name_it = input.FindMember("name");
    if (name_it == input.MemberEnd() || !name_it->value.IsString()) {
      return Bad("an input has no 'name' string");
    }
    tensor.name = std::string(Str(name_it->value));
    for (const auto& t : request->inputs) {
      if (t.name == tensor.name) return Bad("input '" + tensor.name + "' appears twice");
    }
    auto dt_it = input.FindMember("datatype");
    if (dt_it == input.MemberEnd() || !dt_it->value.IsString()) {
      return Bad("input '" + tensor.name + "': missing 'datatype' string");
    }
    tensor.dtype = DataTypeFromName(Str(dt_it->value));
    if (tensor.dtype == DataType::kInvalid) {
      return Bad("input '" + tensor.name + "': unknown datatype '" +
                 std::string(Str(dt_it->value)) + "'");
    }
    FS_RETURN_IF_ERROR(ParseShape(input, tensor));
    int64_t count = ElementCount(tensor.shape);
    size_t elem = DataTypeSize(tensor.dtype);
    if (count < 0 || (elem && static_cast<uint64_t>(count) > SIZE_MAX / elem)) {
      return Bad("input '" + tensor.name + "': shape " + ShapeString(tensor.shape) +
                 " has more elements than can be addressed");
    }

    const Value* binary_size = nullptr;
    SharedMemoryRef shm;
    bool in_shm = false;
    if (auto p = input.FindMember("parameters"); p != input.MemberEnd()) {
      if (!p->value.IsObject()) {
        return Bad("input '" + tensor.name + "': 'parameters' must be an object");
      }
      if (auto b = p->value.FindMember("binary_data_size"); b != p->value.MemberEnd()) {
        binary_size = &b->value;
      }
      auto found = ParseSharedMemoryRef(p->value, "input '" + tensor.name + "'", &shm);
      if (!found.ok()) return found.status();
      in_shm = *found;
    }
    auto data_it = input.FindMember("data");
    if (in_shm) {
      if (data_it != input.MemberEnd() || binary_size != nullptr) {
        return Bad("input '" + tensor.name +
                   "': has shared_memory_region and also 'data' or binary_data_size; send one");
      }
      if (shared_memory == nullptr) return NoSharedMemory("input '" + tensor.name + "'");
      FS_RETURN_IF_ERROR(BindSharedMemoryInput(*shared_memory, shm, tensor));
    } else if (binary_size != nullptr) {
      if (data_it != input.MemberEnd()) {
        return Bad("input '" + tensor.name +
                   "': has both 'data' and parameters.binary_data_size; send one");
      }
      if (!binary_size->IsUint64()) {
        return Bad("input '" + tensor.name +
                   "': parameters.binary_data_size must be a non-negative integer");
      }
      uint64_t size = binary_size->GetUint64();
      size_t remaining = buf.size() - offset;
      if (size > remaining) {
        return Bad("input '" + tensor.name + "': binary_data_size " + std::to_string(size) +
                   " goes past the end of the request body (" + std::to_string(remaining) +
                   " bytes of binary data left)");
      }
      tensor.data = buf.data() + offset;
      tensor.byte_size = size;
      tensor.owner = owner;
      offset += size;
      if (tensor.dtype == DataType::kBytes) {
        if (!ValidateBytesBuffer(tensor.data, tensor.byte_size, count)) {
          return Bad("input '" + tensor.name + "': binary BYTES data of " + std::to_string(size) +
                     " bytes does not hold exactly " + std::to_string(count) +
                     " length-prefixed elements for shape " + ShapeString(tensor.shape));
        }
      } else if (size != static_cast<uint64_t>(count) * elem) {
        return Bad("input '" + tensor.name + "': binary_data_size " + std::to_string(size) +
                   " does not match shape " + ShapeString(tensor.shape) + " of " +
                   std::string(DataTypeName(tensor.dtype)) + ", expected " +
                   std::to_string(static_cast<uint64_t>(count) * elem) + " bytes");
      }
    } else {
      if (data_it == input.MemberEnd()) {
        return Bad("input '" + tensor.name +
                   "': missing 'data' (or parameters.binary_data_size for binary data)");
      }
      // Each JSON element takes at least one byte of the header, so a larger shape can
      // never be filled: refuse it before allocating `count` elements (found by fuzzing).
      if (static_cast<uint64_t>(count) > header_length) {
        return Bad("input '" + tensor.name + "': shape " + ShapeString(tensor.shape) + " expects " +
                   std::to_string(count) + " elements, more than the " +
                   std::to_string(header_length) + "-byte JSON header can hold");
      }
      FS_RETURN_IF_ERROR(FillFromJson(data_it->value, tensor, count));
    }
    request->inputs.push_back(std::move(tensor));
  }
  if (offset != buf.size()) {
    return Bad("the request body has " + std::to_string(buf.size() - offset) +
               " bytes of binary data that no input claims (check binary_data_size and "
               "Inference-Header-Content-Length)");
  }

  if (auto it = doc.FindMember("outputs"); it != doc.MemberEnd()) {
    if (!it->value.IsArray()) {
      return Bad(std::string("request 'outputs' must be an array, got a JSON ") +
                 JsonTypeName(it->value));
    }
    if (it->value.Size() > kMaxRequestOutputs) {
      return Bad("the request asks for " + std::to_string(it->value.Size()) + " outputs; at most " +
                 std::to_string(kMaxRequestOutputs) + " are accepted");
    }
    for (const auto& output : it->value.GetArray()) {
      if (!output.IsObject()) return Bad("each of 'outputs' must be an object");
      auto name_it = output.FindMember("name");
      if (name_it == output.MemberEnd() || !name_it->value.IsString()) {
        return Bad("a requested output has no 'name' string");
      }
      RequestedOutput requested;
      requested.name = std::string(Str(name_it->value));
      for (const auto& r : request->outputs) {
        if (r.name == requested.name) {
          return Bad("output '" + requested.name + "' is requested twice");
        }
      }
      if (auto p = output.FindMember("parameters"); p != output.MemberEnd()) {
        if (!p->value.IsObject()) {
          return Bad("output '" + requested.name + "': 'parameters' must be an object");
        }
        if (auto b = p->value.FindMember("binary_data"); b != p->value.MemberEnd()) {
          if (!b->value.IsBool()) {
            return Bad("output '" + requested.name + "': parameters.binary_data must be a bool");
          }
          format->binary_override.emplace_back(requested.name, b->value.GetBool());
        }
        if (auto c = p->value.FindMember("classification"); c != p->value.MemberEnd()) {
          if (!c->value.IsUint() || c->value.GetUint() == 0) {
            return Bad("output '" + requested.name +
                       "': parameters.classification must be a positive integer");
          }
          requested.classification = c->value.GetUint();
        }
        SharedMemoryRef shm;
        auto found = ParseSharedMemoryRef(p->value, "output '" + requested.name + "'", &shm);
        if (!found.ok()) return found.status();
        if (*found) {
          if (requested.classification > 0) {
            return Bad("output '" + requested.name +
                       "': classification cannot be written to shared memory");
          }
          if (shared_memory == nullptr) return NoSharedMemory("output '" + requested.name + "'");
          auto reserved = ReserveSharedMemoryOutput(*shared_memory, requested.name, shm);
          if (!reserved.ok()) return reserved.status();
          format->shm_outputs.push_back(std::move(reserved).value());
        }
      }
      request->outputs.push_back(std::move(requested));
    }
  }
  return request;
}

// ---- response ------------------------------------------------------------------------

namespace {

float HalfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <typename F>
void WriteFloat(JsonWriter& w, F v) {
  // Shortest round-trip text for the value's own precision (0.1f prints as 0.1, not
  // 0.10000000149011612); JSON has no NaN/Infinity, so use the spelling Python accepts.
  if (std::isnan(v)) {
    w.RawValue("NaN", 3, rapidjson::kNumberType);
  } else if (std::isinf(v)) {
    v > 0 ? w.RawValue("Infinity", 8, rapidjson::kNumberType)
          : w.RawValue("-Infinity", 9, rapidjson::kNumberType);
  } else {
    char text[32];
    auto r = std::to_chars(text, text + sizeof(text), v);
    w.RawValue(text, r.ptr - text, rapidjson::kNumberType);
  }
}

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

void WriteJsonData(JsonWriter& w, const Tensor& t) {
  w.StartArray();
  int64_t count = t.ElementCount();
  if (t.dtype == DataType::kBytes) {
    size_t off = 0;
    for (int64_t i = 0; i < count && t.byte_size - off >= 4; ++i) {
      uint32_t len = Load<uint32_t>(t.data + off);
      off += 4;
      if (t.byte_size - off < len) break;
      w.String(t.data + off, len);
      off += len;
    }
    w.EndArray();
    return;
  }
  size_t elem = DataTypeSize(t.dtype);
  if (elem == 0 || count < 0) {
    w.EndArray();
    return;
  }
  // Never read past the buffer, whatever the shape claims.
  int64_t n = std::min<int64_t>(count, static_cast<int64_t>(t.byte_size / elem));
  const char* p = t.data;
  for (int64_t i = 0; i < n; ++i, p += elem) {
    switch (t.dtype) {
      case DataType::kBool:
        w.Bool(*p != 0);
        break;
      case DataType::kUint8:
        w.Uint(Load<uint8_t>(p));
        break;
      case DataType::kUint16:
        w.Uint(Load<uint16_t>(p));
        break;
      case DataType::kUint32:
        w.Uint(Load<uint32_t>(p));
        break;
      case DataType::kUint64:
        w.Uint64(Load<uint64_t>(p));
        break;
      case DataType::kInt8:
        w.Int(Load<int8_t>(p));
        break;
      case DataType::kInt16:
        w.Int(Load<int16_t>(p));
        break;
      case DataType::kInt32:
        w.Int(Load<int32_t>(p));
        break;
      case DataType::kInt64:
        w.Int64(Load<int64_t>(p));
        break;
      case DataType::kFp16:
        WriteFloat(w, HalfToFloat(Load<uint16_t>(p)));
        break;
      case DataType::kBf16: {
        uint32_t bits = static_cast<uint32_t>(Load<uint16_t>(p)) << 16;
        WriteFloat(w, Load<float>(reinterpret_cast<const char*>(&bits)));
        break;
      }
      case DataType::kFp32:
        WriteFloat(w, Load<float>(p));
        break;
      case DataType::kFp64:
        WriteFloat(w, Load<double>(p));
        break;
      default:
        break;
    }
  }
  w.EndArray();
}

void WriteParameters(JsonWriter& w, const Parameters& params) {
  w.StartObject();
  for (const auto& [k, v] : params) {
    WriteKey(w, k);
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, bool>) {
            w.Bool(x);
          } else if constexpr (std::is_same_v<T, int64_t>) {
            w.Int64(x);
          } else if constexpr (std::is_same_v<T, double>) {
            WriteFloat(w, x);
          } else {
            WriteString(w, x);
          }
        },
        v);
  }
  w.EndObject();
}

}  // namespace

HttpReply SerializeInferResponse(const InferenceResponse& response,
                                 const InferReplyFormat& format) {
  if (!response.status.ok()) return ErrorReply(response.status);
  if (!format.shm_outputs.empty()) {
    Status st = WriteSharedMemoryOutputs(format.shm_outputs, response);
    if (!st.ok()) return ErrorReply(st);
  }
  HttpReply reply;
  size_t estimate = 128;
  for (const auto& t : response.outputs) estimate += 64 + t.name.size() + t.byte_size * 3;
  reply.body.reserve(std::min<size_t>(estimate, 1 << 20));
  StringOut out{&reply.body};
  JsonWriter w(out);
  w.StartObject();
  WriteKey(w, "model_name");
  WriteString(w, response.model_name.empty() ? format.model_name : response.model_name);
  WriteKey(w, "model_version");
  WriteString(w, std::to_string(response.model_version));
  const std::string& id = response.id.empty() ? format.id : response.id;
  if (!id.empty()) {
    WriteKey(w, "id");
    WriteString(w, id);
  }
  if (!response.parameters.empty()) {
    WriteKey(w, "parameters");
    WriteParameters(w, response.parameters);
  }
  WriteKey(w, "outputs");
  w.StartArray();
  for (const auto& t : response.outputs) {
    w.StartObject();
    WriteKey(w, "name");
    WriteString(w, t.name);
    WriteKey(w, "datatype");
    WriteString(w, DataTypeName(t.dtype));
    WriteKey(w, "shape");
    w.StartArray();
    for (int64_t d : t.shape) w.Int64(d);
    w.EndArray();
    if (!format.shm_outputs.empty() && FindSharedMemoryOutput(format.shm_outputs, t.name)) {
      // Written into the region already: no data here, as Triton answers.
    } else if (format.IsBinary(t.name)) {
      WriteKey(w, "parameters");
      w.StartObject();
      WriteKey(w, "binary_data_size");
      w.Uint64(t.byte_size);
      w.EndObject();
      reply.chunks.push_back(HttpBodyChunk{t.data, t.byte_size, t.owner});
    } else {
      WriteKey(w, "data");
      WriteJsonData(w, t);
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  if (!reply.chunks.empty()) {
    reply.headers.emplace_back("Inference-Header-Content-Length",
                               std::to_string(reply.body.size()));
    reply.content_type = "application/octet-stream";
  }
  return reply;
}

HttpReply JsonReply(std::string json, int status) {
  HttpReply reply;
  reply.status = status;
  reply.body = std::move(json);
  return reply;
}

HttpReply ErrorReply(const Status& status) {
  HttpReply reply;
  reply.status = status.ok() ? 500 : status.HttpStatus();
  StringOut out{&reply.body};
  JsonWriter w(out);
  w.StartObject();
  WriteKey(w, "error");
  WriteString(w, status.ok() ? "unknown error" : status.message());
  w.EndObject();
  return reply;
}

}  // namespace flowserve
