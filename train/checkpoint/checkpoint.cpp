// HDF5 checkpoints (layout in checkpoint.h / README.md): RAII handles over the HDF5 C API, every
// call checked and turned into Error(Checkpoint) naming the file and the HDF5 reason; atomic
// write (tmp + flush + fsync + rename); FNV-1a checksum and completeness marker verified on load.
#include "train/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>
#include <tuple>

#include "core/check.h"

namespace seqmix {
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------- HDF5 error handling

// Silences HDF5's automatic error printing on this thread (the setting is per thread in
// thread-safe builds; cheap, so every entry point calls it).
void quiet_hdf5() {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

herr_t walk_cb(unsigned n, const H5E_error2_t* e, void* data) {
  auto* msgs = static_cast<std::vector<std::string>*>(data);
  if (e->desc && *e->desc) msgs->emplace_back(e->desc);
  return 0;
}

// The messages of HDF5's current error stack ("outermost: innermost"), then clears it.
std::string hdf5_reason() {
  std::vector<std::string> msgs;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &msgs);
  H5Eclear2(H5E_DEFAULT);
  if (msgs.empty()) return "unknown HDF5 error";
  if (msgs.size() == 1) return msgs.front();
  return msgs.front() + ": " + msgs.back();
}

// Context for error messages: the file being read or written.
struct Ctx {
  std::string path;
  [[noreturn]] void fail(const std::string& what) const {
    SEQMIX_THROW(Checkpoint, "checkpoint '{}': {}", path, what);
  }
  [[noreturn]] void fail_h5(const std::string& call) const {
    const std::string reason = hdf5_reason();
    SEQMIX_THROW(Checkpoint, "checkpoint '{}': {} failed: {}", path, call, reason);
  }
  void check(herr_t status, const std::string& call) const {
    if (status < 0) fail_h5(call);
  }
  hid_t check_id(hid_t id, const std::string& call) const {
    if (id < 0) fail_h5(call);
    return id;
  }
};

// An owned HDF5 identifier, closed with its type's close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = -1;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  // Closes now, reporting failure (destructors ignore close errors).
  herr_t close() {
    herr_t s = id_ >= 0 ? closer_(id_) : 0;
    id_ = -1;
    return s;
  }
  void reset() {
    if (id_ >= 0) closer_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

Handle file_h(const Ctx& c, hid_t id, const char* call) {
  return {c.check_id(id, call), H5Fclose};
}
Handle group_h(const Ctx& c, hid_t id, const std::string& call) {
  return {c.check_id(id, call), H5Gclose};
}
Handle dset_h(const Ctx& c, hid_t id, const std::string& call) {
  return {c.check_id(id, call), H5Dclose};
}
Handle space_h(const Ctx& c, hid_t id, const std::string& call) {
  return {c.check_id(id, call), H5Sclose};
}
Handle type_h(const Ctx& c, hid_t id, const std::string& call) {
  return {c.check_id(id, call), H5Tclose};
}
Handle attr_h(const Ctx& c, hid_t id, const std::string& call) {
  return {c.check_id(id, call), H5Aclose};
}
Handle plist_h(const Ctx& c, hid_t id, const std::string& call) {
  return {c.check_id(id, call), H5Pclose};
}

// ---------------------------------------------------------------- checksum

// FNV-1a 64 over a canonical stream of every field (length-prefixed strings and arrays), fed
// identically by save (from the data written) and load (from the data read).
class Fnv {
 public:
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      h_ ^= b[i];
      h_ *= 0x100000001b3ull;
    }
  }
  void u64(uint64_t v) { bytes(&v, sizeof v); }
  void f64(double v) { bytes(&v, sizeof v); }
  void str(const std::string& s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
  void tensor(const std::string& name, const Tensor& t) {  // t: contiguous CPU
    str(name);
    str(dtype_name(t.dtype()));
    u64(uint64_t(t.dim()));
    for (int64_t d : t.shape()) u64(uint64_t(d));
    if (t.numel()) bytes(t.data_ptr(), t.nbytes());
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

void hash_scalars(Fnv& h, const CheckpointData& d) {
  h.u64(uint64_t(kCheckpointFormatVersion));
  h.u64(uint64_t(d.step));
  h.u64(uint64_t(d.tokens_seen));
  h.f64(d.wall_time_s);
  h.str(d.git_revision);
  h.str(d.config_yaml);
}
void hash_maps(Fnv& h, const CheckpointData& d) {
  for (const auto* m : {&d.rng, &d.data}) {
    h.u64(m->size());
    for (const auto& [k, v] : *m) {
      h.str(k);
      h.u64(v.size());
      if (!v.empty()) h.bytes(v.data(), v.size() * sizeof(uint64_t));
    }
  }
  h.u64(d.metrics.size());
  for (const auto& [k, v] : d.metrics) {
    h.str(k);
    h.f64(v);
  }
  h.u64(d.extra.size());
  for (const auto& [k, v] : d.extra) {
    h.str(k);
    h.str(v);
  }
}

// ---------------------------------------------------------------- type mapping

hid_t h5_type(DType t) {
  switch (t) {
    case DType::F32:
      return H5T_NATIVE_FLOAT;
    case DType::F64:
      return H5T_NATIVE_DOUBLE;
    case DType::BF16:
    case DType::F16:
      return H5T_NATIVE_UINT16;  // raw bits; the dtype attribute says which
    case DType::I32:
      return H5T_NATIVE_INT32;
    case DType::I64:
      return H5T_NATIVE_INT64;
    case DType::U8:
      return H5T_NATIVE_UINT8;
  }
  return H5T_NATIVE_FLOAT;
}

void check_name(const char* section, const std::string& name) {
  SEQMIX_CHECK(!name.empty() && name != "." && name.find('/') == std::string::npos,
               "save_checkpoint: invalid {} name '{}' (must be non-empty, not '.', without '/')",
               section, name);
}

// ---------------------------------------------------------------- writing helpers

Handle make_group(const Ctx& c, hid_t parent, const char* name) {
  Handle gcpl = plist_h(c, H5Pcreate(H5P_GROUP_CREATE), "H5Pcreate");
  c.check(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
          "H5Pset_link_creation_order");
  return group_h(c, H5Gcreate2(parent, name, H5P_DEFAULT, gcpl, H5P_DEFAULT),
                 std::string("H5Gcreate2(") + name + ")");
}

// A fixed-length string type holding s plus its terminating NUL.
Handle string_type(const Ctx& c, const std::string& s) {
  Handle t = type_h(c, H5Tcopy(H5T_C_S1), "H5Tcopy");
  c.check(H5Tset_size(t, s.size() + 1), "H5Tset_size");
  c.check(H5Tset_strpad(t, H5T_STR_NULLTERM), "H5Tset_strpad");
  return t;
}

void write_attr(const Ctx& c, hid_t loc, const char* name, hid_t type, const void* value) {
  Handle space = space_h(c, H5Screate(H5S_SCALAR), "H5Screate");
  Handle a = attr_h(c, H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT),
                    std::string("H5Acreate2(") + name + ")");
  c.check(H5Awrite(a, type, value), std::string("H5Awrite(") + name + ")");
  c.check(a.close(), std::string("H5Aclose(") + name + ")");
}
void write_attr_str(const Ctx& c, hid_t loc, const char* name, const std::string& s) {
  Handle t = string_type(c, s);
  write_attr(c, loc, name, t, s.c_str());
}

void write_string(const Ctx& c, hid_t loc, const std::string& name, const std::string& s) {
  Handle t = string_type(c, s);
  Handle space = space_h(c, H5Screate(H5S_SCALAR), "H5Screate");
  Handle d =
      dset_h(c, H5Dcreate2(loc, name.c_str(), t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
             "H5Dcreate2(" + name + ")");
  c.check(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s.c_str()), "H5Dwrite(" + name + ")");
}

void write_array(const Ctx& c, hid_t loc, const std::string& name, hid_t type, int rank,
                 const hsize_t* dims, const void* data, bool nonempty) {
  Handle space =
      space_h(c, rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, nullptr),
              "H5Screate(" + name + ")");
  Handle d =
      dset_h(c, H5Dcreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
             "H5Dcreate2(" + name + ")");
  if (nonempty)
    c.check(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite(" + name + ")");
}

void write_tensor(const Ctx& c, hid_t loc, const std::string& name, const Tensor& t) {
  std::vector<hsize_t> dims(t.shape().begin(), t.shape().end());
  {
    Handle space = space_h(
        c, t.dim() == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(t.dim(), dims.data(), nullptr),
        "H5Screate(" + name + ")");
    Handle d = dset_h(c,
                      H5Dcreate2(loc, name.c_str(), h5_type(t.dtype()), space, H5P_DEFAULT,
                                 H5P_DEFAULT, H5P_DEFAULT),
                      "H5Dcreate2(" + name + ")");
    if (t.numel() > 0)
      c.check(H5Dwrite(d, h5_type(t.dtype()), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()),
              "H5Dwrite(" + name + ")");
    write_attr_str(c, d, "dtype", dtype_name(t.dtype()));
  }
}

void write_tensors(const Ctx& c, hid_t file, const char* section,
                   const std::vector<std::pair<std::string, Tensor>>& tensors,
                   const std::vector<Tensor>& host, Fnv& h) {
  Handle g = make_group(c, file, section);
  h.str(section);
  h.u64(tensors.size());
  std::set<std::string> seen;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    SEQMIX_CHECK(seen.insert(name).second, "save_checkpoint: duplicate {} tensor '{}'", section,
                 name);
    const Tensor& ht = host[i];
    h.tensor(name, ht);
    write_tensor(c, g, name, ht);
  }
}

void write_u64_map(const Ctx& c, hid_t file, const char* section,
                   const std::map<std::string, std::vector<uint64_t>>& m) {
  Handle g = make_group(c, file, section);
  for (const auto& [k, v] : m) {
    check_name(section, k);
    const hsize_t n = v.size();
    write_array(c, g, k, H5T_NATIVE_UINT64, 1, &n, v.data(), !v.empty());
  }
}

// ---------------------------------------------------------------- reading helpers

bool has_attr(const Ctx& c, hid_t loc, const char* name) {
  const htri_t e = H5Aexists(loc, name);
  if (e < 0) c.fail_h5(std::string("H5Aexists(") + name + ")");
  return e > 0;
}

template <typename T>
T read_attr(const Ctx& c, hid_t loc, const char* name, hid_t type) {
  if (!has_attr(c, loc, name)) c.fail(std::string("attribute /meta/") + name + " is missing");
  Handle a = attr_h(c, H5Aopen(loc, name, H5P_DEFAULT), std::string("H5Aopen(") + name + ")");
  T v{};
  c.check(H5Aread(a, type, &v), std::string("H5Aread(") + name + ")");
  return v;
}

// Reads a fixed-length string from an attribute or dataset type `t` via `reader`.
template <typename Reader>
std::string read_fixed_string(const Ctx& c, hid_t t, const std::string& what, Reader reader) {
  if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) > 0)
    c.fail(what + " is not a fixed-length string");
  const size_t n = H5Tget_size(t);
  if (n == 0) c.fail(what + ": bad string size");
  Handle mt = type_h(c, H5Tcopy(H5T_C_S1), "H5Tcopy");
  c.check(H5Tset_size(mt, n), "H5Tset_size");
  c.check(H5Tset_strpad(mt, H5T_STR_NULLTERM), "H5Tset_strpad");
  std::string buf(n, '\0');
  reader(mt.get(), buf.data());
  buf.resize(strnlen(buf.data(), n));
  return buf;
}

