// Fills the defaults Triton fills and rejects configs that cannot mean anything, naming
// the file, the position and the field in every message.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "model_config.pb.h"
#include "repository/config_internal.h"
#include "repository/model_repository.h"

namespace flowserve::config_internal {
namespace {

namespace pb = google::protobuf;
using inference::ModelConfig;

// A path from the config root such as input[1].dims, used both in the message and to
// look up where the field was written.
class FieldPath {
 public:
  struct Step {
    const pb::FieldDescriptor* field;
    int index;        // -1: the field as a whole
    std::string key;  // map entries are named by key; their text position is not tracked
  };

  FieldPath() : type_(ModelConfig::descriptor()) {}

  FieldPath Field(const std::string& name, int index = -1) const {
    return Field(type_ ? type_->FindFieldByName(name) : nullptr, index);
  }
  FieldPath Field(const pb::FieldDescriptor* fd, int index = -1) const {
    FieldPath p = *this;
    if (fd == nullptr) return p;
    p.steps_.push_back({fd, index, {}});
    p.type_ = fd->message_type();
    return p;
  }
  FieldPath MapEntry(const pb::FieldDescriptor* map_field, const std::string& key) const {
    FieldPath p = *this;
    p.steps_.push_back({map_field, -1, key});
    const pb::FieldDescriptor* value = map_field->message_type()->map_value();
    p.type_ = value->message_type();
    return p;
  }

  const std::vector<Step>& steps() const { return steps_; }

  std::string ToString() const {
    std::string s;
    for (const auto& step : steps_) {
      if (!s.empty()) s += '.';
      s += step.field->name();
      if (!step.key.empty()) {
        s += "[" + step.key + "]";
      } else if (step.index >= 0) {
        s += "[" + std::to_string(step.index) + "]";
      }
    }
    return s;
  }

 private:
  const pb::Descriptor* type_;
  std::vector<Step> steps_;
};

std::string Join(const pb::RepeatedField<int64_t>& v) {
  std::string s = "[";
  for (int i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v.Get(i));
  return s + "]";
}

bool ValidDim(int64_t d) { return d > 0 || d == -1; }

// Product of fixed dims; -1 when any dim is variable.
int64_t FixedElementCount(const pb::RepeatedField<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return -1;
    n *= d;
  }
  return n;
}

std::string MapKeyString(const pb::Message& entry) {
  const pb::FieldDescriptor* k = entry.GetDescriptor()->map_key();
  const pb::Reflection* r = entry.GetReflection();
  switch (k->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return "'" + r->GetString(entry, k) + "'";
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return std::to_string(r->GetInt32(entry, k));
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return std::to_string(r->GetInt64(entry, k));
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return std::to_string(r->GetUInt32(entry, k));
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return std::to_string(r->GetUInt64(entry, k));
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(entry, k) ? "true" : "false";
    default:
      return "?";
  }
}

const std::map<std::string, std::string> kPlatformBackend = {
    {"pytorch_libtorch", "pytorch"},       {"onnxruntime_onnx", "onnxruntime"},
    {"tensorrt_plan", "tensorrt"},         {"tensorflow_savedmodel", "tensorflow"},
    {"tensorflow_graphdef", "tensorflow"},
};
// The platform Triton reports for a backend with a single model format.
const std::map<std::string, std::string> kBackendPlatform = {
    {"pytorch", "pytorch_libtorch"},
    {"onnxruntime", "onnxruntime_onnx"},
    {"tensorrt", "tensorrt_plan"},
};
constexpr const char* kEnsemble = "ensemble";

class Validator {
 public:
  Validator(ModelConfig& config, const std::string& source, const std::string& folder,
            const ParseInfoTree* locations)
      : c_(config), source_(source), folder_(folder), locations_(locations) {}

