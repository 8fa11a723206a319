// View and layout ops and their gradients: each gradient is the inverse rearrangement of g
// (reshape back, transpose back, inverse permutation, write into a zero tensor at the slice,
// split the concatenation, sum over expanded dims).
#include "autograd/function.h"
#include "autograd/functions.h"
#include "core/check.h"
#include "core/ops/copy.h"
#include "core/ops/reduce.h"

namespace seqmix {

namespace {
Variable reshape_like(const char* name, const Variable& x, Tensor out) {
  return record(name, {&x}, std::move(out),
                [shape = x.shape()](const Node&, TensorList& g) -> TensorList {
                  return {g[0].reshape(shape)};
                });
}

// A zero tensor of `meta` with g written into the part selected by `pick`.
template <typename Pick>
Tensor embed(const Tensor& g, const Shape& shape, Pick pick) {
  Tensor z = Tensor::zeros(shape, g.dtype(), g.device());
  ops::copy_(pick(z), g);
  return z;
}
}  // namespace

Variable reshape(const Variable& x, const Shape& shape) {
  return reshape_like("ReshapeBackward", x, x.data().reshape(shape));
}
Variable view(const Variable& x, const Shape& shape) {
  return reshape_like("ViewBackward", x, x.data().view(shape));
}
Variable flatten(const Variable& x, int64_t start, int64_t end) {
  return reshape_like("FlattenBackward", x, x.data().flatten(start, end));
}
Variable unsqueeze(const Variable& x, int64_t dim) {
  return reshape_like("UnsqueezeBackward", x, x.data().unsqueeze(dim));
}
Variable squeeze(const Variable& x, int64_t dim) {
  return reshape_like("SqueezeBackward", x, x.data().squeeze(dim));
}

Variable transpose(const Variable& x, int64_t d0, int64_t d1) {
  return record(
      "TransposeBackward", {&x}, x.data().transpose(d0, d1),
      [d0, d1](const Node&, TensorList& g) -> TensorList { return {g[0].transpose(d0, d1)}; });
}

Variable permute(const Variable& x, const DimVec& dims) {
  Tensor out = x.data().permute(dims);
  DimVec inv;
  inv.resize(dims.size());
  for (int i = 0; i < dims.size(); ++i) inv[wrap_dim(dims[i], dims.size())] = i;
  return record("PermuteBackward", {&x}, std::move(out),
                [inv](const Node&, TensorList& g) -> TensorList { return {g[0].permute(inv)}; });
}

Variable contiguous(const Variable& x) {
  if (x.data().is_contiguous()) return x;
  return record("ContiguousBackward", {&x}, x.data().contiguous(),
                [](const Node&, TensorList& g) -> TensorList { return {g[0]}; });
}

Variable slice(const Variable& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  return record(
      "SliceBackward", {&x}, x.data().slice(dim, start, end, step),
      [shape = x.shape(), dim, start, end, step](const Node&, TensorList& g) -> TensorList {
        return {
            embed(g[0], shape, [&](const Tensor& z) { return z.slice(dim, start, end, step); })};
      });
}

Variable narrow(const Variable& x, int64_t dim, int64_t start, int64_t length) {
  const int d = wrap_dim(dim, x.dim());
  SEQMIX_CHECK(start >= 0 && length >= 0 && start + length <= x.size(d),
               "narrow: [{}, {}) out of range for size {}", start, start + length, x.size(d));
  return slice(x, d, start, start + length, 1);
}

std::vector<Variable> split(const Variable& x, int64_t dim, const std::vector<int64_t>& sizes) {
  const int d = wrap_dim(dim, x.dim());
  int64_t total = 0;
  for (int64_t s : sizes) {
    SEQMIX_CHECK(s >= 0, "split: negative size {}", s);
    total += s;
  }
  SEQMIX_CHECK(total == x.size(d), "split: sizes sum to {}, dim {} has size {}", total, d,
               x.size(d));
  std::vector<Tensor> outs;
  outs.reserve(sizes.size());
  int64_t off = 0;
  for (int64_t s : sizes) {
    outs.push_back(x.data().narrow(d, off, s));
    off += s;
  }
  // The gradient comes back in x's dtype (the pieces' gradients are cast to it); pieces of size
  // 0 need none; without any piece gradient there is none.
  return record_multi(
      "SplitBackward", {&x}, std::move(outs),
      [d, sizes, shape = x.shape(), dt = x.dtype()](const Node&, TensorList& g) -> TensorList {
        const Tensor* first = nullptr;
        bool all = true;
        for (size_t i = 0; i < sizes.size(); ++i) {
          if (g[i].defined())
            first = first ? first : &g[i];
          else if (sizes[i] > 0)
            all = false;
        }
        if (!first) return {Tensor()};
        const auto in_dtype = [dt](const Tensor& t) { return t.dtype() == dt ? t : t.to(dt); };
        if (all) {
          std::vector<Tensor> pieces;
          for (size_t i = 0; i < sizes.size(); ++i)
            if (sizes[i] > 0) pieces.push_back(in_dtype(g[i]));
          if (!pieces.empty()) return {ops::cat(pieces, d)};
        }
        Tensor z = Tensor::zeros(shape, dt, first->device());
        int64_t o = 0;
        for (size_t i = 0; i < sizes.size(); ++i) {
          if (g[i].defined() && sizes[i] > 0) ops::copy_(z.narrow(d, o, sizes[i]), g[i]);
          o += sizes[i];
        }
        return {z};
      });
}

Variable select(const Variable& x, int64_t dim, int64_t index) {
  return record(
      "SelectBackward", {&x}, x.data().select(dim, index),
      [shape = x.shape(), dim, index](const Node&, TensorList& g) -> TensorList {
        return {embed(g[0], shape, [&](const Tensor& z) { return z.select(dim, index); })};
      });
}

Variable expand(const Variable& x, const Shape& shape) {
  return record("ExpandBackward", {&x}, x.data().expand(shape),
                [shape_in = x.shape()](const Node&, TensorList& g) -> TensorList {
                  return {ops::sum_to(g[0], shape_in)};
                });
}

Variable cat(const std::vector<Variable>& xs, int64_t dim) {
  SEQMIX_CHECK(!xs.empty(), "cat: no tensors given");
  std::vector<Tensor> ts;
  std::vector<int64_t> sizes;
  ts.reserve(xs.size());
  const int d = wrap_dim(dim, xs[0].dim());
  for (const Variable& v : xs) {
    ts.push_back(v.data());
    sizes.push_back(v.data().dim() > d ? v.size(d) : 0);
  }
  return record("CatBackward", xs, ops::cat(ts, d),
                [d, sizes](const Node& self, TensorList& g) -> TensorList {
                  TensorList out(sizes.size());
                  int64_t off = 0;
                  for (size_t i = 0; i < sizes.size(); ++i) {
                    if (self.needs_input_grad(i)) out[i] = g[0].narrow(d, off, sizes[i]);
                    off += sizes[i];
                  }
                  return out;
                });
}

Variable stack(const std::vector<Variable>& xs, int64_t dim) {
  SEQMIX_CHECK(!xs.empty(), "stack: no tensors given");
  std::vector<Variable> us;
  us.reserve(xs.size());
  const int d = wrap_dim(dim, xs[0].dim() + 1);
  for (const Variable& v : xs) us.push_back(unsqueeze(v, d));
  return cat(us, d);
}

}  // namespace seqmix