std::string read_attr_str(const Ctx& c, hid_t loc, const char* name, const std::string& where) {
  if (!has_attr(c, loc, name)) c.fail("attribute " + where + "/" + name + " is missing");
  Handle a = attr_h(c, H5Aopen(loc, name, H5P_DEFAULT), std::string("H5Aopen(") + name + ")");
  Handle t = type_h(c, H5Aget_type(a), "H5Aget_type");
  return read_fixed_string(c, t, where + "/" + name, [&](hid_t mt, char* buf) {
    c.check(H5Aread(a, mt, buf), std::string("H5Aread(") + name + ")");
  });
}

std::string read_string(const Ctx& c, hid_t loc, const std::string& name,
                        const std::string& where) {
  Handle d = dset_h(c, H5Dopen2(loc, name.c_str(), H5P_DEFAULT), "H5Dopen2(" + where + ")");
  Handle t = type_h(c, H5Dget_type(d), "H5Dget_type");
  return read_fixed_string(c, t, where, [&](hid_t mt, char* buf) {
    c.check(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "H5Dread(" + where + ")");
  });
}

// The link names of a group in creation order.
std::vector<std::string> children(const Ctx& c, hid_t g, const std::string& where) {
  H5G_info_t info;
  c.check(H5Gget_info(g, &info), "H5Gget_info(" + where + ")");
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n =
        H5Lget_name_by_idx(g, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) c.fail_h5("H5Lget_name_by_idx(" + where + ")");
    std::string name(size_t(n) + 1, '\0');
    if (H5Lget_name_by_idx(g, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, name.data(), name.size(),
                           H5P_DEFAULT) < 0)
      c.fail_h5("H5Lget_name_by_idx(" + where + ")");
    name.resize(size_t(n));
    out.push_back(std::move(name));
  }
  return out;
}

