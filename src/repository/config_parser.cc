// config.pbtxt and JSON config text -> validated ModelConfig.
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include <regex>
#include <string>
#include <vector>

#include "model_config.pb.h"
#include "repository/config_internal.h"
#include "repository/model_repository.h"

namespace flowserve {
namespace {

// Keeps the first error and rewrites protobuf's phrasing into "unknown field 'x' in T"
// style, pointing at the offending token rather than the token after it.
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  FirstErrorCollector(const std::string& text, const std::string& source)
      : text_(text), source_(source) {}

  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!error_.empty()) return;
    std::string msg = message;
    std::string token;
    static const std::regex kUnknownField(
        R"re(Message type "([^"]+)" has no field named "([^"]+)"\.?)re");
    static const std::regex kUnknownEnum(
        R"re(Unknown enumeration value of "([^"]*)" for field "([^"]+)"\.?)re");
    static const std::regex kOneofConflict(
        R"re(Field "([^"]+)" is specified along with field "([^"]+)", another member of oneof "([^"]+)"\.?)re");
    static const std::regex kRepeatedSingular(
        R"re(Non-repeated field "([^"]+)" is specified multiple times\.?)re");
    std::smatch m;
    if (std::regex_match(message, m, kUnknownField)) {
      token = m[2];
      msg = "unknown field '" + token + "' in " + m[1].str();
    } else if (std::regex_match(message, m, kOneofConflict)) {
      token = m[1];
      msg = "field '" + token + "' cannot be combined with '" + m[2].str() +
            "' (both are choices of oneof '" + m[3].str() + "')";
    } else if (std::regex_match(message, m, kRepeatedSingular)) {
      token = m[1];
      msg = "field '" + token + "' is given more than once";
    } else if (std::regex_match(message, m, kUnknownEnum)) {
      token = m[1];
      msg = "unknown enum value '" + token + "' for field '" + m[2].str() + "'";
    }
    if (!token.empty()) column = TokenColumn(line, column, token);
    error_ =
        source_ + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + msg;
  }

  const std::string& error() const { return error_; }

 private:
  // Protobuf reports the position after the identifier it rejected; find where the
  // identifier itself starts on that line.
  int TokenColumn(int line, int column, const std::string& token) const {
    size_t begin = 0;
    for (int l = 0; l < line && begin != std::string::npos; ++l) {
      begin = text_.find('\n', begin);
      if (begin != std::string::npos) ++begin;
    }
    if (begin == std::string::npos) return column;
    size_t end = text_.find('\n', begin);
    std::string_view row(text_.data() + begin,
                         (end == std::string::npos ? text_.size() : end) - begin);
    size_t pos = row.rfind(token, column < 0 ? std::string_view::npos : size_t(column));
    return pos == std::string_view::npos ? column : static_cast<int>(pos);
  }

  const std::string& text_;
  const std::string& source_;
  std::string error_;
};

}  // namespace

namespace config_internal {

Result<std::shared_ptr<inference::ModelConfig>> ParseModelConfigText(
    const std::string& text, const std::string& source_name, const std::string& folder_name,
    const std::string& fallback_backend) {
  auto config = std::make_shared<inference::ModelConfig>();
  FirstErrorCollector errors(text, source_name);
  config_internal::ParseInfoTree locations;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&locations);
  if (!parser.ParseFromString(text, config.get())) {
    return InvalidArgument(errors.error().empty() ? source_name + ": cannot parse config"
                                                  : errors.error());
  }
  if (config->backend().empty() && config->platform().empty()) {
    config->set_backend(fallback_backend);
  }
  FS_RETURN_IF_ERROR(NormalizeAndValidateAt(*config, source_name, folder_name, &locations));
  return config;
}

}  // namespace config_internal

Result<std::shared_ptr<inference::ModelConfig>> ParseModelConfig(const std::string& text,
                                                                 const std::string& source_name,
                                                                 const std::string& folder_name) {
  return config_internal::ParseModelConfigText(text, source_name, folder_name, "");
}

Result<std::shared_ptr<inference::ModelConfig>> ParseModelConfigJson(
    const std::string& json, const std::string& folder_name, const std::string& fallback_backend) {
  auto config = std::make_shared<inference::ModelConfig>();
  const std::string source = "config JSON for '" + folder_name + "'";
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(json, config.get(), options);
  if (!st.ok()) return InvalidArgument(source + ": " + std::string(st.message()));
  if (config->backend().empty() && config->platform().empty()) {
    config->set_backend(fallback_backend);
  }
  FS_RETURN_IF_ERROR(
      config_internal::NormalizeAndValidateAt(*config, source, folder_name, nullptr));
  return config;
}

Status NormalizeAndValidate(inference::ModelConfig& config, const std::string& source_name,
                            const std::string& folder_name) {
  return config_internal::NormalizeAndValidateAt(config, source_name, folder_name, nullptr);
}

}  // namespace flowserve
