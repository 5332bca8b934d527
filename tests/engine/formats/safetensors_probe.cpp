// Drives tlm_formats' safetensors reader for test_safetensors_parity.py:
//   safetensors_probe list <file or model directory>   tensor table (+ metadata) as JSON
//   safetensors_probe dump <file or model directory> <tensor> <out.bin>   raw tensor bytes
// Exit status 1 with the error on stderr when tlm throws.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/safetensors_file.h"

namespace {

nlohmann::json tensor_json(const tlm::SafetensorsTensor& t, const std::string& file) {
  return {{"name", t.name},   {"dtype", tlm::st_dtype_name(t.dtype)}, {"shape", t.shape},
          {"begin", t.begin}, {"end", t.end},                          {"file", file}};
}

int cmd_list(const std::string& path) {
  nlohmann::json out;
  nlohmann::json tensors = nlohmann::json::array();
  if (std::filesystem::is_directory(path)) {
    tlm::SafetensorsModel m(path);
    for (const std::string& name : m.tensor_names()) {
      tensors.push_back(tensor_json(m.tensor(name), m.file_of(name).path()));
    }
  } else {
    tlm::SafetensorsFile f(path);
    for (const tlm::SafetensorsTensor& t : f.tensors()) {
      tensors.push_back(tensor_json(t, f.path()));
    }
    out["metadata"] = f.metadata();
  }
  out["tensors"] = tensors;
  std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  return 0;
}

void write_bytes(const std::string& out_path, const uint8_t* data, size_t n) {
  std::FILE* fp = std::fopen(out_path.c_str(), "wb");
  TLM_CHECK(fp != nullptr, out_path, ": cannot open for writing");
  const size_t written = n == 0 ? 0 : std::fwrite(data, 1, n, fp);
  std::fclose(fp);
  TLM_CHECK(written == n, out_path, ": write failed");
}

int cmd_dump(const std::string& path, const std::string& name, const std::string& out_path) {
  if (std::filesystem::is_directory(path)) {
    tlm::SafetensorsModel m(path);
    const tlm::SafetensorsTensor& t = m.tensor(name);
    write_bytes(out_path, m.file_of(name).data(t), t.end - t.begin);
  } else {
    tlm::SafetensorsFile f(path);
    const tlm::SafetensorsTensor* t = f.find(name);
    TLM_CHECK(t != nullptr, path, ": tensor '", name, "' not found");
    write_bytes(out_path, f.data(*t), t->end - t->begin);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "list") {
      return cmd_list(args[1]);
    }
    if (args.size() == 4 && args[0] == "dump") {
      return cmd_dump(args[1], args[2], args[3]);
    }
  } catch (const tlm::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "usage: safetensors_probe list <path> | dump <path> <tensor> <out.bin>\n";
  return 2;
}