Handle open_group(const Ctx& c, hid_t file, const char* name) {
  const htri_t e = H5Lexists(file, name, H5P_DEFAULT);
  if (e < 0) c.fail_h5(std::string("H5Lexists(") + name + ")");
  if (e == 0) c.fail(std::string("group /") + name + " is missing");
  return group_h(c, H5Gopen2(file, name, H5P_DEFAULT), std::string("H5Gopen2(") + name + ")");
}

// Shape of a dataset (rank 0 for scalars) and its element count.
std::vector<int64_t> dataset_shape(const Ctx& c, hid_t d, const std::string& where) {
  Handle space = space_h(c, H5Dget_space(d), "H5Dget_space(" + where + ")");
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) c.fail_h5("H5Sget_simple_extent_ndims(" + where + ")");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0 && H5Sget_simple_extent_dims(space, dims.data(), nullptr) < 0)
    c.fail_h5("H5Sget_simple_extent_dims(" + where + ")");
  return std::vector<int64_t>(dims.begin(), dims.end());
}

Tensor read_tensor(const Ctx& c, hid_t g, const std::string& name, const std::string& where) {
  Handle d = dset_h(c, H5Dopen2(g, name.c_str(), H5P_DEFAULT), "H5Dopen2(" + where + ")");
  const std::string dt = read_attr_str(c, d, "dtype", where);
  DType dtype;
  try {
    dtype = parse_dtype(dt);
  } catch (const Error&) {
    c.fail(where + " has an unknown dtype '" + dt + "'");
  }
  const std::vector<int64_t> shape = dataset_shape(c, d, where);
  Handle ft = type_h(c, H5Dget_type(d), "H5Dget_type(" + where + ")");
  if (H5Tget_size(ft) != dtype_size(dtype))
    c.fail(where + ": stored element size does not match dtype " + dt);
  Shape s;
  for (int64_t x : shape) s.push_back(x);
  Tensor t = Tensor::empty(s, dtype);
  if (t.numel() > 0)
    c.check(H5Dread(d, h5_type(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()),
            "H5Dread(" + where + ")");
  return t;
}

void read_tensors(const Ctx& c, hid_t file, const char* section,
                  std::vector<std::pair<std::string, Tensor>>& out, Fnv& h) {
  Handle g = open_group(c, file, section);
  const std::vector<std::string> names = children(c, g, std::string("/") + section);
  h.str(section);
  h.u64(names.size());
  for (const std::string& n : names) {
    Tensor t = read_tensor(c, g, n, std::string("/") + section + "/" + n);
    h.tensor(n, t);
    out.emplace_back(n, std::move(t));
  }
}

void read_u64_map(const Ctx& c, hid_t file, const char* section,
                  std::map<std::string, std::vector<uint64_t>>& out) {
  Handle g = open_group(c, file, section);
  for (const std::string& k : children(c, g, std::string("/") + section)) {
    const std::string where = std::string("/") + section + "/" + k;
    Handle d = dset_h(c, H5Dopen2(g, k.c_str(), H5P_DEFAULT), "H5Dopen2(" + where + ")");
    const std::vector<int64_t> shape = dataset_shape(c, d, where);
    if (shape.size() != 1) c.fail(where + " must be a 1-d u64 array");
    std::vector<uint64_t> v(static_cast<size_t>(shape[0]));
    if (!v.empty())
      c.check(H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()),
              "H5Dread(" + where + ")");
    out[k] = std::move(v);
  }
}

