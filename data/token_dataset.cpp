// HDF5 token datasets: the writer behind `seqmix prepare` and the reader used by the loaders.
// Every HDF5 C call is checked; every handle is owned by an RAII wrapper so it is closed on all
// paths; HDF5's own error printing is switched off while seqmix calls it and the innermost HDF5
// message is appended to seqmix's Error(Data) instead. Layout in token_dataset.h / README.md.
#include "data/token_dataset.h"

#include <hdf5.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"

namespace seqmix::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSplitNames[] = {"train", "val", "test"};

// An owned HDF5 identifier, closed with the matching H5?close on destruction.
class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  H5Handle(H5Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  H5Handle& operator=(H5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { reset(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and returns the close status (for a file being written, where it matters).
  herr_t close() {
    herr_t r = 0;
    if (id_ >= 0 && closer_) r = closer_(id_);
    id_ = H5I_INVALID_HID;
    return r;
  }

 private:
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = H5I_INVALID_HID;
  }
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Switches HDF5's automatic error-stack printing off for a scope (restores it after).
class QuietHdf5 {
 public:
  QuietHdf5() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  QuietHdf5(const QuietHdf5&) = delete;
  QuietHdf5& operator=(const QuietHdf5&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

herr_t innermost_cb(unsigned, const H5E_error2_t* e, void* out) {
  if (e && e->desc && *e->desc) *static_cast<std::string*>(out) = e->desc;
  return 0;
}

// The innermost message of HDF5's current error stack (then cleared), or "" when empty.
std::string hdf5_message() {
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, innermost_cb, &s);
  H5Eclear2(H5E_DEFAULT);
  return s.empty() ? std::string() : " (HDF5: " + s + ")";
}

// Checks an id-returning call; `what` names the operation and object.
H5Handle checked(hid_t id, H5Handle::Closer closer, const std::string& file,
                 std::string_view what) {
  if (id < 0) SEQMIX_THROW(Data, "{}: {} failed{}", file, what, hdf5_message());
  return H5Handle(id, closer);
}
void check_status(herr_t r, const std::string& file, std::string_view what) {
  if (r < 0) SEQMIX_THROW(Data, "{}: {} failed{}", file, what, hdf5_message());
}

// ---- attributes ----

H5Handle open_attr(hid_t loc, const char* name, const std::string& file, std::string_view obj) {
  const htri_t e = H5Aexists(loc, name);
  check_status(e, file, fmt::format("looking up attribute '{}' of {}", name, obj));
  SEQMIX_CHECK_KIND(Data, e > 0,
                    "{}: attribute '{}' of {} is missing (not a seqmix token dataset?)", file, name,
                    obj);
  return checked(H5Aopen(loc, name, H5P_DEFAULT), H5Aclose, file,
                 fmt::format("opening attribute '{}' of {}", name, obj));
}

int64_t read_attr_i64(hid_t loc, const char* name, const std::string& file, std::string_view obj) {
  H5Handle a = open_attr(loc, name, file, obj);
  H5Handle space = checked(H5Aget_space(a.get()), H5Sclose, file, "H5Aget_space");
  SEQMIX_CHECK_KIND(Data, H5Sget_simple_extent_npoints(space.get()) == 1,
                    "{}: attribute '{}' of {} is not a scalar", file, name, obj);
  int64_t v = 0;
  check_status(H5Aread(a.get(), H5T_NATIVE_INT64, &v), file,
               fmt::format("reading attribute '{}' of {}", name, obj));
  return v;
}

// Reads a string or string-array attribute (variable- or fixed-length strings).
std::vector<std::string> read_attr_strings(hid_t loc, const char* name, const std::string& file,
                                           std::string_view obj) {
  H5Handle a = open_attr(loc, name, file, obj);
  H5Handle type = checked(H5Aget_type(a.get()), H5Tclose, file, "H5Aget_type");
  SEQMIX_CHECK_KIND(Data, H5Tget_class(type.get()) == H5T_STRING,
                    "{}: attribute '{}' of {} is not a string", file, name, obj);
  H5Handle space = checked(H5Aget_space(a.get()), H5Sclose, file, "H5Aget_space");
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  check_status(herr_t(n < 0 ? -1 : 0), file, "H5Sget_simple_extent_npoints");
  std::vector<std::string> out(static_cast<size_t>(n));
  const htri_t is_var = H5Tis_variable_str(type.get());
  check_status(is_var, file, "H5Tis_variable_str");
  H5Handle mem = checked(H5Tcopy(H5T_C_S1), H5Tclose, file, "H5Tcopy");
  const H5T_cset_t cset = H5Tget_cset(type.get());  // ASCII and UTF-8 do not convert
  check_status(herr_t(cset < 0 ? -1 : 0), file, "H5Tget_cset");
  check_status(H5Tset_cset(mem.get(), cset), file, "H5Tset_cset");
  const std::string what = fmt::format("reading attribute '{}' of {}", name, obj);
  if (is_var > 0) {
    check_status(H5Tset_size(mem.get(), H5T_VARIABLE), file, "H5Tset_size");
    std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
    const herr_t r = H5Aread(a.get(), mem.get(), ptrs.data());
    for (size_t i = 0; i < ptrs.size(); ++i) {
      if (r >= 0 && ptrs[i]) out[i] = ptrs[i];
      if (ptrs[i]) H5free_memory(ptrs[i]);
    }
    check_status(r, file, what);
  } else {
    const size_t len = H5Tget_size(type.get());
    check_status(herr_t(len == 0 ? -1 : 0), file, "H5Tget_size");
    check_status(H5Tset_size(mem.get(), len), file, "H5Tset_size");
    std::vector<char> buf(size_t(n) * len + 1, '\0');
    check_status(H5Aread(a.get(), mem.get(), buf.data()), file, what);
    for (size_t i = 0; i < out.size(); ++i)
      out[i] = std::string(buf.data() + i * len, strnlen(buf.data() + i * len, len));
  }
  return out;
}

std::string read_attr_string(hid_t loc, const char* name, const std::string& file,
                             std::string_view obj) {
  std::vector<std::string> v = read_attr_strings(loc, name, file, obj);
  SEQMIX_CHECK_KIND(Data, v.size() == 1, "{}: attribute '{}' of {} is not a single string", file,
                    name, obj);
  return v[0];
}

void write_attr_scalar(hid_t loc, const char* name, hid_t file_type, hid_t mem_type, const void* v,
                       const std::string& file) {
  H5Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, file, "H5Screate");
  H5Handle a = checked(H5Acreate2(loc, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                       H5Aclose, file, fmt::format("creating attribute '{}'", name));
  check_status(H5Awrite(a.get(), mem_type, v), file, fmt::format("writing attribute '{}'", name));
}
void write_attr_i64(hid_t loc, const char* name, int64_t v, const std::string& file) {
  write_attr_scalar(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, file);
}
void write_attr_f64(hid_t loc, const char* name, double v, const std::string& file) {
  write_attr_scalar(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, file);
}
// Variable-length UTF-8 strings: a scalar for one string, a 1-d array otherwise.
void write_attr_strings(hid_t loc, const char* name, const std::vector<std::string>& v, bool scalar,
                        const std::string& file) {
  H5Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, file, "H5Tcopy");
  check_status(H5Tset_size(type.get(), H5T_VARIABLE), file, "H5Tset_size");
  check_status(H5Tset_cset(type.get(), H5T_CSET_UTF8), file, "H5Tset_cset");
  const hsize_t dims[1] = {hsize_t(v.size())};
  H5Handle space = checked(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, nullptr),
                           H5Sclose, file, "H5Screate");
  H5Handle a = checked(H5Acreate2(loc, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                       H5Aclose, file, fmt::format("creating attribute '{}'", name));
  std::vector<const char*> ptrs;
  for (const std::string& s : v) ptrs.push_back(s.c_str());
  if (!ptrs.empty())
    check_status(H5Awrite(a.get(), type.get(), ptrs.data()), file,
                 fmt::format("writing attribute '{}'", name));
}

// A 1-d dataset of `n` elements of `file_type`, written from host memory of `mem_type`.
void write_dataset_1d(hid_t loc, const char* name, hid_t file_type, hid_t mem_type,
                      const void* data, int64_t n, const std::string& file, std::string_view path) {
  const hsize_t dims[1] = {hsize_t(n)};
  H5Handle space = checked(H5Screate_simple(1, dims, nullptr), H5Sclose, file, "H5Screate_simple");
  H5Handle ds =
      checked(H5Dcreate2(loc, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
              H5Dclose, file, fmt::format("creating dataset {}", path));
  if (n > 0)
    check_status(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), file,
                 fmt::format("writing dataset {}", path));
}

void check_fractions(double val, double test) {
  SEQMIX_CHECK_KIND(Usage, std::isfinite(val) && val >= 0 && val < 1,
                    "--val-fraction must be in [0, 1), got {}", val);
  SEQMIX_CHECK_KIND(Usage, std::isfinite(test) && test >= 0 && test < 1,
                    "--test-fraction must be in [0, 1), got {}", test);
  SEQMIX_CHECK_KIND(Usage, val + test < 1,
                    "--val-fraction + --test-fraction must be < 1 (got {} + {})", val, test);
}

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  SEQMIX_CHECK_KIND(Data, fs::exists(path, ec), "input file {} does not exist", path);
  SEQMIX_CHECK_KIND(Data, !fs::is_directory(path, ec), "input {} is a directory, not a file", path);
  std::ifstream in(path, std::ios::binary);
  SEQMIX_CHECK_KIND(Data, in.good(), "cannot open input file {}: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  SEQMIX_CHECK_KIND(Data, !in.bad(), "error reading input file {}", path);
  std::string text = std::move(ss).str();
  SEQMIX_CHECK_KIND(Data, !text.empty(), "input file {} is empty", path);
  return text;
}

}  // namespace

// ============================== writing ==============================

PrepareSummary write_token_dataset(const std::string& file, const Tokenizer& tokenizer,
                                   const std::vector<std::string>& sources,
                                   const std::vector<std::vector<int32_t>>& documents,
                                   double val_fraction, double test_fraction) {
  check_fractions(val_fraction, test_fraction);
  SEQMIX_CHECK_KIND(Usage, !documents.empty(), "prepare: no input documents");
  SEQMIX_CHECK(sources.size() == documents.size(),
               "write_token_dataset: {} source names for {} documents", sources.size(),
               documents.size());
  const int64_t vocab = tokenizer.vocab_size();
  const bool has_test = test_fraction > 0;
  const int num_splits = has_test ? 3 : 2;

  // Per-document split sizes: train first, then val, then test at the end of the document.
  const size_t D = documents.size();
  std::vector<std::vector<int32_t>> split_tokens(static_cast<size_t>(num_splits));
  std::vector<std::vector<int64_t>> offsets(static_cast<size_t>(num_splits),
                                            std::vector<int64_t>{0});
  int64_t total = 0;
  for (size_t d = 0; d < D; ++d) {
    const std::vector<int32_t>& doc = documents[d];
    const int64_t L = int64_t(doc.size());
    for (int64_t i = 0; i < L; ++i)
      SEQMIX_CHECK(doc[size_t(i)] >= 0 && doc[size_t(i)] < vocab,
                   "write_token_dataset: token {} at position {} of {} is outside [0, {})",
                   doc[size_t(i)], i, sources[d], vocab);
    const int64_t n_val = int64_t(std::floor(double(L) * val_fraction));
    const int64_t n_test = has_test ? int64_t(std::floor(double(L) * test_fraction)) : 0;
    const int64_t n_train = L - n_val - n_test;
    const int64_t bounds[4] = {0, n_train, n_train + n_val, L};
    for (int s = 0; s < num_splits; ++s) {
      auto& dst = split_tokens[size_t(s)];
      dst.insert(dst.end(), doc.begin() + bounds[s], doc.begin() + bounds[s + 1]);
      offsets[size_t(s)].push_back(int64_t(dst.size()));
    }
    total += L;
  }
  SEQMIX_CHECK_KIND(Data, total > 0, "prepare: the input holds no tokens (empty input)");
  SEQMIX_CHECK_KIND(Data, !split_tokens[0].empty(),
                    "prepare: the train split is empty ({} tokens in total, val fraction {}, test "
                    "fraction {})",
                    total, val_fraction, test_fraction);

  const bool u16 = vocab <= 65536;
  PrepareSummary sum;
  sum.path = file;
  sum.tokenizer_kind = tokenizer.kind_name();
  sum.vocab_size = vocab;
  sum.token_dtype = u16 ? "u16" : "i32";
  sum.num_documents = int64_t(D);
  sum.train_tokens = int64_t(split_tokens[0].size());
  sum.val_tokens = int64_t(split_tokens[1].size());
  sum.test_tokens = has_test ? int64_t(split_tokens[2].size()) : 0;
  sum.has_test = has_test;

  const fs::path target(file);
  std::error_code ec;
  if (target.has_parent_path() && !fs::exists(target.parent_path(), ec)) {
    fs::create_directories(target.parent_path(), ec);
    SEQMIX_CHECK_KIND(Data, !ec, "cannot create directory {}: {}", target.parent_path().string(),
                      ec.message());
  }
  const std::string tmp = file + ".tmp." + std::to_string(::getpid());
  QuietHdf5 quiet;
  try {
    H5Handle fh = checked(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                          tmp, "creating the file");
    {
      const hid_t root = fh.get();
      write_attr_i64(root, "format_version", kTokenDatasetFormatVersion, tmp);
      write_attr_strings(root, "tokenizer_kind", {tokenizer.kind_name()}, true, tmp);
      write_attr_strings(root, "tokenizer", {tokenizer.description()}, true, tmp);
      write_attr_i64(root, "vocab_size", vocab, tmp);
      write_attr_strings(root, "source_files", sources, false, tmp);
      write_attr_i64(root, "total_tokens", total, tmp);
      write_attr_f64(root, "val_fraction", val_fraction, tmp);
      write_attr_f64(root, "test_fraction", has_test ? test_fraction : 0.0, tmp);
      write_attr_strings(root, "split_rule",
                         {"per-document: first part train, then val, then test (floor of the "
                          "fractions of each document's length)"},
                         true, tmp);
      for (int s = 0; s < num_splits; ++s) {
        const std::string gname = std::string("/") + kSplitNames[s];
        H5Handle g = checked(H5Gcreate2(root, gname.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                             H5Gclose, tmp, fmt::format("creating group {}", gname));
        const auto& toks = split_tokens[size_t(s)];
        write_dataset_1d(g.get(), "tokens", u16 ? H5T_STD_U16LE : H5T_STD_I32LE, H5T_NATIVE_INT32,
                         toks.data(), int64_t(toks.size()), tmp, gname + "/tokens");
        const auto& off = offsets[size_t(s)];
        write_dataset_1d(g.get(), "doc_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, off.data(),
                         int64_t(off.size()), tmp, gname + "/doc_offsets");
        write_attr_i64(g.get(), "num_tokens", int64_t(toks.size()), tmp);
        write_attr_i64(g.get(), "num_documents", int64_t(D), tmp);
      }
    }
    check_status(H5Fflush(fh.get(), H5F_SCOPE_GLOBAL), tmp, "flushing the file");
    check_status(fh.close(), tmp, "closing the file");
    fs::rename(tmp, file, ec);
    SEQMIX_CHECK_KIND(Data, !ec, "cannot rename {} to {}: {}", tmp, file, ec.message());
  } catch (...) {
    std::error_code ignore;
    fs::remove(tmp, ignore);
    throw;
  }
  return sum;
}

PrepareSummary prepare_dataset(const PrepareOptions& opts) {
  SEQMIX_CHECK_KIND(Usage, !opts.inputs.empty(), "prepare: no input files (--input)");
  SEQMIX_CHECK_KIND(Usage, !opts.output_dir.empty(), "prepare: no output directory (--output)");
  check_fractions(opts.val_fraction, opts.test_fraction);
  std::vector<std::string> texts;
  texts.reserve(opts.inputs.size());
  for (const std::string& p : opts.inputs) texts.push_back(read_text_file(p));
  std::vector<std::string_view> views(texts.begin(), texts.end());
  for (size_t i = 0; i < texts.size(); ++i)  // names the file on invalid UTF-8
    if (opts.tokenizer == TokenizerKind::Char) (void)utf8_decode(texts[i], opts.inputs[i]);
  const Tokenizer tok = Tokenizer::build(opts.tokenizer, views);
  std::vector<std::vector<int32_t>> docs;
  docs.reserve(texts.size());
  for (std::string& t : texts) {
    docs.push_back(tok.encode(t));
    std::string().swap(t);  // free the text as soon as it is encoded
  }
  std::error_code ec;
  fs::create_directories(opts.output_dir, ec);
  SEQMIX_CHECK_KIND(Data, !ec, "cannot create output directory {}: {}", opts.output_dir,
                    ec.message());
  const std::string file = (fs::path(opts.output_dir) / kTokenDatasetFileName).string();
  return write_token_dataset(file, tok, opts.inputs, docs, opts.val_fraction, opts.test_fraction);
}

// ============================== reading ==============================

struct TokenDataset::Impl {
  struct Split {
    std::string name;
    H5Handle ds;
    int64_t n = 0;
  };
  std::string file;
  H5Handle fh;  // declared before `splits`: closed last
  Tokenizer tok;
  int64_t vocab = 0;
  std::vector<std::string> sources;
  std::vector<Split> splits;

  const Split& get(std::string_view name) const {
    for (const Split& s : splits)
      if (s.name == name) return s;
    SEQMIX_THROW(Data, "{}: dataset /{}/tokens is missing (splits here: {})", file, name,
                 split_list());
  }
  std::string split_list() const {
    std::string s;
    for (const Split& x : splits) s += (s.empty() ? "" : ", ") + x.name;
    return s;
  }
};

TokenDataset::TokenDataset(const std::string& path) : impl_(std::make_unique<Impl>()) {
  std::error_code ec;
  SEQMIX_CHECK_KIND(Data, fs::exists(path, ec), "dataset {} does not exist (run seqmix prepare)",
                    path);
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    file = (fs::path(path) / kTokenDatasetFileName).string();
    SEQMIX_CHECK_KIND(Data, fs::exists(file, ec),
                      "dataset directory {} holds no {} (run seqmix prepare)", path,
                      kTokenDatasetFileName);
  }
  impl_->file = file;
  QuietHdf5 quiet;
  const htri_t is_h5 = H5Fis_hdf5(file.c_str());
  SEQMIX_CHECK_KIND(Data, is_h5 > 0, "{} is not an HDF5 file{}", file,
                    is_h5 < 0 ? hdf5_message() : std::string());
  impl_->fh = checked(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, file,
                      "opening the file (truncated or corrupt?)");
  const hid_t root = impl_->fh.get();
  const int64_t version = read_attr_i64(root, "format_version", file, "/");
  SEQMIX_CHECK_KIND(Data, version == kTokenDatasetFormatVersion,
                    "{}: token dataset format version {}, this build reads version {}", file,
                    version, kTokenDatasetFormatVersion);
  const std::string kind = read_attr_string(root, "tokenizer_kind", file, "/");
  impl_->tok = Tokenizer::from_description(read_attr_string(root, "tokenizer", file, "/"));
  SEQMIX_CHECK_KIND(Data, kind == impl_->tok.kind_name(),
                    "{}: tokenizer_kind '{}' does not match the tokenizer description ({})", file,
                    kind, impl_->tok.kind_name());
  impl_->vocab = read_attr_i64(root, "vocab_size", file, "/");
  SEQMIX_CHECK_KIND(Data, impl_->vocab == impl_->tok.vocab_size(),
                    "{}: vocab_size {} does not match the tokenizer's {}", file, impl_->vocab,
                    impl_->tok.vocab_size());
  impl_->sources = read_attr_strings(root, "source_files", file, "/");

  for (const char* name : kSplitNames) {
    const std::string gname = std::string("/") + name;
    const htri_t g_exists = H5Lexists(root, gname.c_str(), H5P_DEFAULT);
    check_status(g_exists, file, fmt::format("looking up {}", gname));
    const bool required = std::string_view(name) != "test";
    if (g_exists <= 0) {
      SEQMIX_CHECK_KIND(Data, !required, "{}: dataset {}/tokens is missing", file, gname);
      continue;
    }
    const std::string dname = gname + "/tokens";
    const htri_t d_exists = H5Lexists(root, dname.c_str(), H5P_DEFAULT);
    check_status(d_exists, file, fmt::format("looking up {}", dname));
    SEQMIX_CHECK_KIND(Data, d_exists > 0, "{}: dataset {} is missing", file, dname);
    Impl::Split s;
    s.name = name;
    s.ds = checked(H5Dopen2(root, dname.c_str(), H5P_DEFAULT), H5Dclose, file,
                   fmt::format("opening dataset {}", dname));
    H5Handle type = checked(H5Dget_type(s.ds.get()), H5Tclose, file, "H5Dget_type");
    SEQMIX_CHECK_KIND(Data, H5Tget_class(type.get()) == H5T_INTEGER,
                      "{}: dataset {} does not hold integers", file, dname);
    H5Handle space = checked(H5Dget_space(s.ds.get()), H5Sclose, file, "H5Dget_space");
    SEQMIX_CHECK_KIND(Data, H5Sget_simple_extent_ndims(space.get()) == 1,
                      "{}: dataset {} is not 1-dimensional", file, dname);
    hsize_t dims[1] = {0};
    check_status(H5Sget_simple_extent_dims(space.get(), dims, nullptr), file,
                 "H5Sget_simple_extent_dims");
    s.n = int64_t(dims[0]);
    H5Handle g = checked(H5Gopen2(root, gname.c_str(), H5P_DEFAULT), H5Gclose, file,
                         fmt::format("opening group {}", gname));
    const int64_t attr_n = read_attr_i64(g.get(), "num_tokens", file, gname);
    SEQMIX_CHECK_KIND(Data, attr_n == s.n,
                      "{}: dataset {} has {} tokens but its num_tokens attribute says {}", file,
                      dname, s.n, attr_n);
    impl_->splits.push_back(std::move(s));
  }
}

TokenDataset::~TokenDataset() {
  if (impl_) {
    QuietHdf5 quiet;
    impl_.reset();
  }
}
TokenDataset::TokenDataset(TokenDataset&&) noexcept = default;
TokenDataset& TokenDataset::operator=(TokenDataset&&) noexcept = default;

const std::string& TokenDataset::file() const {
  return impl_->file;
}
int64_t TokenDataset::vocab_size() const {
  return impl_->vocab;
}
const Tokenizer& TokenDataset::tokenizer() const {
  return impl_->tok;
}
const std::vector<std::string>& TokenDataset::source_files() const {
  return impl_->sources;
}

bool TokenDataset::has_split(std::string_view split) const {
  for (const Impl::Split& s : impl_->splits)
    if (s.name == split) return true;
  return false;
}

int64_t TokenDataset::num_tokens(std::string_view split) const {
  return impl_->get(split).n;
}

std::vector<int64_t> TokenDataset::doc_offsets(std::string_view split) const {
  impl_->get(split);  // the split exists
  const std::string& file = impl_->file;
  const std::string dname = fmt::format("/{}/doc_offsets", split);
  QuietHdf5 quiet;
  const htri_t e = H5Lexists(impl_->fh.get(), dname.c_str(), H5P_DEFAULT);
  check_status(e, file, fmt::format("looking up {}", dname));
  SEQMIX_CHECK_KIND(Data, e > 0, "{}: dataset {} is missing", file, dname);
  H5Handle ds = checked(H5Dopen2(impl_->fh.get(), dname.c_str(), H5P_DEFAULT), H5Dclose, file,
                        fmt::format("opening dataset {}", dname));
  H5Handle space = checked(H5Dget_space(ds.get()), H5Sclose, file, "H5Dget_space");
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  SEQMIX_CHECK_KIND(Data, n >= 1, "{}: dataset {} is empty", file, dname);
  std::vector<int64_t> out(static_cast<size_t>(n));
  check_status(H5Dread(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), file,
               fmt::format("reading dataset {}", dname));
  return out;
}

void TokenDataset::read(std::string_view split, int64_t start, int64_t n, int64_t* out) const {
  const Impl::Split& s = impl_->get(split);
  SEQMIX_CHECK(start >= 0 && n >= 0 && start + n <= s.n,
               "{}: token range [{}, {}) is outside split '{}' of {} tokens", impl_->file, start,
               start + n, split, s.n);
  if (n == 0) return;
  const std::string& file = impl_->file;
  QuietHdf5 quiet;
  H5Handle fspace = checked(H5Dget_space(s.ds.get()), H5Sclose, file, "H5Dget_space");
  const hsize_t off[1] = {hsize_t(start)}, cnt[1] = {hsize_t(n)};
  check_status(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, off, nullptr, cnt, nullptr), file,
               "H5Sselect_hyperslab");
  H5Handle mspace = checked(H5Screate_simple(1, cnt, nullptr), H5Sclose, file, "H5Screate_simple");
  // HDF5 converts the stored u16 / i32 tokens to int64 during the read.
  check_status(H5Dread(s.ds.get(), H5T_NATIVE_INT64, mspace.get(), fspace.get(), H5P_DEFAULT, out),
               file, fmt::format("reading tokens [{}, {}) of /{}/tokens", start, start + n, split));
  const int64_t v = impl_->vocab;
  for (int64_t i = 0; i < n; ++i)
    SEQMIX_CHECK_KIND(
        Data, out[i] >= 0 && out[i] < v,
        "{}: token {} at position {} of /{}/tokens is outside [0, {}) (corrupt file?)", file,
        out[i], start + i, split, v);
}

std::vector<int64_t> TokenDataset::read(std::string_view split, int64_t start, int64_t n) const {
  SEQMIX_CHECK(n >= 0, "TokenDataset::read: negative count {}", n);
  std::vector<int64_t> out(static_cast<size_t>(n));
  read(split, start, n, out.data());
  return out;
}

}  // namespace seqmix::data
