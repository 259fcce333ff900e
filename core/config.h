// Typed configuration: YAML files bound to plain structs.
//
// A config struct lists its keys once, in a Visit method, and the same list
// serves for reading (with file:line errors, unknown keys rejected), for
// `--set a.b=c` overrides and for writing the effective config back out:
//
//   struct TextConfig {
//     int width = 512;
//     template <class V> void Visit(V& v) { v("width", width); }
//   };
//   ASSIGN_OR_RETURN(TextConfig cfg, LoadConfigFile<TextConfig>(path, overrides));
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "yaml-cpp/yaml.h"

namespace clipscale {

namespace config_internal {

template <class T, class = void>
struct IsSection : std::false_type {};
struct NullVisitor {
  template <class U>
  void operator()(const char*, U&) {}
};
template <class T>
struct IsSection<T, std::void_t<decltype(std::declval<T&>().Visit(std::declval<NullVisitor&>()))>>
    : std::true_type {};

template <class T>
struct IsVector : std::false_type {};
template <class T>
struct IsVector<std::vector<T>> : std::true_type {};
template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <class T>
const char* TypeName() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean";
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) return "an integer";
  if constexpr (std::is_floating_point_v<T>) return "a number";
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  return "a value";
}

// Decimal digits with an optional sign ("010" is 10); false for anything else
// ("0x10", "1e3", " 5") and for values outside T's range.
template <class T>
bool ParseDecimal(const std::string& text, T* out) {
  size_t i = (!text.empty() && (text[0] == '+' || text[0] == '-')) ? 1 : 0;
  if (i == text.size()) return false;
  for (size_t k = i; k < text.size(); ++k) {
    if (text[k] < '0' || text[k] > '9') return false;
  }
  const bool negative = text[0] == '-';
  if (negative && std::is_unsigned_v<T>) return false;
  // Accumulate towards the sign so that the most negative value fits.
  T value = 0;
  for (; i < text.size(); ++i) {
    const T digit = static_cast<T>(text[i] - '0');
    if (negative) {
      if (value < (std::numeric_limits<T>::min() + digit) / 10) return false;
      value = static_cast<T>(value * 10 - digit);
    } else {
      if (value > (std::numeric_limits<T>::max() - digit) / 10) return false;
      value = static_cast<T>(value * 10 + digit);
    }
  }
  *out = value;
  return true;
}

template <class T>
std::string IntegerRule() {
  // Unary + promotes 8-bit types, which would otherwise print as characters.
  return absl::StrCat("decimal digits, ", +std::numeric_limits<T>::min(), " to ",
                      +std::numeric_limits<T>::max());
}

}  // namespace config_internal

// Where a node came from, for messages: "file:line:col" or "--set key=value".
struct ConfigSource {
  std::string file;
  std::set<std::string> overridden;  // key paths replaced by --set
};

// Reads a YAML mapping into a struct; collects every problem instead of
// stopping at the first one.
class ConfigReader {
 public:
  ConfigReader(const ConfigSource* source, YAML::Node node, std::string path,
               std::vector<std::string>* errors)
      : source_(source), node_(std::move(node)), path_(std::move(path)), errors_(errors) {}

  template <class T>
  void operator()(const char* key, T& value) {
    seen_.insert(key);
    if (!node_.IsMap()) return;
    YAML::Node child = node_[key];
    if (!child.IsDefined() || child.IsNull()) {
      if constexpr (config_internal::IsOptional<T>::value) value.reset();
      return;
    }
    Read(child, Join(key), value);
  }

  // Reports keys that the struct did not ask for.
  void RejectUnknownKeys();

  std::string Where(const YAML::Node& node, const std::string& path) const;
  void Error(const YAML::Node& node, const std::string& path, const std::string& message) {
    errors_->push_back(absl::StrCat(Where(node, path), ": ", path, ": ", message));
  }