void fsync_path(const Ctx& c, const std::string& p, bool dir) {
  const int fd = ::open(p.c_str(), dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) c.fail("cannot open '" + p + "' for fsync: " + std::strerror(errno));
  const int r = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (r != 0) c.fail("fsync of '" + p + "' failed: " + std::strerror(e));
}

void write_file(const Ctx& c, const std::string& tmp, const CheckpointData& d,
                const std::vector<Tensor>& model_host, const std::vector<Tensor>& optim_host) {
  Handle file =
      file_h(c, H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "H5Fcreate");
  Fnv h;
  hash_scalars(h, d);
  Handle meta = make_group(c, file, "meta");
  const int64_t version = kCheckpointFormatVersion;
  write_attr(c, meta, "format_version", H5T_NATIVE_INT64, &version);
  write_attr(c, meta, "step", H5T_NATIVE_INT64, &d.step);
  write_attr(c, meta, "tokens_seen", H5T_NATIVE_INT64, &d.tokens_seen);
  write_attr(c, meta, "wall_time_s", H5T_NATIVE_DOUBLE, &d.wall_time_s);
  write_attr_str(c, meta, "git_revision", d.git_revision);
  write_string(c, file, "config", d.config_yaml);
  write_tensors(c, file, "model", d.model, model_host, h);
  write_tensors(c, file, "optim", d.optim, optim_host, h);
  write_u64_map(c, file, "rng", d.rng);
  write_u64_map(c, file, "data", d.data);
  {
    Handle g = make_group(c, file, "metrics");
    for (const auto& [k, v] : d.metrics) {
      check_name("metrics", k);
      write_array(c, g, k, H5T_NATIVE_DOUBLE, 0, nullptr, &v, true);
    }
  }
  {
    Handle g = make_group(c, file, "extra");
    for (const auto& [k, v] : d.extra) {
      check_name("extra", k);
      write_string(c, g, k, v);
    }
  }
  hash_maps(h, d);
  // The completeness marker goes last: a file without it was interrupted.
  const uint64_t sum = h.value();
  write_attr(c, meta, "checksum", H5T_NATIVE_UINT64, &sum);
  const int32_t complete = 1;
  write_attr(c, meta, "complete", H5T_NATIVE_INT32, &complete);
  c.check(meta.close(), "H5Gclose(meta)");
  c.check(H5Fflush(file, H5F_SCOPE_GLOBAL), "H5Fflush");
  c.check(file.close(), "H5Fclose");
}

