#include "checkpoints/adapter_checkpoint.h"

#include <poll.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <sstream>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <thread>
#include <memory>
#include <ctime>
#include <filesystem>
#include <functional>

#include <ATen/ATen.h>
#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>
#include <zlib.h>

#include "checkpoints/hdf5_superblock.h"
#include "engine/common/error.h"

namespace tlm {
namespace {

// An HDF5 identifier closed on scope exit; every creation and call is checked, and the
// message names the file and the object.
class H5Id {
 public:
  H5Id(hid_t id, herr_t (*close)(hid_t), const std::string& what) : id_(id), close_(close) {
    TLM_CHECK(id_ >= 0, what);
  }
  ~H5Id() {
    if (id_ >= 0) close_(id_);
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  hid_t get() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

void h5_check(herr_t status, const std::string& what) { TLM_CHECK(status >= 0, what); }

// HDF5 prints its own error stack to stderr by default; tlm reports errors itself.
void silence_hdf5() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

uint32_t crc32_of(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  const auto* p = static_cast<const Bytef*>(c.data_ptr());
  uLong crc = crc32(0L, Z_NULL, 0);
  size_t left = c.nbytes();
  while (left > 0) {
    const uInt n = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
    crc = crc32(crc, p, n);
    p += n;
    left -= n;
  }
  return static_cast<uint32_t>(crc);
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// ---- writing ---------------------------------------------------------------------------

struct Writer {
  std::string path;

  void attr_string(hid_t obj, const char* name, const std::string& value) const {
    H5Id type(H5Tcopy(H5T_C_S1), H5Tclose, path + ": H5Tcopy");
    h5_check(H5Tset_size(type.get(), H5T_VARIABLE), path + ": H5Tset_size");
    h5_check(H5Tset_cset(type.get(), H5T_CSET_UTF8), path + ": H5Tset_cset");
    H5Id space(H5Screate(H5S_SCALAR), H5Sclose, path + ": H5Screate");
    H5Id attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
              str_cat(path, ": cannot create attribute '", name, "'"));
    const char* data = value.c_str();
    h5_check(H5Awrite(attr.get(), type.get(), &data), str_cat(path, ": cannot write attribute '", name, "'"));
  }

  void attr_int(hid_t obj, const char* name, int64_t value) const {
    H5Id space(H5Screate(H5S_SCALAR), H5Sclose, path + ": H5Screate");
    H5Id attr(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
              str_cat(path, ": cannot create attribute '", name, "'"));
    h5_check(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), str_cat(path, ": cannot write attribute '", name, "'"));
  }

  hid_t group(hid_t parent, const std::string& name) const {
    hid_t g = H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    TLM_CHECK(g >= 0, path, ": cannot create group '", name, "'");
    return g;
  }

  // A chunked fp32 dataset with Fletcher32 and the crc32 of the tensor's bytes as attribute.
  void tensor(hid_t parent, const std::string& name, const at::Tensor& value) const {
    at::Tensor t = value.detach().to(at::kFloat).contiguous().cpu();
    TLM_CHECK(t.numel() > 0, path, ": tensor '", name, "' is empty");
    std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
    H5Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose,
               path + ": H5Screate_simple");
    H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, path + ": H5Pcreate");
    h5_check(H5Pset_chunk(dcpl.get(), static_cast<int>(dims.size()), dims.data()), path + ": H5Pset_chunk");
    h5_check(H5Pset_fletcher32(dcpl.get()), path + ": H5Pset_fletcher32");
    H5Id ds(H5Dcreate2(parent, name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
            H5Dclose, str_cat(path, ": cannot create dataset '", name, "'"));
    h5_check(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()),
             str_cat(path, ": cannot write dataset '", name, "'"));
    attr_int(ds.get(), "crc32", crc32_of(t));
  }