  Status Run() {
    FS_RETURN_IF_ERROR(CheckEnums(c_, FieldPath()));
    FS_RETURN_IF_ERROR(Name());
    FS_RETURN_IF_ERROR(BackendAndPlatform());
    if (c_.max_batch_size() < 0) {
      return Fail(Root().Field("max_batch_size"),
                  "must be >= 0, got " + std::to_string(c_.max_batch_size()));
    }
    FS_RETURN_IF_ERROR(VersionPolicy());
    FS_RETURN_IF_ERROR(Inputs());
    FS_RETURN_IF_ERROR(Outputs());
    FS_RETURN_IF_ERROR(InstanceGroups());
    FS_RETURN_IF_ERROR(DynamicBatching());
    FS_RETURN_IF_ERROR(SequenceBatching());
    FS_RETURN_IF_ERROR(Ensemble());
    FS_RETURN_IF_ERROR(Warmup());
    return Status::Ok();
  }

 private:
  static FieldPath Root() { return FieldPath(); }

  Status Fail(const FieldPath& at, const std::string& what) const {
    std::string field = at.ToString();
    return InvalidArgument(Where(at) + ": " + (field.empty() ? "" : field + ": ") + what);
  }

  // "file:line:col" of the deepest part of the path the text recorded, or just "file".
  std::string Where(const FieldPath& path) const {
    if (locations_ == nullptr) return source_;
    const ParseInfoTree* tree = locations_;
    google::protobuf::TextFormat::ParseLocation best;
    for (const auto& step : path.steps()) {
      if (tree == nullptr) break;
      const pb::FieldDescriptor* fd = step.field;
      int index = fd->is_repeated() ? std::max(step.index, 0) : -1;
      auto loc = tree->GetLocation(fd, index);
      if (loc.line < 0 && index > 0) loc = tree->GetLocation(fd, 0);
      if (loc.line < 0) break;
      best = loc;
      if (!step.key.empty() || fd->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) break;
      tree = tree->GetTreeForNested(fd, index);
      // An element of `input [ {...}, {...} ]` is recorded at the `input` keyword; its
      // first field is on the element's own line.
      if (fd->is_repeated() && tree != nullptr) {
        auto first = FirstFieldLocation(*tree, fd->message_type());
        if (first.line >= 0) best = first;
      }
    }
    if (best.line < 0) return source_;
    return source_ + ":" + std::to_string(best.line + 1) + ":" + std::to_string(best.column + 1);
  }

  static google::protobuf::TextFormat::ParseLocation FirstFieldLocation(
      const ParseInfoTree& tree, const pb::Descriptor* type) {
    google::protobuf::TextFormat::ParseLocation first;
    for (int i = 0; i < type->field_count(); ++i) {
      const pb::FieldDescriptor* f = type->field(i);
      auto loc = tree.GetLocation(f, f->is_repeated() ? 0 : -1);
      if (loc.line < 0) continue;
      if (first.line < 0 || loc.line < first.line ||
          (loc.line == first.line && loc.column < first.column)) {
        first = loc;
      }
    }
    return first;
  }