const std::regex& step_file_regex() {
  static const std::regex re(R"(^step_([0-9]+)\.h5$)");
  return re;
}

// Opens the file and checks the completeness marker only (no checksum).
bool is_complete(const std::string& path) {
  quiet_hdf5();
  const Ctx c{path};
  try {
    if (H5Fis_hdf5(path.c_str()) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    Handle file = file_h(c, H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "H5Fopen");
    Handle meta = open_group(c, file, "meta");
    return has_attr(c, meta, "complete") &&
           read_attr<int32_t>(c, meta, "complete", H5T_NATIVE_INT32) == 1;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointData& d) {
  quiet_hdf5();
  const Ctx c{path};
  SEQMIX_CHECK(!path.empty(), "save_checkpoint: empty path");
  // Validate and copy to the host before touching the file system.
  std::vector<Tensor> model_host, optim_host;
  for (const auto& [section, list, host] :
       {std::tuple{"model", &d.model, &model_host}, std::tuple{"optim", &d.optim, &optim_host}}) {
    for (const auto& [name, t] : *list) {
      check_name(section, name);
      SEQMIX_CHECK(t.defined(), "save_checkpoint: {} tensor '{}' is undefined", section, name);
      host->push_back(t.cpu().contiguous());
    }
  }
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec)
      c.fail("cannot create directory '" + target.parent_path().string() + "': " + ec.message());
  }
  const std::string tmp = path + ".tmp";
  try {
    write_file(Ctx{tmp}, tmp, d, model_host, optim_host);
    fsync_path(c, tmp, false);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      c.fail("cannot rename '" + tmp + "' to the checkpoint: " + std::strerror(errno));
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  fsync_path(c, target.has_parent_path() ? target.parent_path().string() : ".", true);
}

CheckpointData load_checkpoint(const std::string& path) {
  quiet_hdf5();
  const Ctx c{path};
  std::error_code ec;
  if (!fs::exists(path, ec)) c.fail("file does not exist");
  if (!fs::is_regular_file(path, ec)) c.fail("not a regular file");
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (is_h5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    c.fail("not an HDF5 file (truncated or corrupt)");
  }
  Handle file = file_h(c, H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "H5Fopen");
  CheckpointData d;
  Handle meta = open_group(c, file, "meta");
  if (!has_attr(c, meta, "complete") ||
      read_attr<int32_t>(c, meta, "complete", H5T_NATIVE_INT32) != 1)
    c.fail("incomplete checkpoint (no completeness marker: the save was interrupted)");
  const int64_t version = read_attr<int64_t>(c, meta, "format_version", H5T_NATIVE_INT64);
  if (version < 1 || version > kCheckpointFormatVersion)
    c.fail("unsupported format version " + std::to_string(version) + " (this seqmix reads 1.." +
           std::to_string(kCheckpointFormatVersion) + ")");
  d.step = read_attr<int64_t>(c, meta, "step", H5T_NATIVE_INT64);
  d.tokens_seen = read_attr<int64_t>(c, meta, "tokens_seen", H5T_NATIVE_INT64);
  d.wall_time_s = read_attr<double>(c, meta, "wall_time_s", H5T_NATIVE_DOUBLE);
  d.git_revision = read_attr_str(c, meta, "git_revision", "/meta");
  const uint64_t stored = read_attr<uint64_t>(c, meta, "checksum", H5T_NATIVE_UINT64);
  d.config_yaml = read_string(c, file, "config", "/config");
  Fnv h;
  hash_scalars(h, d);
  read_tensors(c, file, "model", d.model, h);
  read_tensors(c, file, "optim", d.optim, h);
  read_u64_map(c, file, "rng", d.rng);
  read_u64_map(c, file, "data", d.data);
  {
    Handle g = open_group(c, file, "metrics");
    for (const std::string& k : children(c, g, "/metrics")) {
      Handle ds = dset_h(c, H5Dopen2(g, k.c_str(), H5P_DEFAULT), "H5Dopen2(/metrics/" + k + ")");
      double v = 0;
      c.check(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v),
              "H5Dread(/metrics/" + k + ")");
      d.metrics[k] = v;
    }
  }
  {
    Handle g = open_group(c, file, "extra");
    for (const std::string& k : children(c, g, "/extra"))
      d.extra[k] = read_string(c, g, k, "/extra/" + k);
  }
  hash_maps(h, d);
  if (h.value() != stored)
    c.fail("checksum mismatch (stored " + std::to_string(stored) + ", computed " +
           std::to_string(h.value()) + "): the file is corrupt");
  c.check(meta.close(), "H5Gclose(meta)");
  c.check(file.close(), "H5Fclose");
  return d;
}