  // An extendable 1-D float64 dataset (unlimited maximum size) holding `values`.
  void series(hid_t parent, const std::string& name, const std::vector<double>& values) const {
    hsize_t dims[1] = {values.size()};
    hsize_t max[1] = {H5S_UNLIMITED};
    hsize_t chunk[1] = {1024};
    H5Id space(H5Screate_simple(1, dims, max), H5Sclose, path + ": H5Screate_simple");
    H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, path + ": H5Pcreate");
    h5_check(H5Pset_chunk(dcpl.get(), 1, chunk), path + ": H5Pset_chunk");
    h5_check(H5Pset_fletcher32(dcpl.get()), path + ": H5Pset_fletcher32");
    H5Id ds(H5Dcreate2(parent, name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
            H5Dclose, str_cat(path, ": cannot create dataset '", name, "'"));
    if (!values.empty())
      h5_check(H5Dwrite(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
               str_cat(path, ": cannot write dataset '", name, "'"));
  }
};

// "<module>.lora_A" -> {"<module>", "lora_A"}; "<norm>.weight" -> {"<norm>", "weight"}
std::pair<std::string, std::string> split_parameter(const std::string& name) {
  const auto dot = name.rfind('.');
  TLM_CHECK(dot != std::string::npos, "adapter tensor name '", name, "' is not <module>.<tensor>");
  return {name.substr(0, dot), name.substr(dot + 1)};
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  TLM_CHECK(fd >= 0, path, ": cannot open for fsync: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  TLM_CHECK(rc == 0, path, ": fsync failed: ", std::strerror(err));
}

// Writes `bytes` to `path` (created or truncated) and fsyncs it; a short write, a full disk or a
// failed fsync throws naming the file and the errno text.
void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TLM_CHECK(fd >= 0, path, ": cannot create: ", std::strerror(errno));
  size_t done = 0;
  int err = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  TLM_CHECK(err == 0, path, ": cannot write the checkpoint (", done, " of ", bytes.size(), " bytes written): ",
            std::strerror(err));
}

// The checkpoint as an HDF5 file image built in memory (HDF5's core driver, no backing
// store): HDF5 never touches the disk, so a full disk fails in write_bytes with errno, instead
// of inside HDF5's flush (whose failed close crashed the process at exit).
// Every attribute, group and dataset of the checkpoint under `root`; each object is closed
// when this returns, before the image is taken.
void write_contents(const Writer& w, hid_t root, const CheckpointState& s) {
  const std::string& path = w.path;
  const CheckpointIdentity& id = s.identity;
  w.attr_int(root, "format_version", kCheckpointFormatVersion);
  w.attr_string(root, "engine_version", id.engine_version);
  w.attr_string(root, "created_utc", id.created_utc.empty() ? utc_now() : id.created_utc);
  w.attr_string(root, "base_model_path", id.base_model_path);
  w.attr_string(root, "base_config_hash", id.base_config_hash);
  w.attr_string(root, "base_weights_hash", id.base_weights_hash);
  w.attr_int(root, "tp_at_save", id.tp_at_save);
  w.attr_int(root, "dp_at_save", id.dp_at_save);
  w.attr_string(root, "method", id.method_json);

  H5Id adapter(w.group(root, "adapter"), H5Gclose, path);
  std::map<std::string, hid_t> modules;
  std::vector<std::unique_ptr<H5Id>> open_groups;
  for (const auto& [name, t] : s.adapter) {
    auto [module, part] = split_parameter(name);
    if (!modules.count(module)) {
      open_groups.push_back(std::make_unique<H5Id>(w.group(adapter.get(), module), H5Gclose, path));
      modules[module] = open_groups.back()->get();
    }
    w.tensor(modules[module], part, t);
  }
  H5Id optimizer(w.group(root, "optimizer"), H5Gclose, path);
  w.attr_int(optimizer.get(), "step", s.optimizer_step);
  std::map<std::string, hid_t> opt_modules;
  for (const auto* moments : {&s.exp_avg, &s.exp_avg_sq}) {
    const char* suffix = moments == &s.exp_avg ? ".exp_avg" : ".exp_avg_sq";
    for (const auto& [name, t] : *moments) {
      auto [module, part] = split_parameter(name);
      if (!opt_modules.count(module)) {
        open_groups.push_back(std::make_unique<H5Id>(w.group(optimizer.get(), module), H5Gclose, path));
        opt_modules[module] = open_groups.back()->get();
        w.attr_int(opt_modules[module], "step", s.optimizer_step);
      }
      w.tensor(opt_modules[module], part + suffix, t);
    }
  }
  H5Id state(w.group(root, "state"), H5Gclose, path);
  w.attr_int(state.get(), "global_step", s.global_step);
  w.attr_int(state.get(), "samples_consumed", s.samples_consumed);
  w.attr_string(state.get(), "stream_identity", s.stream_identity);
  w.attr_int(state.get(), "stream_offset", s.stream_offset);
  w.attr_string(state.get(), "rng_state", s.rng_state);
  w.attr_string(state.get(), "device_rng_kind", s.device_rng_kind);
  w.attr_string(state.get(), "device_rng_state", s.device_rng_state);
  w.attr_string(state.get(), "rank_rng_states", s.rank_rng_states);
  w.attr_string(state.get(), "scheduler_state", s.scheduler_state);
  if (!s.method_state.empty()) {
    H5Id method_state(w.group(root, "method_state"), H5Gclose, path);
    for (const auto& [name, t] : s.method_state) w.tensor(method_state.get(), name, t);
  }
  H5Id stats(w.group(root, "stats"), H5Gclose, path);
  for (const auto& [name, values] : s.stats) w.series(stats.get(), name, values);
}

std::vector<char> file_image(const std::string& path, const CheckpointState& s) {
  const Writer w{path};
  // HDF5 1.8+ object formats: object headers and the superblock carry their own checksums,
  // so damaged metadata fails to open instead of reading as something else.
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, path + ": H5Pcreate");
  h5_check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST), path + ": H5Pset_libver_bounds");
  h5_check(H5Pset_fapl_core(fapl.get(), 4 << 20, /*backing_store=*/0), path + ": H5Pset_fapl_core");
  H5Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose,
            path + ": cannot create the file");
  write_contents(w, file.get(), s);
  const hid_t root = file.get();
  h5_check(H5Fflush(root, H5F_SCOPE_GLOBAL), path + ": H5Fflush");
  const ssize_t size = H5Fget_file_image(root, nullptr, 0);
  TLM_CHECK(size > 0, path, ": H5Fget_file_image (size)");
  std::vector<char> image(static_cast<size_t>(size));
  TLM_CHECK(H5Fget_file_image(root, image.data(), image.size()) == size, path, ": H5Fget_file_image");
  fix_superblock_checksum(image);  // HDF5 1.10 leaves the open file's checksum in the image
  return image;
}