  // proto3 enums are open: `kind: 7` parses. Reject numbers the schema does not define.
  Status CheckEnums(const pb::Message& msg, const FieldPath& path) const {
    const pb::Reflection* r = msg.GetReflection();
    std::vector<const pb::FieldDescriptor*> fields;
    r->ListFields(msg, &fields);
    for (const pb::FieldDescriptor* fd : fields) {
      if (fd->is_map()) {
        const pb::FieldDescriptor* value = fd->message_type()->map_value();
        if (value->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
        for (int i = 0; i < r->FieldSize(msg, fd); ++i) {
          const pb::Message& entry = r->GetRepeatedMessage(msg, fd, i);
          const pb::Message& v = entry.GetReflection()->GetMessage(entry, value);
          FS_RETURN_IF_ERROR(CheckEnums(v, path.MapEntry(fd, MapKeyString(entry))));
        }
      } else if (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM) {
        int n = fd->is_repeated() ? r->FieldSize(msg, fd) : 1;
        for (int i = 0; i < n; ++i) {
          int v =
              fd->is_repeated() ? r->GetRepeatedEnumValue(msg, fd, i) : r->GetEnumValue(msg, fd);
          if (fd->enum_type()->FindValueByNumber(v) == nullptr) {
            return Fail(
                path.Field(fd, fd->is_repeated() ? i : -1),
                "unknown enum value " + std::to_string(v) + " for " + fd->enum_type()->full_name());
          }
        }
      } else if (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        if (fd->is_repeated()) {
          for (int i = 0; i < r->FieldSize(msg, fd); ++i) {
            FS_RETURN_IF_ERROR(CheckEnums(r->GetRepeatedMessage(msg, fd, i), path.Field(fd, i)));
          }
        } else {
          FS_RETURN_IF_ERROR(CheckEnums(r->GetMessage(msg, fd), path.Field(fd)));
        }
      }
    }
    return Status::Ok();
  }

  Status Name() {
    if (c_.name().empty()) c_.set_name(folder_);
    if (c_.name().empty()) return Fail(Root().Field("name"), "a model name is required");
    if (!folder_.empty() && c_.name() != folder_) {
      return Fail(Root().Field("name"), "model name '" + c_.name() +
                                            "' does not match its folder name '" + folder_ + "'");
    }
    return Status::Ok();
  }

  Status BackendAndPlatform() {
    const std::string& platform = c_.platform();
    if (platform == kEnsemble) {
      if (!c_.backend().empty()) {
        return Fail(
            Root().Field("backend"),
            "an ensemble (platform \"ensemble\") has no backend, got '" + c_.backend() + "'");
      }
      if (!c_.has_ensemble_scheduling()) {
        return Fail(Root().Field("platform"), "platform \"ensemble\" requires ensemble_scheduling");
      }
      return Status::Ok();
    }
    if (c_.has_ensemble_scheduling()) {
      return Fail(Root().Field("ensemble_scheduling"),
                  "only allowed with platform \"ensemble\", got platform '" + platform + "'");
    }
    if (platform.empty()) {
      if (c_.backend().empty()) {
        return Fail(Root(), "model '" + c_.name() +
                                "' has no 'backend' (nor a 'platform' to derive it from)");
      }
      auto it = kBackendPlatform.find(c_.backend());
      if (it != kBackendPlatform.end()) c_.set_platform(it->second);
      return Status::Ok();
    }
    auto it = kPlatformBackend.find(platform);
    if (it == kPlatformBackend.end()) {
      if (c_.backend().empty()) {
        return Fail(Root().Field("platform"),
                    "unknown platform '" + platform + "' and no 'backend' given");
      }
      return Status::Ok();
    }
    if (c_.backend().empty()) {
      c_.set_backend(it->second);
    } else if (c_.backend() != it->second) {
      return Fail(Root().Field("backend"), "backend '" + c_.backend() +
                                               "' conflicts with platform '" + platform +
                                               "' (backend '" + it->second + "')");
    }
    return Status::Ok();
  }

  Status VersionPolicy() {
    auto* policy = c_.mutable_version_policy();
    auto at = Root().Field("version_policy");
    switch (policy->policy_choice_case()) {
      case inference::ModelVersionPolicy::POLICY_CHOICE_NOT_SET:
        policy->mutable_latest()->set_num_versions(1);
        break;
      case inference::ModelVersionPolicy::kLatest:
        if (policy->latest().num_versions() == 0) {
          return Fail(at.Field("latest").Field("num_versions"), "must be > 0, got 0");
        }
        break;
      case inference::ModelVersionPolicy::kSpecific: {
        const auto& versions = policy->specific().versions();
        if (versions.empty()) {
          return Fail(at.Field("specific"), "must list at least one version");
        }
        for (int i = 0; i < versions.size(); ++i) {
          if (versions.Get(i) < 0) {
            return Fail(at.Field("specific").Field("versions", i),
                        "version must be >= 0, got " + std::to_string(versions.Get(i)));
          }
        }
        break;
      }
      case inference::ModelVersionPolicy::kAll:
        break;
    }
    return Status::Ok();
  }

  // Checks shared by inputs and outputs: name, data type, dims and reshape.
  template <typename IO>
  Status TensorShape(const IO& io, const FieldPath& at, const char* kind) const {
    const std::string who = std::string(kind) + " '" + io.name() + "'";
    if (io.data_type() == inference::TYPE_INVALID) {
      return Fail(at.Field("data_type"), who + " must specify a data_type");
    }
    if (io.dims_size() == 0) {
      return Fail(at, who + " must specify dims");
    }
    for (int j = 0; j < io.dims_size(); ++j) {
      if (!ValidDim(io.dims(j))) {
        return Fail(at.Field("dims", j), who + " has invalid dim " + std::to_string(io.dims(j)) +
                                             " in " + Join(io.dims()) +
                                             " (a dim is > 0, or -1 for variable size)");
      }
    }
    if (io.is_shape_tensor() && io.data_type() != inference::TYPE_INT32 &&
        io.data_type() != inference::TYPE_INT64) {
      return Fail(at.Field("is_shape_tensor"), who +
                                                   " is a shape tensor and must be TYPE_INT32 "
                                                   "or TYPE_INT64, got " +
                                                   inference::DataType_Name(io.data_type()));
    }
    if (!io.has_reshape()) return Status::Ok();
    const auto& shape = io.reshape().shape();
    auto rat = at.Field("reshape");
    if (shape.empty() && c_.max_batch_size() == 0) {
      return Fail(rat, who + " cannot have an empty reshape in a non-batching model");
    }
    for (int j = 0; j < shape.size(); ++j) {
      if (!ValidDim(shape.Get(j))) {
        return Fail(rat.Field("shape", j), who + " has invalid reshape dim " +
                                               std::to_string(shape.Get(j)) + " in " + Join(shape));
      }
    }
    int64_t from = FixedElementCount(io.dims());
    int64_t to = FixedElementCount(shape);
    if ((from < 0) != (to < 0)) {
      return Fail(rat, who + ": dims " + Join(io.dims()) + " and reshape " + Join(shape) +
                           " must both be fixed or both have variable (-1) dims");
    }
    if (from >= 0 && from != to) {
      return Fail(rat, who + ": reshape " + Join(shape) + " has " + std::to_string(to) +
                           " elements but dims " + Join(io.dims()) + " have " +
                           std::to_string(from));
    }
    return Status::Ok();
  }

  Status Inputs() const {
    std::set<std::string> seen;
    for (int i = 0; i < c_.input_size(); ++i) {
      const auto& in = c_.input(i);
      auto at = Root().Field("input", i);
      if (in.name().empty()) return Fail(at, "an input must have a name");
      if (!seen.insert(in.name()).second) {
        return Fail(at.Field("name"), "duplicate input name '" + in.name() + "'");
      }
      FS_RETURN_IF_ERROR(TensorShape(in, at, "input"));
      if (in.format() != inference::ModelInput::FORMAT_NONE && in.dims_size() != 3) {
        return Fail(at.Field("format"), "input '" + in.name() + "' with format " +
                                            inference::ModelInput::Format_Name(in.format()) +
                                            " needs 3 dims, got " + Join(in.dims()));
      }
    }
    return Status::Ok();
  }

  Status Outputs() const {
    std::set<std::string> seen;
    for (int i = 0; i < c_.output_size(); ++i) {
      const auto& out = c_.output(i);
      auto at = Root().Field("output", i);
      if (out.name().empty()) return Fail(at, "an output must have a name");
      if (!seen.insert(out.name()).second) {
        return Fail(at.Field("name"), "duplicate output name '" + out.name() + "'");
      }
      FS_RETURN_IF_ERROR(TensorShape(out, at, "output"));
    }
    return Status::Ok();
  }

  Status InstanceGroups() {
    if (c_.instance_group_size() == 0) {
      auto* group = c_.add_instance_group();
      group->set_name(c_.name());
      group->set_count(1);
      group->set_kind(inference::ModelInstanceGroup::KIND_CPU);
      return Status::Ok();
    }
    std::set<std::string> names;
    for (int i = 0; i < c_.instance_group_size(); ++i) {
      auto* group = c_.mutable_instance_group(i);
      auto at = Root().Field("instance_group", i);
      if (group->count() < 0) {
        return Fail(at.Field("count"), "must be >= 0, got " + std::to_string(group->count()));
      }
      if (group->count() == 0) group->set_count(1);
      if (group->name().empty()) group->set_name(c_.name() + "_" + std::to_string(i));
      if (!names.insert(group->name()).second) {
        return Fail(at.Field("name"), "duplicate instance_group name '" + group->name() + "'");
      }
      for (int j = 0; j < group->gpus_size(); ++j) {
        if (group->gpus(j) < 0) {
          return Fail(at.Field("gpus", j),
                      "gpu id must be >= 0, got " + std::to_string(group->gpus(j)));
        }
      }
    }
    return Status::Ok();
  }

  Status PreferredBatchSizes(const pb::RepeatedField<int32_t>& sizes, const FieldPath& at) const {
    for (int i = 0; i < sizes.size(); ++i) {
      int32_t s = sizes.Get(i);
      if (s <= 0 || s > c_.max_batch_size()) {
        return Fail(at.Field("preferred_batch_size", i),
                    "must be in [1, max_batch_size=" + std::to_string(c_.max_batch_size()) +
                        "], got " + std::to_string(s));
      }
    }
    return Status::Ok();
  }

  Status DynamicBatching() const {
    if (!c_.has_dynamic_batching()) return Status::Ok();
    const auto& db = c_.dynamic_batching();
    auto at = Root().Field("dynamic_batching");
    if (c_.max_batch_size() == 0) {
      return Fail(at, "dynamic batching needs max_batch_size > 0, got 0");
    }
    FS_RETURN_IF_ERROR(PreferredBatchSizes(db.preferred_batch_size(), at));
    const uint64_t levels = db.priority_levels();
    if (levels == 0) {
      if (db.default_priority_level() != 0) {
        return Fail(at.Field("default_priority_level"),
                    "is " + std::to_string(db.default_priority_level()) +
                        " but priority_levels is not set");
      }
      if (!db.priority_queue_policy().empty()) {
        return Fail(at.Field("priority_queue_policy"), "needs priority_levels > 0");
      }
      return Status::Ok();
    }
    if (db.default_priority_level() < 1 || db.default_priority_level() > levels) {
      return Fail(at.Field("default_priority_level"),
                  "must be in [1, priority_levels=" + std::to_string(levels) + "], got " +
                      std::to_string(db.default_priority_level()));
    }
    for (const auto& [level, policy] : db.priority_queue_policy()) {
      if (level < 1 || level > levels) {
        return Fail(at.Field("priority_queue_policy"),
                    "priority level " + std::to_string(level) +
                        " is outside [1, priority_levels=" + std::to_string(levels) + "]");
      }
    }
    return Status::Ok();
  }

  Status SequenceBatching() const {
    if (!c_.has_sequence_batching()) return Status::Ok();
    const auto& sb = c_.sequence_batching();
    auto at = Root().Field("sequence_batching");
    std::set<std::string> names;
    for (int i = 0; i < sb.control_input_size(); ++i) {
      const auto& ci = sb.control_input(i);
      auto cat = at.Field("control_input", i);
      if (ci.name().empty()) return Fail(cat, "a control input must have a name");
      if (!names.insert(ci.name()).second) {
        return Fail(cat.Field("name"), "duplicate control input name '" + ci.name() + "'");
      }
      if (ci.control_size() == 0) {
        return Fail(cat, "control input '" + ci.name() + "' must have a control");
      }
    }
    if (sb.has_oldest()) {
      auto oat = at.Field("oldest");
      if (sb.oldest().max_candidate_sequences() < 0) {
        return Fail(oat.Field("max_candidate_sequences"),
                    "must be >= 0, got " + std::to_string(sb.oldest().max_candidate_sequences()));
      }
      FS_RETURN_IF_ERROR(PreferredBatchSizes(sb.oldest().preferred_batch_size(), oat));
    }
    return Status::Ok();
  }

  // Steps must name a model, and every tensor a step reads must be an ensemble input or
  // another step's output; every ensemble output must be produced by some step.
  Status Ensemble() const {
    if (!c_.has_ensemble_scheduling()) return Status::Ok();
    const auto& es = c_.ensemble_scheduling();
    auto at = Root().Field("ensemble_scheduling");
    if (es.step_size() == 0) return Fail(at, "must have at least one step");
    std::set<std::string> available;
    for (const auto& in : c_.input()) available.insert(in.name());
    std::set<std::string> produced;
    for (const auto& step : es.step()) {
      for (const auto& [model_tensor, ensemble_tensor] : step.output_map()) {
        produced.insert(ensemble_tensor);
      }
    }
    for (int i = 0; i < es.step_size(); ++i) {
      const auto& step = es.step(i);
      auto sat = at.Field("step", i);
      if (step.model_name().empty()) return Fail(sat, "a step must name a model (model_name)");
      if (step.model_version() < -1) {
        return Fail(sat.Field("model_version"),
                    "must be >= -1 (-1: latest), got " + std::to_string(step.model_version()));
      }
      for (const auto& [model_tensor, ensemble_tensor] : step.input_map()) {
        if (!available.count(ensemble_tensor) && !produced.count(ensemble_tensor)) {
          return Fail(sat.Field("input_map"),
                      "step '" + step.model_name() + "' reads tensor '" + ensemble_tensor +
                          "', which is neither an ensemble input nor any step's output");
        }
      }
    }
    for (int i = 0; i < c_.output_size(); ++i) {
      if (!produced.count(c_.output(i).name())) {
        return Fail(Root().Field("output", i), "ensemble output '" + c_.output(i).name() +
                                                   "' is not produced by any step's output_map");
      }
    }
    return Status::Ok();
  }

  Status Warmup() const {
    for (int i = 0; i < c_.model_warmup_size(); ++i) {
      const auto& w = c_.model_warmup(i);
      auto at = Root().Field("model_warmup", i);
      if (w.name().empty()) return Fail(at, "a warmup sample must have a name");
      if (w.inputs().empty()) {
        return Fail(at, "warmup sample '" + w.name() + "' must have inputs");
      }
      for (const auto& [name, in] : w.inputs()) {
        if (in.data_type() == inference::TYPE_INVALID) {
          return Fail(at.Field("inputs"), "warmup input '" + name + "' must specify a data_type");
        }
        for (int64_t d : in.dims()) {
          if (d <= 0) {
            return Fail(at.Field("inputs"), "warmup input '" + name + "' has invalid dim " +
                                                std::to_string(d) + " in " + Join(in.dims()) +
                                                " (warmup dims are fixed, > 0)");
          }
        }
      }
    }
    return Status::Ok();
  }

  ModelConfig& c_;
  const std::string& source_;
  const std::string& folder_;
  const ParseInfoTree* locations_;
};

}  // namespace

Status NormalizeAndValidateAt(ModelConfig& config, const std::string& source_name,
                              const std::string& folder_name, const ParseInfoTree* locations) {
  return Validator(config, source_name, folder_name, locations).Run();
}

}  // namespace flowserve::config_internal