std::string checkpoint_path(const std::string& run_dir, int64_t step) {
  SEQMIX_CHECK(step >= 0, "checkpoint_path: step must be >= 0, got {}", step);
  return (fs::path(run_dir) / "checkpoints" / fmt::format("step_{:08d}.h5", step)).string();
}

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(dir, ec)) return {};
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    const std::string name = e.path().filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, step_file_regex())) continue;
    int64_t step = 0;
    try {
      step = std::stoll(m[1].str());
    } catch (const std::exception&) {
      continue;  // out of range: not one of ours
    }
    if (is_complete(e.path().string())) found.emplace_back(step, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [s, p] : found) out.push_back(std::move(p));
  return out;
}

std::string latest_checkpoint(const std::string& run_dir) {
  const std::vector<std::string> all = list_checkpoints(run_dir);
  return all.empty() ? std::string() : all.back();
}

void prune_checkpoints(const std::string& run_dir, int keep_last) {
  if (keep_last <= 0) return;
  const std::vector<std::string> all = list_checkpoints(run_dir);
  for (size_t i = 0; i + size_t(keep_last) < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);
    SEQMIX_CHECK_KIND(Checkpoint, !ec, "prune_checkpoints: cannot delete '{}': {}", all[i],
                      ec.message());
  }
}

}  // namespace seqmix
