// Drives tlm_formats for the Python parity test (test_dequant_parity.py):
//   gguf_probe meta <file>                      metadata and tensor table as JSON on stdout
//   gguf_probe dump <file> <tensor> <out.f32> [row_begin row_end]
//                                               dequantised float32 values of one tensor
//   gguf_probe stream <file>                    every tensor's float32 values, in file
//                                               order, concatenated on stdout
// Exit status 1 with the error on stderr when tlm throws.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"

namespace {

nlohmann::json value_json(const tlm::GgufValue& v) {
  return std::visit([](const auto& x) { return nlohmann::json(x); }, v);
}

int cmd_meta(const std::string& path) {
  tlm::GgufFile f(path);
  nlohmann::json out;
  out["version"] = f.version();
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& kv : f.metadata()) {
    meta[kv.first] = value_json(kv.second);
  }
  out["metadata"] = meta;
  nlohmann::json tensors = nlohmann::json::array();
  for (const tlm::GgufTensor& t : f.tensors()) {
    tensors.push_back({{"name", t.name},
                       {"ne", t.ne},
                       {"type", tlm::ggml_type_name(t.type)},
                       {"type_id", static_cast<uint32_t>(t.type)},
                       {"supported", tlm::ggml_type_supported(t.type)},
                       {"offset", t.offset},
                       {"nbytes", t.nbytes},
                       {"rows", t.rows()},
                       {"torch_shape", t.torch_shape()}});
  }
  out["tensors"] = tensors;
  std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  return 0;
}

void write_all(std::FILE* fp, const std::vector<float>& v, const std::string& what) {
  TLM_CHECK(std::fwrite(v.data(), sizeof(float), v.size(), fp) == v.size(),
            what, ": write failed");
}

int cmd_dump(const std::string& path, const std::string& name, const std::string& out_path,
             int64_t row_begin, int64_t row_end) {
  tlm::GgufFile f(path);
  const tlm::GgufTensor& t = f.tensor(name);
  if (row_end < 0) {
    row_end = t.rows();
  }
  std::vector<float> values(static_cast<size_t>((row_end - row_begin) * t.row_size()));
  f.dequantize_rows(t, row_begin, row_end, values.data());
  std::FILE* fp = std::fopen(out_path.c_str(), "wb");
  TLM_CHECK(fp != nullptr, out_path, ": cannot open for writing");
  write_all(fp, values, out_path);
  std::fclose(fp);
  return 0;
}

int cmd_stream(const std::string& path) {
  tlm::GgufFile f(path);
  std::vector<float> values;
  for (const tlm::GgufTensor& t : f.tensors()) {
    values.resize(static_cast<size_t>(t.rows() * t.row_size()));
    f.dequantize_rows(t, 0, t.rows(), values.data());
    write_all(stdout, values, "stdout");
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "meta") {
      return cmd_meta(args[1]);
    }
    if ((args.size() == 4 || args.size() == 6) && args[0] == "dump") {
      const int64_t b = args.size() == 6 ? std::stoll(args[4]) : 0;
      const int64_t e = args.size() == 6 ? std::stoll(args[5]) : -1;
      return cmd_dump(args[1], args[2], args[3], b, e);
    }
    if (args.size() == 2 && args[0] == "stream") {
      return cmd_stream(args[1]);
    }
  } catch (const tlm::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "usage: gguf_probe meta <file> | dump <file> <tensor> <out.f32> "
               "[row_begin row_end] | stream <file>\n";
  return 2;
}