 private:
  std::string Join(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

  template <class T>
  void Read(const YAML::Node& node, const std::string& path, T& value) {
    using namespace config_internal;
    if constexpr (IsSection<T>::value) {
      if (!node.IsMap()) return Error(node, path, "expected a mapping of keys");
      ConfigReader sub(source_, node, path, errors_);
      value.Visit(sub);
      sub.RejectUnknownKeys();
    } else if constexpr (IsOptional<T>::value) {
      typename T::value_type inner{};
      Read(node, path, inner);
      value = std::move(inner);
    } else if constexpr (IsVector<T>::value) {
      value.clear();
      if (node.IsScalar()) {  // a lone value stands for a one-element list
        typename T::value_type item{};
        Read(node, path, item);
        value.push_back(std::move(item));
        return;
      }
      if (!node.IsSequence()) return Error(node, path, "expected a list");
      for (size_t i = 0; i < node.size(); ++i) {
        typename T::value_type item{};
        Read(node[i], absl::StrCat(path, "[", i, "]"), item);
        value.push_back(std::move(item));
      }
    } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      // yaml-cpp reads integers with the base taken from the prefix, so "010"
      // would be 8 and "0x10" 16; config integers are decimal only.
      if (!node.IsScalar()) {
        return Error(node, path, absl::StrCat("expected an integer, got ",
                                              node.IsMap() ? "a mapping" : "a list"));
      }
      if (!ParseDecimal(node.Scalar(), &value)) {
        Error(node, path, absl::StrCat("expected an integer, got '", node.Scalar(), "' (",
                                       IntegerRule<T>(), ")"));
      }
    } else {
      if (!node.IsScalar() || !YAML::convert<T>::decode(node, value)) {
        std::string got = node.IsScalar() ? absl::StrCat("'", node.Scalar(), "'")
                                          : std::string(node.IsMap() ? "a mapping" : "a list");
        Error(node, path, absl::StrCat("expected ", TypeName<T>(), ", got ", got));
      }
    }
  }

  const ConfigSource* source_;
  YAML::Node node_;
  std::string path_;
  std::vector<std::string>* errors_;
  std::set<std::string> seen_;
};

// Writes a struct back as YAML (the effective config).
class ConfigWriter {
 public:
  explicit ConfigWriter(YAML::Emitter* out) : out_(out) {}
  template <class T>
  void operator()(const char* key, const T& value) {
    using namespace config_internal;
    if constexpr (IsOptional<T>::value) {
      if (!value) return;
      (*this)(key, *value);
    } else {
      *out_ << YAML::Key << key << YAML::Value;
      Write(value);
    }
  }

 private:
  template <class T>
  void Write(const T& value) {
    using namespace config_internal;
    if constexpr (IsSection<T>::value) {
      *out_ << YAML::BeginMap;
      const_cast<T&>(value).Visit(*this);
      *out_ << YAML::EndMap;
    } else if constexpr (IsVector<T>::value) {
      *out_ << YAML::Flow << YAML::BeginSeq;
      for (const auto& item : value) Write(item);
      *out_ << YAML::EndSeq;
    } else {
      *out_ << value;
    }
  }
  YAML::Emitter* out_;
};

// Applies `key.path=value` overrides to a YAML tree; value is parsed as YAML.
absl::Status ApplyOverrides(YAML::Node& root, const std::vector<std::string>& overrides,
                            ConfigSource* source);

// Where the value of `key_path` ("data.batch_size") came from, for messages
// about a bound config: "file:line:col", "--set key", or the file alone when
// the key was not given (its default applies).
std::string ConfigKeyWhere(const YAML::Node& root, const ConfigSource& source,
                           const std::string& key_path);

// Parses a YAML file; errors carry the file name and line.
absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path);

// Binds an already-parsed tree to T.
template <class T>
absl::StatusOr<T> BindConfig(const YAML::Node& root, const ConfigSource& source) {
  T value{};
  std::vector<std::string> errors;
  ConfigReader reader(&source, root, "", &errors);
  if (root.IsDefined() && !root.IsNull() && !root.IsMap()) {
    errors.push_back(absl::StrCat(source.file, ": expected a mapping at the top level"));
  } else {
    value.Visit(reader);
    reader.RejectUnknownKeys();
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return value;
}

// Loads `path`, applies overrides, binds to T.
template <class T>
absl::StatusOr<T> LoadConfigFile(const std::string& path,
                                 const std::vector<std::string>& overrides = {}) {
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  ConfigSource source{path, {}};
  RETURN_IF_ERROR(ApplyOverrides(root, overrides, &source));
  return BindConfig<T>(root, source);
}

// Parses YAML text (for tests and configs embedded in checkpoints).
template <class T>
absl::StatusOr<T> ParseConfigString(const std::string& text, const std::string& name,
                                    const std::vector<std::string>& overrides = {}) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
  ConfigSource source{name, {}};
  RETURN_IF_ERROR(ApplyOverrides(root, overrides, &source));
  return BindConfig<T>(root, source);
}

template <class T>
std::string ConfigToYaml(const T& value) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  ConfigWriter writer(&out);
  const_cast<T&>(value).Visit(writer);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace clipscale