// ---- reading ---------------------------------------------------------------------------

struct Reader {
  std::string path;
  VerifyReport* report;

  void problem(const std::string& what) const {
    report->ok = false;
    report->problems.push_back(what);
  }

  bool has_attr(hid_t obj, const char* name, const std::string& where) const {
    const htri_t e = H5Aexists(obj, name);
    if (e <= 0) problem(str_cat(where, ": attribute '", name, "' is missing"));
    return e > 0;
  }

  std::string attr_string(hid_t obj, const char* name, const std::string& where) const {
    if (!has_attr(obj, name, where)) return "";
    H5Id attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, path + ": H5Aopen");
    H5Id type(H5Aget_type(attr.get()), H5Tclose, path + ": H5Aget_type");
    if (H5Tget_class(type.get()) != H5T_STRING || !H5Tis_variable_str(type.get())) {
      problem(str_cat(where, ": attribute '", name, "' is not a string"));
      return "";
    }
    H5Id mem(H5Tcopy(H5T_C_S1), H5Tclose, path + ": H5Tcopy");
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5T_CSET_UTF8);
    char* data = nullptr;
    if (H5Aread(attr.get(), mem.get(), &data) < 0 || !data) {
      problem(str_cat(where, ": attribute '", name, "' cannot be read"));
      return "";
    }
    std::string out(data);
    H5free_memory(data);
    return out;
  }

  int64_t attr_int(hid_t obj, const char* name, const std::string& where) const {
    if (!has_attr(obj, name, where)) return 0;
    H5Id attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, path + ": H5Aopen");
    int64_t v = 0;
    if (H5Aread(attr.get(), H5T_NATIVE_INT64, &v) < 0) problem(str_cat(where, ": attribute '", name, "' cannot be read"));
    return v;
  }

  at::Tensor tensor(hid_t parent, const std::string& name, const std::string& where) const {
    H5Id ds(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), H5Dclose, str_cat(path, ": cannot open '", where, "'"));
    H5Id space(H5Dget_space(ds.get()), H5Sclose, path + ": H5Dget_space");
    const int rank = H5Sget_simple_extent_ndims(space.get());
    std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    std::vector<int64_t> shape(dims.begin(), dims.end());
    at::Tensor t = at::empty(shape, at::kFloat);
    if (H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) < 0) {
      problem(str_cat(where, ": data cannot be read (Fletcher32 checksum mismatch or damaged file)"));
      return at::Tensor();
    }
    if (!has_attr(ds.get(), "crc32", where)) return t;
    const int64_t want = attr_int(ds.get(), "crc32", where);
    const uint32_t got = crc32_of(t);
    if (want != static_cast<int64_t>(got))
      problem(str_cat(where, ": crc32 of the tensor bytes is ", got, ", the file says ", want));
    return t;
  }

  std::vector<double> series(hid_t parent, const std::string& name, const std::string& where) const {
    H5Id ds(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), H5Dclose, str_cat(path, ": cannot open '", where, "'"));
    H5Id space(H5Dget_space(ds.get()), H5Sclose, path + ": H5Dget_space");
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space.get(), &n, nullptr);
    std::vector<double> v(n);
    if (n > 0 && H5Dread(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
      problem(str_cat(where, ": data cannot be read (Fletcher32 checksum mismatch or damaged file)"));
    return v;
  }
};

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

