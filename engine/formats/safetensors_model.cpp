#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/safetensors_file.h"

namespace tlm {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

nlohmann::json read_index(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TLM_CHECK(in, path, ": cannot open the shard index");
  std::stringstream buf;
  buf << in.rdbuf();
  try {
    return nlohmann::json::parse(buf.str());
  } catch (const nlohmann::json::exception& e) {
    TLM_FAIL(path, ": not valid JSON: ", e.what());
  }
}

}  // namespace

SafetensorsModel::SafetensorsModel(const std::string& directory) : directory_(directory) {
  const fs::path dir(directory);
  const fs::path index_path = dir / kIndexFile;
  const fs::path single_path = dir / kSingleFile;
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    const std::string index_name = index_path.string();
    const nlohmann::json index = read_index(index_name);
    TLM_CHECK(index.is_object(), index_name, ": not a JSON object");
    auto map_it = index.find("weight_map");
    TLM_CHECK(map_it != index.end() && map_it->is_object(), index_name,
              ": missing the \"weight_map\" object");
    // Shards in first-mention order of their (sorted) tensors; each opened once.
    std::map<std::string, size_t> shard_slot;
    std::vector<std::string> listed_names;
    std::vector<size_t> listed_slots;
    for (auto it = map_it->begin(); it != map_it->end(); ++it) {
      TLM_CHECK(it->is_string(), index_name, ": weight_map entry for tensor '", it.key(),
                "' is not a file name");
      const std::string shard = it->get<std::string>();
      auto slot = shard_slot.find(shard);
      if (slot == shard_slot.end()) {
        const fs::path shard_path = dir / shard;
        TLM_CHECK(fs::is_regular_file(shard_path, ec), index_name, ": shard '", shard,
                  "' (holding tensor '", it.key(), "') is missing: ", shard_path.string());
        files_.emplace_back(shard_path.string());
        slot = shard_slot.emplace(shard, files_.size() - 1).first;
      }
      listed_names.push_back(it.key());
      listed_slots.push_back(slot->second);
    }
    for (size_t i = 0; i < listed_names.size(); ++i) {
      const SafetensorsFile& file = files_[listed_slots[i]];
      TLM_CHECK(file.find(listed_names[i]) != nullptr, index_name, ": shard '",
                fs::path(file.path()).filename().string(), "' lacks tensor '", listed_names[i],
                "' that the index maps to it");
      file_of_tensor_[listed_names[i]] = listed_slots[i];
    }
    return;
  }
  TLM_CHECK(fs::exists(single_path, ec), directory, ": neither ", kSingleFile, " nor ",
            kIndexFile, " found");
  files_.emplace_back(single_path.string());
  for (const SafetensorsTensor& t : files_.back().tensors()) {
    file_of_tensor_[t.name] = 0;
  }
}

std::vector<std::string> SafetensorsModel::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(file_of_tensor_.size());
  for (const auto& kv : file_of_tensor_) {
    names.push_back(kv.first);
  }
  return names;
}

const SafetensorsTensor& SafetensorsModel::tensor(const std::string& name) const {
  return *file_of(name).find(name);
}

const SafetensorsFile& SafetensorsModel::file_of(const std::string& name) const {
  auto it = file_of_tensor_.find(name);
  TLM_CHECK(it != file_of_tensor_.end(), directory_, ": tensor '", name, "' not found");
  return files_[it->second];
}

bool SafetensorsModel::has(const std::string& name) const {
  return file_of_tensor_.count(name) != 0;
}

}  // namespace tlm
