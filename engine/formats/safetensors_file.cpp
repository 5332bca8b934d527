#include "engine/formats/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"

namespace tlm {

namespace {

using nlohmann::json;

struct DtypeInfo {
  StDtype dtype;
  const char* name;
  size_t bytes;
};

const DtypeInfo kDtypes[] = {
    {StDtype::F64, "F64", 8}, {StDtype::F32, "F32", 4}, {StDtype::F16, "F16", 2},
    {StDtype::BF16, "BF16", 2}, {StDtype::I64, "I64", 8}, {StDtype::I32, "I32", 4},
    {StDtype::I16, "I16", 2}, {StDtype::I8, "I8", 1}, {StDtype::U8, "U8", 1},
    {StDtype::BOOL, "BOOL", 1},
};

const DtypeInfo& dtype_info(StDtype dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.dtype == dtype) {
      return d;
    }
  }
  TLM_FAIL("invalid safetensors dtype value ", static_cast<int>(dtype));
}

SafetensorsTensor parse_tensor(const std::string& path, const std::string& name,
                               const json& entry, uint64_t data_start, uint64_t data_size) {
  TLM_CHECK(entry.is_object(), path, ": tensor '", name, "': header entry is not a JSON object");
  SafetensorsTensor t;
  t.name = name;

  auto dtype_it = entry.find("dtype");
  TLM_CHECK(dtype_it != entry.end(), path, ": tensor '", name, "': missing \"dtype\"");
  TLM_CHECK(dtype_it->is_string(), path, ": tensor '", name, "': \"dtype\" is not a string");
  const std::string& dtype = dtype_it->get_ref<const std::string&>();
  const DtypeInfo* info = nullptr;
  for (const DtypeInfo& d : kDtypes) {
    if (dtype == d.name) {
      info = &d;
    }
  }
  TLM_CHECK(info != nullptr, path, ": tensor '", name, "': unsupported dtype '", dtype, "'");
  t.dtype = info->dtype;

  auto shape_it = entry.find("shape");
  TLM_CHECK(shape_it != entry.end(), path, ": tensor '", name, "': missing \"shape\"");
  TLM_CHECK(shape_it->is_array(), path, ": tensor '", name, "': \"shape\" is not an array");
  uint64_t numel = 1;
  for (const json& dim : *shape_it) {
    TLM_CHECK(dim.is_number_integer(), path, ": tensor '", name,
              "': shape entry ", dim.dump(), " is not an integer");
    TLM_CHECK(dim.is_number_unsigned(), path, ": tensor '", name, "': negative dimension ",
              dim.get<int64_t>(), " in shape ", shape_it->dump());
    const uint64_t d = dim.get<uint64_t>();
    TLM_CHECK(d <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(numel, d, &numel),
              path, ": tensor '", name, "': shape ", shape_it->dump(), " overflows");
    t.shape.push_back(static_cast<int64_t>(d));
  }
  uint64_t nbytes = 0;
  TLM_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(info->bytes), &nbytes), path,
            ": tensor '", name, "': byte size of shape ", shape_it->dump(), " overflows");

  auto off_it = entry.find("data_offsets");
  TLM_CHECK(off_it != entry.end(), path, ": tensor '", name, "': missing \"data_offsets\"");
  TLM_CHECK(off_it->is_array() && off_it->size() == 2, path, ": tensor '", name,
            "': \"data_offsets\" is not a [begin, end] pair");
  for (const json& o : *off_it) {
    TLM_CHECK(o.is_number_unsigned(), path, ": tensor '", name, "': data offset ", o.dump(),
              " is not a non-negative integer");
  }
  const uint64_t begin = (*off_it)[0].get<uint64_t>();
  const uint64_t end = (*off_it)[1].get<uint64_t>();
  TLM_CHECK(begin <= end, path, ": tensor '", name, "': data_offsets begin ", begin,
            " > end ", end);
  TLM_CHECK(end <= data_size, path, ": tensor '", name, "': data_offsets end ", end,
            " is past the end of the data section (", data_size, " bytes)");
  TLM_CHECK(end - begin == nbytes, path, ": tensor '", name, "': data_offsets span ",
            end - begin, " bytes but shape ", shape_it->dump(), " of ", info->name, " needs ",
            nbytes);
  t.begin = data_start + begin;
  t.end = data_start + end;
  return t;
}

}  // namespace

std::string st_dtype_name(StDtype dtype) { return dtype_info(dtype).name; }

size_t st_dtype_bytes(StDtype dtype) { return dtype_info(dtype).bytes; }

SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& path) {
  TLM_CHECK(size >= 8, path, ": file is ", size,
            " bytes, shorter than the 8-byte safetensors header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, sizeof(header_len));
  TLM_CHECK(header_len <= size - 8, path, ": header length ", header_len,
            " runs past the end of the file (", size, " bytes)");
  const char* text = reinterpret_cast<const char*>(data + 8);
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;

  // The default json type would keep only the last of two equal keys; a header naming
  // one tensor twice is corrupt, so top-level keys are checked as the parser meets them.
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second) {
        duplicate = key;
      }
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + header_len, on_event);
  } catch (const json::exception& e) {
    TLM_FAIL(path, ": header is not valid JSON: ", e.what());
  }
  TLM_CHECK(header.is_object(), path, ": header is not a JSON object");
  TLM_CHECK(duplicate.empty(), path, ": tensor '", duplicate, "' appears twice in the header");

  SafetensorsHeader result;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      TLM_CHECK(it->is_object(), path, ": \"__metadata__\" is not a JSON object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        TLM_CHECK(m->is_string(), path, ": __metadata__ key '", m.key(),
                  "' is not a string");
        result.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    result.tensors.push_back(parse_tensor(path, it.key(), *it, data_start, data_size));
  }

  // File order is data order; sorting also makes overlaps adjacent.
  std::sort(result.tensors.begin(), result.tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  const SafetensorsTensor* prev = nullptr;
  for (const SafetensorsTensor& t : result.tensors) {
    if (t.begin == t.end) {
      continue;  // empty tensors occupy no bytes and may sit anywhere
    }
    TLM_CHECK(prev == nullptr || t.begin >= prev->end, path, ": tensor '", t.name,
              "' (bytes ", t.begin - data_start, "..", t.end - data_start, ") overlaps tensor '",
              prev->name, "' (bytes ", prev->begin - data_start, "..", prev->end - data_start,
              ")");
    prev = &t;
  }
  return result;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(path), header_(parse_safetensors(file_.data(), file_.size(), path)) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) {
    index_[header_.tensors[i].name] = i;
  }
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

const uint8_t* SafetensorsFile::data(const SafetensorsTensor& tensor) const {
  TLM_CHECK(tensor.begin <= tensor.end && tensor.end <= file_.size(), path(), ": tensor '",
            tensor.name, "' does not lie inside this file");
  return file_.data() + tensor.begin;
}

}  // namespace tlm