// `what`: "FILE: /group" in the messages.
std::vector<std::string> children(hid_t group, const std::string& what) {
  std::vector<std::string> names;
  h5_check(H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_name, &names),
           what + ": its members cannot be listed (damaged file)");
  return names;
}

H5Id open_group(hid_t parent, const std::string& name, const std::string& what) {
  return H5Id(H5Gopen2(parent, name.c_str(), H5P_DEFAULT), H5Gclose, what + ": the group cannot be opened (damaged file)");
}

CheckpointState read_file(const std::string& path, VerifyReport& report) {
  silence_hdf5();
  CheckpointState s;
  Reader r{path, &report};
  TLM_CHECK(std::filesystem::exists(path), path, ": no such checkpoint");
  TLM_CHECK(!std::filesystem::is_directory(path), path, ": is a directory, not a checkpoint file (step-N.h5)");
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (is_h5 <= 0) {
    r.problem(str_cat(path, ": not an HDF5 file (truncated or overwritten?)"));
    return s;
  }
  hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) {
    r.problem(str_cat(path, ": HDF5 cannot open it (truncated or damaged)"));
    return s;
  }
  H5Id file(fid, H5Fclose, path);
  const hid_t root = file.get();
  const int64_t version = r.attr_int(root, "format_version", "/");
  if (report.ok && version != kCheckpointFormatVersion) {
    r.problem(str_cat("/: format_version ", version, " but this tlm reads version ", kCheckpointFormatVersion,
                      version > kCheckpointFormatVersion ? " (written by a newer tlm: upgrade tlm)"
                                                         : " (written by an older tlm: no converter exists)"));
    return s;
  }
  CheckpointIdentity& id = s.identity;
  id.engine_version = r.attr_string(root, "engine_version", "/");
  id.created_utc = r.attr_string(root, "created_utc", "/");
  id.base_model_path = r.attr_string(root, "base_model_path", "/");
  id.base_config_hash = r.attr_string(root, "base_config_hash", "/");
  id.base_weights_hash = r.attr_string(root, "base_weights_hash", "/");
  id.tp_at_save = r.attr_int(root, "tp_at_save", "/");
  id.dp_at_save = r.attr_int(root, "dp_at_save", "/");
  id.method_json = r.attr_string(root, "method", "/");
  for (const char* g : {"adapter", "optimizer", "state", "stats"}) {
    if (H5Lexists(root, g, H5P_DEFAULT) <= 0) r.problem(str_cat("/", g, ": group is missing"));
  }
  if (!report.ok) return s;

  H5Id adapter = open_group(root, "adapter", path + ": /adapter");
  for (const std::string& module : children(adapter.get(), path + ": /adapter")) {
    H5Id g = open_group(adapter.get(), module, path + ": /adapter/" + module);
    for (const std::string& part : children(g.get(), path + ": /adapter/" + module))
      s.adapter[module + "." + part] = r.tensor(g.get(), part, "/adapter/" + module + "/" + part);
  }
  H5Id optimizer = open_group(root, "optimizer", path + ": /optimizer");
  s.optimizer_step = r.attr_int(optimizer.get(), "step", "/optimizer");
  for (const std::string& module : children(optimizer.get(), path + ": /optimizer")) {
    H5Id g = open_group(optimizer.get(), module, path + ": /optimizer/" + module);
    for (const std::string& name : children(g.get(), path + ": /optimizer/" + module)) {
      const auto dot = name.find('.');
      const std::string part = name.substr(0, dot), moment = dot == std::string::npos ? "" : name.substr(dot + 1);
      at::Tensor t = r.tensor(g.get(), name, "/optimizer/" + module + "/" + name);
      if (moment == "exp_avg") s.exp_avg[module + "." + part] = t;
      else if (moment == "exp_avg_sq") s.exp_avg_sq[module + "." + part] = t;
      else r.problem(str_cat("/optimizer/", module, "/", name, ": not an exp_avg or exp_avg_sq dataset"));
    }
  }
  H5Id state = open_group(root, "state", path + ": /state");
  s.global_step = r.attr_int(state.get(), "global_step", "/state");
  s.samples_consumed = r.attr_int(state.get(), "samples_consumed", "/state");
  s.stream_identity = r.attr_string(state.get(), "stream_identity", "/state");
  s.stream_offset = r.attr_int(state.get(), "stream_offset", "/state");
  s.rng_state = r.attr_string(state.get(), "rng_state", "/state");
  // Optional: files written before GPU jobs existed have no device generator.
  if (H5Aexists(state.get(), "device_rng_kind") > 0) {
    s.device_rng_kind = r.attr_string(state.get(), "device_rng_kind", "/state");
    s.device_rng_state = r.attr_string(state.get(), "device_rng_state", "/state");
  }
  if (H5Aexists(state.get(), "rank_rng_states") > 0)
    s.rank_rng_states = r.attr_string(state.get(), "rank_rng_states", "/state");
  s.scheduler_state = r.attr_string(state.get(), "scheduler_state", "/state");
  if (H5Lexists(root, "method_state", H5P_DEFAULT) > 0) {
    H5Id method_state = open_group(root, "method_state", path + ": /method_state");
    for (const std::string& name : children(method_state.get(), path + ": /method_state"))
      s.method_state[name] = r.tensor(method_state.get(), name, "/method_state/" + name);
  }
  H5Id stats = open_group(root, "stats", path + ": /stats");
  for (const std::string& name : children(stats.get(), path + ": /stats"))
    s.stats[name] = r.series(stats.get(), name, "/stats/" + name);
  if (s.adapter.empty()) r.problem("/adapter: holds no tensors");
  return s;
}

}  // namespace

