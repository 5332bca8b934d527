// Reading a YAML recipe (configs/*.yaml) with flags overriding its keys: every key is checked
// against the command's schema (unknown keys and values of the wrong type are errors naming
// the file and line, or the flag a value came from). Shared by `tlm adapt` and `tlm serve`.
#pragma once

#include <cmath>
#include <map>
#include <set>
#include <type_traits>
#include <sstream>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "engine/common/error.h"
#include "launch/setting_bounds.h"

namespace tlm {

// flag -> recipe key. Every flag overrides the key of the same meaning in the recipe.
struct RecipeFlag {
  const char* flag;
  const char* key;
  const char* help;
};

class RecipeReader {
 public:
  RecipeReader(std::string path, YAML::Node root, std::set<std::string> known_keys)
      : path_(std::move(path)), root_(std::move(root)), known_(std::move(known_keys)) {}

  void check_keys(const YAML::Node& node, const std::string& prefix) const {
    if (!node.IsMap()) return;
    std::map<std::string, int> seen;  // key -> its line (yaml-cpp keeps duplicates; lookups take the first)
    for (const auto& kv : node) {
      // A key that is a list or a mapping (YAML's `? [a, b]`) has no name to look up.
      TLM_CHECK(kv.first.IsScalar(), where(kv.first), ": a key must be a plain name, got '",
                YAML::Dump(kv.first), "'");
      const std::string key = prefix + kv.first.as<std::string>();
      const auto [first, fresh] = seen.emplace(key, kv.first.Mark().line + 1);
      TLM_CHECK(fresh, where(kv.first), ": duplicate key '", key, "' (first at line ", first->second,
                "); only one may stand");
      bool known = known_.count(key) > 0;
      bool is_section = false;
      for (const std::string& k : known_) is_section |= k.rfind(key + ".", 0) == 0;
      TLM_CHECK(known || is_section, where(kv.first), ": unknown key '", key, "'");
      if (is_section) {
        TLM_CHECK(kv.second.IsMap(), where(kv.second), ": '", key, "' must be a mapping");
        check_keys(kv.second, key + ".");
      }
    }
  }

  // yaml-cpp nodes are handles whose operator= writes through; reset() rebinds a handle.
  void set(const std::string& key, const std::string& value, const std::string& flag) {
    std::vector<std::string> parts = split_key(key);
    YAML::Node node;
    node.reset(root_);
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      YAML::Node child = node[parts[i]];
      node.reset(child);
    }
    node[parts.back()] = value;
    flags_[key] = flag;
  }

  template <typename T>
  T get(const std::string& key, T fallback) const {
    YAML::Node node = lookup(key);
    if (!node) return fallback;
    T value;
    try {
      value = node.as<T>();
    } catch (const YAML::Exception&) {
      TLM_FAIL(origin(key, node), ": '", key, "' has the wrong type (value '", YAML::Dump(node), "')");
    }
    // The one place every number of a recipe or a flag passes: none may be NaN or infinite.
    if constexpr (std::is_floating_point_v<T>)
      TLM_CHECK(std::isfinite(value), origin(key, node), ": '", key, "' must be a finite number, got '",
                YAML::Dump(node), "'");
    // ... and each lies in its range (launch/setting_bounds.cpp).
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>)
      if (const Bounds* b = bounds_of(key))
        TLM_CHECK(b->contains(static_cast<double>(value)), origin(key, node), ": ",
                  bounds_message(key, *b, YAML::Dump(node)));
    return value;
  }

  std::vector<std::string> get_list(const std::string& key, std::vector<std::string> fallback) const {
    YAML::Node node = lookup(key);
    if (!node) return fallback;
    if (node.IsSequence()) return get<std::vector<std::string>>(key, fallback);
    std::vector<std::string> out;
    std::stringstream ss(get<std::string>(key, ""));
    for (std::string item; std::getline(ss, item, ',');)
      if (!item.empty()) out.push_back(item);
    return out;
  }

  std::string origin(const std::string& key) const { return origin(key, lookup(key)); }

 private:
  static std::vector<std::string> split_key(const std::string& key) {
    std::vector<std::string> parts;
    std::stringstream ss(key);
    for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
    return parts;
  }
  YAML::Node lookup(const std::string& key) const {
    YAML::Node node;
    node.reset(root_);
    for (const std::string& part : split_key(key)) {
      if (!node.IsMap() || !node[part]) return YAML::Node(YAML::NodeType::Undefined);
      YAML::Node child = node[part];
      node.reset(child);
    }
    return node;
  }
  std::string where(const YAML::Node& node) const {
    return str_cat(path_, ":", node.Mark().line + 1);
  }
  std::string origin(const std::string& key, const YAML::Node& node) const {
    auto f = flags_.find(key);
    if (f != flags_.end()) return "command line --" + f->second;
    if (path_.empty() || !node) return path_.empty() ? "<defaults>" : path_;
    return where(node);
  }

  std::string path_;
  YAML::Node root_;
  std::set<std::string> known_;
  std::map<std::string, std::string> flags_;
};

}  // namespace tlm