std::string content_fingerprint(const std::string& text) {
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(text.data()),
                          static_cast<uInt>(text.size()));
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08lx", static_cast<unsigned long>(crc));
  return buf;
}

bool is_temporary_checkpoint_name(const std::string& filename) {
  return !filename.empty() && filename[0] == '.' && filename.find(".tmp.") != std::string::npos;
}

void AdapterCheckpoint::save_atomic(const std::string& path, const CheckpointState& state,
                                    double pause_before_rename) {
  silence_hdf5();
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  std::filesystem::create_directories(dir);
  const std::string tmp = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()))).string();
  try {
    write_bytes(tmp, file_image(tmp, state));
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
  // The whole pause, signals or not (a test holds a save open and signals the job during it).
  if (pause_before_rename > 0.0) std::this_thread::sleep_for(std::chrono::duration<double>(pause_before_rename));
  TLM_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, path, ": cannot rename ", tmp, " into place: ",
            std::strerror(errno));
  fsync_path(dir.string(), true);
}

VerifyReport AdapterCheckpoint::verify_in_process(const std::string& path) {
  VerifyReport report;
  try {
    read_file(path, report);
  } catch (const Error& e) {
    report.ok = false;
    report.problems.push_back(e.what());
  }
  return report;
}

namespace {

void write_all(int fd, const std::string& bytes) {
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

// HDF5 1.10 can crash, or loop forever, on a damaged file instead of returning an error
// (fuzz.checkpoint_file found an invalid free inside H5Literate, and inputs it never finishes).
// So a file is first read in a child process: a crash there, or no answer within
// `timeout_seconds`, is a report that the file is damaged, not the end of the job or the tool.
VerifyReport AdapterCheckpoint::verify(const std::string& path, double timeout_seconds) {
  int fds[2];
  TLM_CHECK(::pipe(fds) == 0, path, ": cannot make a pipe to verify the checkpoint: ", std::strerror(errno));
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  TLM_CHECK(pid >= 0, path, ": cannot fork to verify the checkpoint: ", std::strerror(errno));
  if (pid == 0) {  // the child reports and leaves without running the parent's exit handlers
    ::close(fds[0]);
    const VerifyReport r = verify_in_process(path);
    std::string out = r.ok ? "ok" : "bad";
    for (std::string p : r.problems) {
      std::replace(p.begin(), p.end(), '\n', ' ');
      out += "\n" + p;
    }
    write_all(fds[1], out);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string text;
  char buffer[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    const ssize_t n = ::read(fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  VerifyReport report;
  if (timed_out) {
    report.ok = false;
    report.problems.push_back(str_cat(path, ": HDF5 did not finish reading it within ", timeout_seconds,
                                      " s: the file is damaged"));
    return report;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || text.empty()) {
    report.ok = false;
    report.problems.push_back(str_cat(path, ": HDF5 crashed reading it (",
                                      WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "no report",
                                      "): the file is damaged"));
    return report;
  }
  std::istringstream lines(text);
  std::string line;
  std::getline(lines, line);
  report.ok = line == "ok";
  while (std::getline(lines, line)) report.problems.push_back(line);
  return report;
}

CheckpointState AdapterCheckpoint::load(const std::string& path) {
  const VerifyReport checked = verify(path);  // HDF5 meets a damaged file in a child only
  if (!checked.ok) {
    std::string all;
    for (const std::string& p : checked.problems) all += "\n  " + p;
    TLM_FAIL(path, ": checkpoint does not verify, not loaded:", all);
  }
  VerifyReport report;
  CheckpointState s = read_file(path, report);
  if (!report.ok) {
    std::string all;
    for (const std::string& p : report.problems) all += "\n  " + p;
    TLM_FAIL(path, ": checkpoint does not verify, not loaded:", all);
  }
  return s;
}

}  // namespace tlm
